// QuantizeLinear / DequantizeLinear (src/frontend/onnx/ops/quantize.ts) against ONNX Runtime on what the node suite
// touches lightly: ties (x / scale = k + 0.5) rounding half to even, saturation at both ends, per-axis scales and zero
// points, int16; and malformed scales as KilnErrors.
import { describe, expect, it } from 'vitest';
import { compile, load, type Tensor } from '../src/index.js';
import { buildModel } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import type { DType } from '../src/runtime/dtype.js';
import { kilnError } from './helpers/errors.js';
import { runOrt } from './helpers/ort.js';

const f32 = (shape: number[], v: number[]): Tensor => ({ dtype: 'float32', shape, data: Float32Array.from(v) });
const ints = (dtype: 'int8' | 'uint8' | 'int16', shape: number[], v: number[]): Tensor => ({
  dtype,
  shape,
  data: { int8: Int8Array, uint8: Uint8Array, int16: Int16Array }[dtype].from(v),
});

/** x [2, 3, 4]: ties, large magnitudes and ordinary values, in every channel. */
const X = f32(
  [2, 3, 4],
  [
    0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1e6, -1e6, 3.25, -7.75, 0, 126.5, 127.5, -128.5, 255.5, 300, -300, 0.49, 2.51, 1.5,
    5, -5, 9.5, 10.5,
  ],
);

function roundTrip(q: DType, scale: Tensor, zp: Tensor) {
  return buildModel({
    inputs: [['x', 'float32', [2, 3, 4]]],
    outputs: [
      ['q', q, [2, 3, 4]],
      ['y', 'float32', [2, 3, 4]],
    ],
    initializers: { s: scale, z: zp },
    nodes: [
      { op: 'QuantizeLinear', inputs: ['x', 's', 'z'], outputs: ['q'], attrs: { axis: 1 } },
      { op: 'DequantizeLinear', inputs: ['q', 's', 'z'], outputs: ['y'], attrs: { axis: 1 } },
    ],
    opset: 21,
  });
}

describe('QuantizeLinear / DequantizeLinear against ONNX Runtime', () => {
  for (const [name, q, scale, zp] of [
    ['per-tensor uint8', 'uint8', f32([], [1]), ints('uint8', [], [128])],
    ['per-tensor int8, scale 0.5', 'int8', f32([], [0.5]), ints('int8', [], [-3])],
    ['per-axis int8', 'int8', f32([3], [1, 0.25, 2]), ints('int8', [3], [0, 5, -7])],
    ['per-tensor int16', 'int16', f32([], [0.01]), ints('int16', [], [100])],
  ] as const) {
    it(name, async () => {
      const bytes = roundTrip(q, scale, zp);
      const got = (await load((await compile(bytes)).artifact)).runSync({ x: X });
      const want = await runOrt(bytes, { x: X });
      expect(compareTensors(got.q, want.q)?.message).toBeUndefined(); // exact: integers
      expect(compareTensors(got.y, want.y)?.message).toBeUndefined();
    });
  }

  it('a per-axis scale whose length is not the axis dim is E_MODEL_INVALID naming the shapes', async () => {
    const bytes = roundTrip('int8', f32([2], [1, 2]), ints('int8', [2], [0, 0]));
    const e = await kilnError(() => compile(bytes));
    expect(e.code).toBe('E_MODEL_INVALID');
    expect(e.message).toMatch(/scale of shape \[2\].*\[2,3,4\]/);
  });

  it('a blocked scale with the wrong number of blocks is E_MODEL_INVALID', async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [2, 4]]],
      outputs: [['q', 'int8', [2, 4]]],
      initializers: { s: f32([2, 3], [1, 1, 1, 1, 1, 1]), z: ints('int8', [2, 3], [0, 0, 0, 0, 0, 0]) },
      nodes: [{ op: 'QuantizeLinear', inputs: ['x', 's', 'z'], outputs: ['q'], attrs: { axis: 1, block_size: 2 } }],
      opset: 21,
    });
    const e = await kilnError(() => compile(bytes));
    expect(e.code).toBe('E_MODEL_INVALID');
    expect(e.message).toMatch(/3 blocks along axis 1/);
  });
});
