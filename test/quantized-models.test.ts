// Quantized and float16 models made by ONNX Runtime's own tools (scripts/gen_quantized_models.py: quantize_static in
// QDQ format, quantize_dynamic, convert_float_to_float16, from the random-weight models of gen_models.py), compiled
// for WebAssembly and compared with ONNX Runtime's outputs on the same files and inputs.
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { compile, load, decodeTensorProto, type Tensor } from '../src/index.js';
import { compareTensors } from '../src/conformance/compare.js';
import { halfValues } from '../src/runtime/half.js';

const dirOf = (name: string) => join('.cache/models', name);

function testSet(name: string): { inputs: Tensor[]; outputs: Tensor[] } {
  const set = join(dirOf(name), 'test_data_set_0');
  const files = readdirSync(set).sort();
  const read = (kind: string) =>
    files.filter((f) => f.startsWith(kind)).map((f) => decodeTensorProto(readFileSync(join(set, f))));
  return { inputs: read('input_'), outputs: read('output_') };
}

async function run(name: string): Promise<{ outputs: Tensor[]; artifactBytes: number; ops: string[] }> {
  const modelPath = join(dirOf(name), 'model.onnx');
  const info = JSON.parse(readFileSync(join(dirOf(name), 'info.json'), 'utf8')) as {
    inputs: { name: string; shape: number[] }[];
    op_types?: string[];
  };
  const inputShapes = Object.fromEntries(info.inputs.map((i) => [i.name, i.shape]));
  const { artifact } = await compile(readFileSync(modelPath), { modelPath, inputShapes });
  const model = await load(artifact);
  const { inputs } = testSet(name);
  const out = model.runSync(Object.fromEntries(model.inputs.map((inp, i) => [inp.name, inputs[i]])));
  return { outputs: model.outputs.map((o) => out[o.name]), artifactBytes: artifact.length, ops: info.op_types ?? [] };
}

const values = (t: Tensor): ArrayLike<number> =>
  t.dtype === 'float16' ? halfValues(t.dtype, t.data) : (t.data as Float32Array);

/** Largest |a - b| and largest |b|. */
function maxErr(a: Tensor, b: Tensor): { err: number; scale: number } {
  const x = values(a),
    y = values(b);
  let err = 0,
    scale = 0;
  for (let i = 0; i < y.length; i++) {
    err = Math.max(err, Math.abs(x[i] - y[i]));
    scale = Math.max(scale, Math.abs(y[i]));
  }
  return { err, scale };
}

describe('quantized models match ONNX Runtime on the same quantized file', () => {
  for (const [name, ops] of [
    ['mobilenet_v2_small_qdq', ['QuantizeLinear', 'DequantizeLinear']],
    ['resnet18_small_qdq', ['QuantizeLinear', 'DequantizeLinear']],
    ['bert_small_dynq', ['DynamicQuantizeLinear', 'MatMulInteger']],
  ] as const) {
    it(name, async () => {
      const got = await run(name);
      for (const op of ops) expect(got.ops).toContain(op); // the file really is quantized
      testSet(name).outputs.forEach((want, i) => {
        console.log(`${name}: output ${i} max abs err ${maxErr(got.outputs[i], want).err.toExponential(2)} vs ORT`);
        expect(compareTensors(got.outputs[i], want)?.message).toBeUndefined();
      });
    }, 120_000);
  }
});

describe('a float16 model', () => {
  it('resnet18_small_fp16: within 1e-2 of the float32 model (relative to its largest output) as ORT float16 is, half its artifact', async () => {
    const half = await run('resnet18_small_fp16');
    const full = await run('resnet18_small');
    const ort16 = testSet('resnet18_small_fp16').outputs[0];
    const ort32 = testSet('resnet18_small').outputs[0];
    expect(half.outputs[0].dtype).toBe('float16');
    const vs32 = maxErr(half.outputs[0], ort32),
      vsOrt16 = maxErr(half.outputs[0], ort16);
    console.log(
      `resnet18_small_fp16: max abs err ${vs32.err.toExponential(2)} vs float32 ORT, ${vsOrt16.err.toExponential(2)} vs float16 ORT (largest output ${vs32.scale.toFixed(2)}); artifact ${half.artifactBytes} vs ${full.artifactBytes} bytes`,
    );
    expect(vs32.err).toBeLessThan(1e-2 * vs32.scale);
    expect(vsOrt16.err).toBeLessThan(1e-2 * vsOrt16.scale);
    expect(half.artifactBytes).toBeLessThan(0.55 * full.artifactBytes);
  }, 180_000);
});
