// A one-node ONNX model, Y = MatMul(A, W), A an input [M,K], W a random-weight initializer [K,N]; built at bench
// time (nothing committed).
import type { Tensor } from '../runtime/tensor.js';
import { buildModel, randomF32 } from '../frontend/onnx/model-builder.js';

export function matmulModel(m: number, k: number, n: number): { bytes: Uint8Array; input: Tensor; flops: number } {
  const bytes = buildModel({
    inputs: [['A', 'float32', [m, k]]],
    outputs: [['Y', 'float32', [m, n]]],
    initializers: { W: randomF32([k, n], 7) },
    nodes: [{ op: 'MatMul', inputs: ['A', 'W'], outputs: ['Y'], name: 'MatMul_0' }],
  });
  return { bytes, input: randomF32([m, k], 3), flops: 2 * m * k * n };
}
