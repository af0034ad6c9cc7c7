// Times WebGPU kernels compiled by two Kiln builds in one process on one GPUDevice (Dawn; SwiftShader on a machine
// without a GPU), e.g. the naive GPU schedule of an older commit against the current default GPU schedules:
//   git archive <commit> | tar -x -C /tmp/kiln-base-src && (cd /tmp/kiln-base-src && ln -s $PWD/node_modules . && npx tsc --outDir /tmp/kiln-base)
//   npm run build && node scripts/bench-webgpu-schedules.mjs --before /tmp/kiln-base --after dist [--runs 5] [--models matmul,mobilenet_v2]
// or, same build with only the schedule switched: --before naive
// Each row: compile with each build, check both against the WebAssembly path of the `after` build, one warm-up run,
// then `runs` rounds alternating the two; min and median ms of model.run() (upload, dispatches, download).
// Workloads: matmul (512^3), eltwise (Add+Relu over 2048x1024) or a model folder name under .cache/models.
// --timing dispatch: instead, the wall clock from submitting one run's dispatches (one compute pass, inputs already
// written) to queue.onSubmittedWorkDone(), as the tuner's runner times a device without timestamps.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const before = resolve(arg('before', '/tmp/kiln-base')),
  after = resolve(arg('after', 'dist'));
const runs = Number(arg('runs', '5'));
const models = arg('models', 'matmul,mobilenet_v2').split(',');
const timing = arg('timing', 'run');
const imp = (dir, p) => import(pathToFileURL(join(dir, p)).href);

const A = {
  compile: (await imp(after, 'compiler/compile.js')).compile,
  load: (await imp(after, 'runtime/index.js')).load,
};
// --before naive: the `after` build with every GPU kernel on the one-invocation-per-output schedule (no tiles,
// no tree reductions), so that only the schedule differs
const naive = arg('before', '') === 'naive';
let B;
if (naive) {
  const { gpuTrace } = await imp(after, 'schedule/gpu-schedule.js');
  const { Schedule } = await imp(after, 'schedule/schedule.js');
  const traceFor = (k) => gpuTrace(new Schedule([k.output]), { minTileOutputs: Infinity, treeMinReduce: Infinity });
  B = { compile: (bytes, o) => A.compile(bytes, { ...o, gpuTraceFor: traceFor }), load: A.load };
} else {
  B = {
    compile: (await imp(before, 'compiler/compile.js')).compile,
    load: (await imp(before, 'runtime/index.js')).load,
  };
}
for (const [X, dir] of [
  [A, after],
  [B, naive ? after : before],
]) {
  X.readArtifact = (await imp(dir, 'runtime/artifact.js')).readArtifact;
  X.Executor = (await imp(dir, 'runtime/webgpu.js')).WebGpuExecutor;
}
const { nodeGpuDevice } = await imp(after, 'conformance/node-webgpu.js');
const { buildModel, randomF32 } = await imp(after, 'frontend/onnx/model-builder.js');
const { decodeTensorProto } = await imp(after, 'frontend/onnx/tensor-proto.js');
const device = await nodeGpuDevice();

function workload(name) {
  if (name === 'matmul') {
    const n = 512;
    const bytes = buildModel({
      inputs: [
        ['a', 'float32', [n, n]],
        ['b', 'float32', [n, n]],
      ],
      outputs: [['c', 'float32', [n, n]]],
      nodes: [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['c'] }],
    });
    return { label: 'MatMul 512x512x512', bytes, feeds: { a: randomF32([n, n], 1), b: randomF32([n, n], 2) } };
  }
  if (name === 'eltwise') {
    const shape = [2048, 1024];
    const bytes = buildModel({
      inputs: [
        ['a', 'float32', shape],
        ['b', 'float32', shape],
      ],
      outputs: [['c', 'float32', shape]],
      nodes: [
        { op: 'Add', inputs: ['a', 'b'], outputs: ['s'] },
        { op: 'Relu', inputs: ['s'], outputs: ['c'] },
      ],
    });
    return { label: 'Add+Relu 2048x1024', bytes, feeds: { a: randomF32(shape, 1), b: randomF32(shape, 2) } };
  }
  const dir = join('.cache/models', name),
    set = join(dir, 'test_data_set_0');
  if (!existsSync(dir)) throw new Error(`no ${dir}: run npm run fixtures`);
  const inputs = readdirSync(set)
    .filter((f) => f.startsWith('input_'))
    .sort()
    .map((f) => decodeTensorProto(readFileSync(join(set, f))));
  return { label: name, bytes: readFileSync(join(dir, 'model.onnx')), modelPath: join(dir, 'model.onnx'), inputs };
}

const maxErr = (x, y) => {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(Number(x[i]) - Number(y[i])));
  return m;
};
const stats = (ts) => {
  const s = [...ts].sort((a, b) => a - b);
  return `${s[0].toFixed(1)} / ${s[Math.floor(s.length / 2)].toFixed(1)}`;
};

console.log(
  `| workload | before min / median ms | after min / median ms | speed-up (median) | max abs err before / after vs WebAssembly |`,
);
console.log('|---|---:|---:|---:|---:|');
for (const name of models) {
  const w = workload(name);
  const opts = { target: 'webgpu', modelPath: w.modelPath };
  const ab = (await B.compile(w.bytes, opts)).artifact,
    aa = (await A.compile(w.bytes, opts)).artifact;
  const mb = await B.load(ab, { target: 'webgpu', device });
  const ma = await A.load(aa, { target: 'webgpu', device });
  const feeds = w.feeds ?? Object.fromEntries(ma.inputs.map((inp, i) => [inp.name, w.inputs[i]]));
  const cpu = await A.load((await A.compile(w.bytes, { modelPath: w.modelPath })).artifact, { threads: 1 });
  const ref = await cpu.run(feeds);
  const out0 = Object.keys(ref)[0];
  const errs = [];
  for (const m of [mb, ma]) errs.push(maxErr((await m.run(feeds))[out0].data, ref[out0].data).toExponential(1)); // also the warm-up
  const tb = [],
    ta = [];
  let time = async (m) => {
    const t = performance.now();
    await m.run(feeds);
    return performance.now() - t;
  };
  if (timing === 'dispatch') {
    const exs = new Map();
    for (const [X, m] of [
      [B, mb],
      [A, ma],
    ]) {
      const parts = await X.readArtifact(m === mb ? ab : aa);
      const ex = await X.Executor.create(parts.header, parts.weights, device);
      await ex.run(feeds); // writes the inputs the timed passes read
      exs.set(m, ex);
    }
    time = async (m) => {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      exs.get(m).encodeDispatches(pass);
      pass.end();
      const t = performance.now();
      device.queue.submit([enc.finish()]);
      await device.queue.onSubmittedWorkDone();
      return performance.now() - t;
    };
    await time(mb);
    await time(ma);
  }
  for (let r = 0; r < runs; r++) {
    tb.push(await time(mb));
    ta.push(await time(ma));
  }
  const med = (ts) => [...ts].sort((a, b) => a - b)[Math.floor(ts.length / 2)];
  console.log(
    `| ${w.label} | ${stats(tb)} | ${stats(ta)} | ${(med(tb) / med(ta)).toFixed(2)}x | ${errs.join(' / ')} |`,
  );
  mb.dispose?.();
  ma.dispose?.();
  cpu.dispose?.();
}
process.exit(0);
