// Integer kernels (issue 16): QDQ models made by onnxruntime.quantization.quantize_static
// (scripts/gen_quantized_models.py) compile to qlinear_conv / qlinear_matmul (relay-ir/passes/fuse-qdq.ts), whose
// WebAssembly accumulates with i32x4.dot_i16x8_s, and their outputs match ONNX Runtime's on the same file. ORT runs
// these files with its own QDQ fusion (QLinearConv, integer accumulation, float requantization rounded half to
// even), so the quantized values should agree exactly; the test allows one step of the output's quantization and
// prints the measured error (0 on this machine).
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { compile, load, decodeTensorProto, type Tensor } from '../src/index.js';
import { primitiveOp, postOrder } from '../src/relay-ir/expr.js';
import { wasmText } from '../src/codegen/wasm/codegen.js';
import { tensor } from '../src/runtime/tensor.js';
import { gcall, gconst, gfunc, gvar } from '../src/relay-ir/expr.js';
import { getOp } from '../src/relay-ir/op.js';
import { tensorType } from '../src/relay-ir/types.js';
import { fuseQdq } from '../src/relay-ir/passes/fuse-qdq.js';
import { buildModel } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { runOrt } from './helpers/ort.js';

/** Deterministic integers in [lo, hi] (a linear congruential sequence). */
function ints(dtype: 'uint8' | 'int8' | 'int32', shape: number[], lo: number, hi: number, seed: number): Tensor {
  let s = seed;
  const n = shape.reduce((a, b) => a * b, 1);
  const v = Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return lo + (s % (hi - lo + 1));
  });
  return { dtype, shape, data: { uint8: Uint8Array, int8: Int8Array, int32: Int32Array }[dtype].from(v) };
}
const f32 = (shape: number[], v: number[]): Tensor => ({ dtype: 'float32', shape, data: Float32Array.from(v) });
const scalarQ = (dtype: 'uint8' | 'int8', v: number): Tensor => ({
  dtype,
  shape: [],
  data: dtype === 'uint8' ? Uint8Array.of(v) : Int8Array.of(v),
});

const dirOf = (name: string) => join('.cache/models', name);

function testSet(name: string): { inputs: Tensor[]; outputs: Tensor[] } {
  const set = join(dirOf(name), 'test_data_set_0');
  const files = readdirSync(set).sort();
  const read = (kind: string) =>
    files.filter((f) => f.startsWith(kind)).map((f) => decodeTensorProto(readFileSync(join(set, f))));
  return { inputs: read('input_'), outputs: read('output_') };
}

describe('QDQ models run on integer kernels and match ONNX Runtime', () => {
  for (const [name, convs] of [
    ['mobilenet_v2_small_qdq', 52],
    ['resnet18_small_qdq', 20],
  ] as const) {
    it(name, async () => {
      const modelPath = join(dirOf(name), 'model.onnx');
      const r = await compile(readFileSync(modelPath), { modelPath });
      const ops = postOrder(r.graph.body).map(primitiveOp);
      const count = (op: string) => ops.filter((o) => o === op).length;
      // every convolution and the classifier's Gemm became integer operators; no float conv or matmul is left
      expect(count('qlinear_conv')).toBe(convs);
      expect(count('qlinear_matmul')).toBe(1);
      expect(count('conv') + count('matmul') + count('gemm')).toBe(0);
      // the WebAssembly accumulates in integer SIMD
      const wat = wasmText(r.program.wasm);
      expect(wat).toContain('i32x4.dot_i16x8_s');
      expect(wat).toContain('v128.load8x8_s');

      const model = await load(r.artifact);
      const { inputs, outputs } = testSet(name);
      const got = model.runSync(Object.fromEntries(model.inputs.map((inp, i) => [inp.name, inputs[i]])));
      const y = got[model.outputs[0].name].data as Float32Array,
        want = outputs[0].data as Float32Array;
      // the output is DequantizeLinear(q): its values are multiples of one step apart
      const levels = [...new Set(Array.from(want))].sort((a, b) => a - b);
      const step = Math.min(...levels.slice(1).map((v, i) => v - levels[i]));
      let err = 0;
      for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(y[i] - want[i]));
      console.log(`${name}: max abs err ${err} vs ORT (output step ${step.toExponential(3)})`);
      expect(step).toBeGreaterThan(0);
      expect(err).toBeLessThanOrEqual(step * 1.001);
    }, 180_000);
  }
});

