// The shape arithmetic a dynamic-axes export writes, as a small model: batch * seq computed from Shape(x) by
// Gather, Mul, Unsqueeze and Concat feeds a Reshape, and Shape(y) another. Shared by the dims and symbolic-dims tests.
import type { Tensor } from '../../src/index.js';
import { type ModelSpec, buildModel, randomF32 } from '../../src/frontend/onnx/model-builder.js';

export const int64 = (shape: number[], values: number[]): Tensor => ({
  dtype: 'int64',
  shape,
  data: BigInt64Array.from(values.map(BigInt)),
});

/**
 * s3 = reshape(softmax(reshape(x @ w, [batch * seq, 4])), shape(y)); z = s3 + y, or `tail` nodes from s3 to z with
 * their `extra` initializers.
 */
export function shapeChainModel(tail?: ModelSpec['nodes'], extra: ModelSpec['initializers'] = {}): Uint8Array {
  return buildModel({
    inputs: [
      ['x', 'float32', ['batch', 'seq', 8]],
      ['y', 'float32', ['batch', 'seq', 4]],
    ],
    outputs: [['z', 'float32', ['batch', 'seq', 4]]],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w'], outputs: ['h'] },
      { op: 'Shape', inputs: ['x'], outputs: ['sx'] },
      { op: 'Gather', inputs: ['sx', 'i0'], outputs: ['b'] },
      { op: 'Gather', inputs: ['sx', 'i1'], outputs: ['t'] },
      { op: 'Mul', inputs: ['b', 't'], outputs: ['bt'] },
      { op: 'Unsqueeze', inputs: ['bt', 'axes0'], outputs: ['bt1'] },
      { op: 'Concat', inputs: ['bt1', 'c4'], outputs: ['rows'], attrs: { axis: 0 } },
      { op: 'Reshape', inputs: ['h', 'rows'], outputs: ['h2'] },
      { op: 'Softmax', inputs: ['h2'], outputs: ['s'], attrs: { axis: -1 } },
      { op: 'Shape', inputs: ['y'], outputs: ['sy'] },
      { op: 'Reshape', inputs: ['s', 'sy'], outputs: ['s3'] },
      ...(tail ?? [{ op: 'Add', inputs: ['s3', 'y'], outputs: ['z'] }]),
    ],
    initializers: {
      w: randomF32([8, 4], 3),
      i0: int64([], [0]),
      i1: int64([], [1]),
      axes0: int64([1], [0]),
      c4: int64([1], [4]),
      ...extra,
    },
  });
}
