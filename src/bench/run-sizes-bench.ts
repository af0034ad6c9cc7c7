// One artifact for run-time sizes against static builds of each size (npm run bench:run-sizes [-- --target native]
// [--model bert]): a model with dynamic axes compiled once with ranges, and specialized to each size; both run
// alternately in this process at 1 thread, every round, and the table reports the median of per-round ratios (>1:
// the run-time-size artifact is faster) with its CPU time. Both must agree with each other.
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { compileGraph, importAndOptimize, specializeGraph } from '../compiler/compile.js';
import { load, type Tensor } from '../index.js';
import { randomF32 } from '../frontend/onnx/model-builder.js';
import { compareTensors } from '../conformance/compare.js';
import { median } from '../util/stats.js';

interface BenchModel {
  path: string;
  /** The ranges the one artifact is compiled for. */
  ranges: Record<string, [number, number]>;
  /** The sizes timed by default, as the symbols' values. */
  sizes: Record<string, number>[];
  feeds(size: Record<string, number>): Record<string, Tensor>;
}

const ids = (batch: number, sequence: number, fill?: bigint): Tensor => ({
  dtype: 'int64',
  shape: [batch, sequence],
  data: BigInt64Array.from({ length: batch * sequence }, (_, i) => fill ?? BigInt(1 + ((i * 37) % 999))),
});

const MODELS: Record<string, BenchModel> = {
  // ResNet-18 at 32x32 with a dynamic batch
  resnet18: {
    path: '.cache/models/resnet18_dynamic/model.onnx',
    ranges: { batch: [1, 8] },
    sizes: [{ batch: 1 }, { batch: 4 }, { batch: 8 }],
    feeds: ({ batch }) => ({ input: randomF32([batch, 3, 32, 32], batch) }),
  },
  // the BERT encoder of the issue's target (hidden 256, 4 layers; 128 positions) with dynamic batch and sequence
  bert: {
    path: '.cache/models/bert_dynamic/model.onnx',
    ranges: { batch: [1, 4], sequence: [1, 128] },
    sizes: [16, 64, 128].map((sequence) => ({ batch: 1, sequence })),
    feeds: ({ batch, sequence }) => ({ input_ids: ids(batch, sequence), attention_mask: ids(batch, sequence, 1n) }),
  },
};

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'resnet18' },
      runs: { type: 'string', default: '30' },
      target: { type: 'string', default: 'wasm' },
    },
  });
  const model = MODELS[values.model];
  if (!model) {
    console.error(`--model ${values.model}: one of ${Object.keys(MODELS).join(', ')}`);
    return 1;
  }
  if (!existsSync(model.path)) {
    console.error(`${model.path} is missing: run npm run fixtures`);
    return 1;
  }
  const runs = Number(values.runs);
  const target = values.target as 'wasm' | 'native';
  if (target !== 'wasm' && target !== 'native') {
    console.error(`--target ${target}: this bench times the CPU targets, wasm or native`);
    return 1;
  }
  const g = importAndOptimize(readFileSync(model.path), { dims: model.ranges });
  const build = async (graph: typeof g) =>
    load((await compileGraph(graph, { target })).artifact, { target, threads: 1 });
  const dynamic = await build(g);
  const ranges = Object.entries(model.ranges)
    .map(([s, [lo, hi]]) => `${s} ${lo}..${hi}`)
    .join(', ');
  console.log(
    `${values.model}, target ${target}${dynamic.runsOn && dynamic.runsOn !== target ? ` (ran on ${dynamic.runsOn})` : ''}`,
  );
  console.log(
    `| size | run-time-size artifact (${ranges}) median ms | static build median ms | static time / run-time-size time (median of per-round ratios) | the same by CPU time |`,
  );
  console.log('|---|---:|---:|---:|---:|');
  for (const size of model.sizes) {
    const fixed = await build(specializeGraph(g, size));
    const feeds = model.feeds(size);
    const a = dynamic.runSync(feeds),
      b = fixed.runSync(feeds);
    for (const name of Object.keys(b)) {
      const mismatch = compareTensors(a[name], b[name]);
      if (mismatch) throw new Error(`${JSON.stringify(size)}: the builds disagree on ${name}: ${mismatch.message}`);
    }
    const wall = { dynamic: [] as number[], fixed: [] as number[] };
    const cpu = { dynamic: [] as number[], fixed: [] as number[] };
    const timed = (who: 'dynamic' | 'fixed', m: typeof dynamic) => {
      const t0 = performance.now(),
        c0 = process.cpuUsage();
      m.runSync(feeds);
      wall[who].push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu[who].push((c.user + c.system) / 1000);
    };
    for (let r = 0; r < runs; r++) {
      // rotating order, so neither always runs first
      if (r % 2) {
        timed('dynamic', dynamic);
        timed('fixed', fixed);
      } else {
        timed('fixed', fixed);
        timed('dynamic', dynamic);
      }
    }
    const ratio = (t: typeof wall) => median(t.fixed.map((f, i) => f / t.dynamic[i]));
    const label = Object.entries(size)
      .map(([s, v]) => `${s} ${v}`)
      .join(', ');
    console.log(
      `| ${label} | ${median(wall.dynamic).toFixed(2)} | ${median(wall.fixed).toFixed(2)} | ${ratio(wall).toFixed(3)}x | ${ratio(cpu).toFixed(3)}x |`,
    );
    fixed.dispose();
  }
  dynamic.dispose();
  return 0;
}

process.exitCode = await main();