describe('fuse-qdq', () => {
  /** DequantizeLinear as the frontend writes it. */
  const dq = (q: ReturnType<typeof gvar> | ReturnType<typeof gconst>, scale: number, zp: number) =>
    gcall(getOp('mul'), [
      gcall(
        getOp('cast'),
        [gcall(getOp('sub'), [gcall(getOp('cast'), [q], { to: 'int32' }), gconst(tensor('int32', [], [zp]))])],
        { to: 'float32' },
      ),
      gconst(tensor('float32', [], [scale])),
    ]);
  const qz = (v: ReturnType<typeof gcall>, scale: number, zp: number) =>
    gcall(
      getOp('cast'),
      [
        gcall(getOp('clip'), [
          gcall(getOp('add'), [
            gcall(getOp('round'), [gcall(getOp('div'), [v, gconst(tensor('float32', [], [scale]))])]),
            gconst(tensor('float32', [], [zp])),
          ]),
          gconst(tensor('float32', [], [0])),
          gconst(tensor('float32', [], [255])),
        ]),
      ],
      { to: 'uint8' },
    );
  const constOf = (e: { kind: string; value?: unknown }) =>
    e.kind === 'const' ? (e as { value: ReturnType<typeof tensor> }).value : undefined;

  it('fuses a ReLU into the saturation range and keeps the float path where the product is read twice', () => {
    const x = gvar('x', tensorType([1, 4], 'uint8'));
    const w = gconst(tensor('int8', [4, 3], [1, -2, 3, 4, 5, -6, 7, 8, 9, -10, 11, 12]));
    const mm = gcall(getOp('matmul'), [dq(x, 0.5, 10), dq(w, 0.25, 0)]);
    const fused = fuseQdq(gfunc([x], qz(gcall(getOp('relu'), [mm]), 0.1, 20)), constOf as never);
    expect(fused.body.kind === 'call' && primitiveOp(fused.body)).toBe('qlinear_matmul');
    const attrs = (fused.body as { attrs: Record<string, number> }).attrs;
    expect([attrs.qmin, attrs.qmax]).toEqual([20, 255]); // ReLU: from the zero point up
    // the same product also read as a float: left alone
    const twice = fuseQdq(
      gfunc([x], gcall(getOp('add'), [gcall(getOp('cast'), [qz(mm, 0.1, 20)], { to: 'float32' }), mm])),
      constOf as never,
    );
    expect(postOrder(twice.body).map(primitiveOp)).not.toContain('qlinear_matmul');
  });
});

describe('QLinearConv / QLinearMatMul with constant weights use the same integer operator', () => {
  const cases = [
    {
      name: 'QLinearConv 3x3, stride 2, padded, per-channel int8 weights, int32 bias',
      op: 'QLinearConv',
      x: ints('uint8', [1, 6, 9, 9], 0, 255, 1),
      w: ints('int8', [8, 6, 3, 3], -127, 127, 2),
      wScale: f32([8], [0.01, 0.02, 0.015, 0.03, 0.005, 0.011, 0.02, 0.009]),
      wZero: ints('int8', [8], 0, 0, 3),
      attrs: { pads: [1, 1, 1, 1], strides: [2, 2] },
      bias: ints('int32', [8], -2000, 2000, 4),
      out: [1, 8, 5, 5],
      fused: 'qlinear_conv',
    },
    {
      name: 'QLinearConv depthwise, uint8 weights with a zero point',
      op: 'QLinearConv',
      x: ints('uint8', [1, 6, 8, 8], 0, 255, 5),
      w: ints('uint8', [6, 1, 3, 3], 0, 255, 6),
      wScale: f32([], [0.004]),
      wZero: scalarQ('uint8', 131),
      attrs: { pads: [1, 1, 1, 1], group: 6 },
      bias: undefined,
      out: [1, 6, 8, 8],
      fused: 'qlinear_conv',
    },
    {
      name: 'QLinearMatMul [2, 5, 7] x [7, 10], uint8 weights with a zero point, per-column scales',
      op: 'QLinearMatMul',
      x: ints('uint8', [2, 5, 7], 0, 255, 7),
      w: ints('uint8', [7, 10], 0, 255, 8),
      wScale: f32(
        [10],
        Array.from({ length: 10 }, (_, i) => 0.002 * (i + 1)),
      ),
      wZero: ints('uint8', [10], 3, 3, 9),
      attrs: {},
      bias: undefined,
      out: [2, 5, 10],
      fused: 'qlinear_matmul',
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const initializers: Record<string, Tensor> = {
        xs: f32([], [0.02]),
        xz: scalarQ('uint8', 120),
        w: c.w,
        ws: c.wScale,
        wz: c.wZero,
        ys: f32([], [0.05]),
        yz: scalarQ('uint8', 100),
        ...(c.bias ? { b: c.bias } : {}),
      };
      const bytes = buildModel({
        inputs: [['x', 'uint8', c.x.shape]],
        outputs: [['y', 'uint8', c.out]],
        initializers,
        nodes: [
          {
            op: c.op,
            inputs: ['x', 'xs', 'xz', 'w', 'ws', 'wz', 'ys', 'yz', ...(c.bias ? ['b'] : [])],
            outputs: ['y'],
            attrs: c.attrs,
          },
        ],
        opset: 13,
      });
      const r = await compile(bytes);
      expect(postOrder(r.graph.body).map(primitiveOp)).toContain(c.fused);
      const got = (await load(r.artifact)).runSync({ x: c.x });
      const want = await runOrt(bytes, { x: c.x });
      expect(compareTensors(got.y, want.y, { rtol: 0, atol: 0 })?.message).toBeUndefined(); // integers: exact
      // (not a saturated output: the requantization is exercised over a range of values)
      const levels = new Set(Array.from(want.y.data as Uint8Array)).size;
      console.log(`${c.name}: ${levels} distinct output values`);
      expect(levels).toBeGreaterThan(8);
    });
  }
});
