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
