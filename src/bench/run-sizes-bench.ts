// One artifact for run-time sizes against static builds of each size and against onnxruntime-web on the same
// dynamic model (npm run bench:run-sizes [-- --target native|webgpu] [--model bert] [--threads N]): a model with
// dynamic axes compiled once with ranges, and specialized to each size; the three run in turn in this process at 1
// thread (--threads N: Kiln's and onnxruntime-web's), every round, and the table reports medians of per-round ratios
// (>1: the run-time-size artifact is faster) with CPU time for the static one. The Kiln builds must agree with each
// other. On WebGPU (Dawn, here on the CPU through SwiftShader) onnxruntime-web is not timed: its column would compare
// a GPU with a CPU.
import { nodeGpuDevice } from '../conformance/node-webgpu.js';
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
  // the BERT encoder of the issue's target (hidden 256, 4 layers; 512 positions) with dynamic batch and sequence
  bert: {
    path: '.cache/models/bert_dynamic/model.onnx',
    ranges: { batch: [1, 4], sequence: [1, 384] },
    sizes: [16, 64, 128, 384].map((sequence) => ({ batch: 1, sequence })),
    feeds: ({ batch, sequence }) => ({ input_ids: ids(batch, sequence), attention_mask: ids(batch, sequence, 1n) }),
  },
};

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'resnet18' },
      runs: { type: 'string', default: '30' },
      target: { type: 'string', default: 'wasm' },
      threads: { type: 'string', default: '1' },
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
  const target = values.target as 'wasm' | 'native' | 'webgpu';
  if (target !== 'wasm' && target !== 'native' && target !== 'webgpu') {
    console.error(`--target ${target}: one of wasm, native, webgpu`);
    return 1;
  }
  const gpu = target === 'webgpu';
  const device = gpu ? await nodeGpuDevice() : undefined;
  const bytes = readFileSync(model.path);
  const g = importAndOptimize(bytes, { dims: model.ranges });
  const ort = await import('onnxruntime-web');
  const threads = Number(values.threads);
  if (!(Number.isInteger(threads) && threads >= 1)) {
    console.error(`--threads ${values.threads}: a whole number >= 1`);
    return 1;
  }
  ort.env.wasm.numThreads = threads;
  const web = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  const build = async (graph: typeof g) =>
    load((await compileGraph(graph, { target })).artifact, gpu ? { target, device } : { target, threads });
  const run = (m: Awaited<ReturnType<typeof build>>, feeds: Record<string, Tensor>) =>
    gpu ? m.run(feeds) : m.runSync(feeds);
  // (both builds once first, untimed: the compiler's own code warms up in the JIT before either is timed)
  (await build(specializeGraph(g, model.sizes[0]))).dispose();
  (await build(g)).dispose();
  const c0 = performance.now();
  const dynamic = await build(g);
  const compileMs = { dynamic: performance.now() - c0, fixed: [] as number[] };
  const ranges = Object.entries(model.ranges)
    .map(([s, [lo, hi]]) => `${s} ${lo}..${hi}`)
    .join(', ');
  console.log(
    `${values.model}, target ${target}, ${threads} thread${threads > 1 ? 's' : ''}${dynamic.runsOn && dynamic.runsOn !== target ? ` (ran on ${dynamic.runsOn})` : ''}`,
  );
  console.log(
    `| size | run-time-size artifact (${ranges}) median ms | static build median ms | static time / run-time-size time (median of per-round ratios) | the same by CPU time | onnxruntime-web (same dynamic model) median ms | ORT-web time / run-time-size time |`,
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const size of model.sizes) {
    const f0 = performance.now();
    const fixed = await build(specializeGraph(g, size));
    compileMs.fixed.push(performance.now() - f0);
    const feeds = model.feeds(size);
    const a = await run(dynamic, feeds),
      b = await run(fixed, feeds);
    for (const name of Object.keys(b)) {
      const mismatch = compareTensors(a[name], b[name]);
      if (mismatch) throw new Error(`${JSON.stringify(size)}: the builds disagree on ${name}: ${mismatch.message}`);
    }
    const webFeeds = Object.fromEntries(
      Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.shape)]),
    );
    const wall = { dynamic: [] as number[], fixed: [] as number[], web: [] as number[] };
    const cpu = { dynamic: [] as number[], fixed: [] as number[] };
    const timed = async (who: 'dynamic' | 'fixed', m: typeof dynamic) => {
      const t0 = performance.now(),
        c0 = process.cpuUsage();
      await run(m, feeds);
      wall[who].push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu[who].push((c.user + c.system) / 1000);
    };
    if (!gpu) await web.run(webFeeds); // (its first run prepares)
    for (let r = 0; r < runs; r++) {
      // rotating order, so neither Kiln build always runs first
      if (r % 2) {
        await timed('dynamic', dynamic);
        await timed('fixed', fixed);
      } else {
        await timed('fixed', fixed);
        await timed('dynamic', dynamic);
      }
      if (gpu) continue;
      const t0 = performance.now();
      await web.run(webFeeds);
      wall.web.push(performance.now() - t0);
    }
    const ratio = (t: { fixed: number[]; dynamic: number[] }) => median(t.fixed.map((f, i) => f / t.dynamic[i]));
    const label = Object.entries(size)
      .map(([s, v]) => `${s} ${v}`)
      .join(', ');
    console.log(
      `| ${label} | ${median(wall.dynamic).toFixed(2)} | ${median(wall.fixed).toFixed(2)} | ${ratio(wall).toFixed(3)}x | ${ratio(cpu).toFixed(3)}x | ${gpu ? '- | -' : `${median(wall.web).toFixed(2)} | ${median(wall.web.map((w, i) => w / wall.dynamic[i])).toFixed(3)}x`} |`,
    );
    fixed.dispose();
  }
  console.log(
    `compile (import excluded): the run-time-size artifact ${(compileMs.dynamic / 1000).toFixed(2)} s, a static build ${(median(compileMs.fixed) / 1000).toFixed(2)} s (median): ${(compileMs.dynamic / median(compileMs.fixed)).toFixed(2)}x`,
  );
  dynamic.dispose();
  await web.release();
  return 0;
}

process.exitCode = await main();
