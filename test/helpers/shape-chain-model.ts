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

/**
 * The shape chain above, then the position ids Range(0, seq) broadcast against the
 * rows, and a Slice of a table by seq, clamped at its 16 rows.
 */
export const shapeChains = shapeChainModel(
  [
    { op: 'Unsqueeze', inputs: ['t', 'axes0'], outputs: ['t1'] },
    { op: 'Slice', inputs: ['table', 'zero1', 't1', 'axes0'], outputs: ['rowsOfTable'] },
    { op: 'Add', inputs: ['s3', 'rowsOfTable'], outputs: ['s4'] },
    { op: 'Range', inputs: ['i0', 't', 'one'], outputs: ['pos'] },
    { op: 'Cast', inputs: ['pos'], outputs: ['posf'], attrs: { to: 1 } },
    { op: 'Unsqueeze', inputs: ['posf', 'axes1'], outputs: ['pos2'] },
    { op: 'Add', inputs: ['s4', 'pos2'], outputs: ['s5'] },
    { op: 'Add', inputs: ['s5', 'y'], outputs: ['z'] },
  ],
  {
    table: randomF32([16, 4], 4),
    one: int64([], [1]),
    zero1: int64([1], [0]),
    axes1: int64([1], [1]),
  },
);

/** The shape chain, then a softmax along seq: a reduction over a run-time length. */
export const seqSoftmax = shapeChainModel([
  { op: 'Softmax', inputs: ['s3'], outputs: ['sm'], attrs: { axis: 1 } },
  { op: 'Add', inputs: ['sm', 'y'], outputs: ['z'] },
]);
