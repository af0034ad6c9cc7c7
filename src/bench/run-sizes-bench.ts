// One artifact for run-time sizes against static builds of each size (npm run bench:run-sizes [-- --target
// native]): a model with a dynamic batch axis compiled once with a range, and specialized to each size; both run
// alternately in this process at 1 thread, every round, and the table reports the median of per-round ratios (>1:
// the run-time-size artifact is faster) with its CPU time. Both must agree with each other.
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { compileGraph, importAndOptimize, specializeGraph } from '../compiler/compile.js';
import { load } from '../index.js';
import { randomF32 } from '../frontend/onnx/model-builder.js';
import { compareTensors } from '../conformance/compare.js';
import { median } from '../util/stats.js';

const MODEL = '.cache/models/resnet18_dynamic/model.onnx';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      sizes: { type: 'string', default: '1,4,8' },
      max: { type: 'string', default: '8' },
      runs: { type: 'string', default: '30' },
      target: { type: 'string', default: 'wasm' },
    },
  });
  if (!existsSync(MODEL)) {
    console.error(`${MODEL} is missing: run npm run fixtures`);
    return 1;
  }
  const sizes = values.sizes.split(',').map(Number);
  const max = Number(values.max);
  const runs = Number(values.runs);
  const target = values.target as 'wasm' | 'native';
  if (target !== 'wasm' && target !== 'native') {
    console.error(`--target ${target}: this bench times the CPU targets, wasm or native`);
    return 1;
  }
  const build = async (graph: typeof g) =>
    load((await compileGraph(graph, { target })).artifact, { target, threads: 1 });
  const g = importAndOptimize(readFileSync(MODEL), { dims: { batch: [1, max] } });
  const dynamic = await build(g);
  console.log(`target ${target}${dynamic.runsOn && dynamic.runsOn !== target ? ` (ran on ${dynamic.runsOn})` : ''}`);
  console.log(
    `| batch | run-time-size artifact (batch 1..${max}) median ms | static build median ms | static time / run-time-size time (median of per-round ratios) | the same by CPU time |`,
  );
  console.log('|---:|---:|---:|---:|---:|');
  for (const batch of sizes) {
    const fixed = await build(specializeGraph(g, { batch }));
    const feeds = { input: randomF32([batch, 3, 32, 32], batch) };
    const mismatch = compareTensors(dynamic.runSync(feeds).output, fixed.runSync(feeds).output);
    if (mismatch) throw new Error(`batch ${batch}: the builds disagree: ${mismatch.message}`);
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
    console.log(
      `| ${batch} | ${median(wall.dynamic).toFixed(2)} | ${median(wall.fixed).toFixed(2)} | ${ratio(wall).toFixed(3)}x | ${ratio(cpu).toFixed(3)}x |`,
    );
    fixed.dispose();
  }
  dynamic.dispose();
  return 0;
}

process.exitCode = await main();
