// kiln demo [MODEL_NAME]: compiles a generated test model (scripts/fixtures.sh writes them to .cache/models),
// runs it with the Kiln runtime and with ONNX Runtime (onnxruntime-node) on the same input, and prints the
// agreement and the times.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { compile } from '../compiler/compile.js';
import { load } from '../index.js';
import { KilnError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { decodeTensorProto } from '../frontend/onnx/tensor-proto.js';
import { DEFAULT_TOLERANCE, compareTensors } from '../conformance/compare.js';
import { summarize } from './run.js';
import { intFlag } from './usage.js';
import { median } from '../util/stats.js';

export async function demoCommand(pos: string[], v: { bench?: string }): Promise<number> {
  const runs = intFlag(v.bench, '--bench', 10);
  const name = pos[0] ?? 'squeezenet1_1';
  const dir = join('.cache', 'models', name);
  const modelPath = join(dir, 'model.onnx');
  if (!existsSync(modelPath))
    throw new KilnError('E_IO', `no model at ${modelPath}`, { hint: 'generate the models first: npm run fixtures' });
  const bytes = readFileSync(modelPath);
  let t0 = performance.now();
  const compiled = await compile(bytes, { modelPath });
  console.log(
    `kiln: compiled ${name} in ${((performance.now() - t0) / 1000).toFixed(2)} s: ${compiled.header.kernels.length} kernels, artifact ${(compiled.artifact.length / 1048576).toFixed(2)} MiB`,
  );
  const model = await load(compiled.artifact, { threads: 1 });
  const set = join(dir, 'test_data_set_0');
  const inputFiles = readdirSync(set)
    .filter((f) => f.startsWith('input_'))
    .sort();
  const feeds: Record<string, Tensor> = {};
  model.inputs.forEach((inp, i) => {
    feeds[inp.name] = decodeTensorProto(readFileSync(join(set, inputFiles[i])));
  });
  const out = model.runSync(feeds);
  const kilnTimes: number[] = [];
  for (let i = 0; i < runs; i++) {
    t0 = performance.now();
    model.runSync(feeds);
    kilnTimes.push(performance.now() - t0);
  }

  let ort: typeof import('onnxruntime-node');
  try {
    ort = await import('onnxruntime-node');
  } catch {
    throw new KilnError('E_DEPENDENCY', 'kiln demo compares with onnxruntime-node, which is not installed', {
      hint: 'run npm install in the Kiln checkout (it is a dev dependency)',
    });
  }
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const ortFeeds = Object.fromEntries(
    Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.shape)]),
  );
  const ref = await session.run(ortFeeds);
  const ortTimes: number[] = [];
  for (let i = 0; i < runs; i++) {
    t0 = performance.now();
    await session.run(ortFeeds);
    ortTimes.push(performance.now() - t0);
  }

  let ok = true;
  for (const o of model.outputs) {
    const r = ref[o.name];
    const want: Tensor = { dtype: o.dtype, shape: [...r.dims], data: r.data as Float32Array };
    const bad = compareTensors(out[o.name], want, DEFAULT_TOLERANCE);
    let maxErr = 0;
    for (let i = 0; i < want.data.length; i++)
      maxErr = Math.max(maxErr, Math.abs(Number(out[o.name].data[i]) - Number(want.data[i])));
    console.log(`output ${o.name}: ${summarize(out[o.name])}`);
    console.log(
      `  vs ONNX Runtime: max abs err ${maxErr.toExponential(2)} -> ${bad ? `MISMATCH (${bad.message})` : `agree (rtol ${DEFAULT_TOLERANCE.rtol}, atol ${DEFAULT_TOLERANCE.atol})`}`,
    );
    ok &&= !bad;
  }
  console.log(
    `time (median of ${runs}, 1 thread each): kiln ${median(kilnTimes).toFixed(2)} ms, onnxruntime-node ${median(ortTimes).toFixed(2)} ms`,
  );
  return ok ? 0 : 1;
}
