// A one-node ONNX model, Y = MatMul(A, W), A an input [M,K], W a random-weight initializer [K,N]; built at bench
// time with the frontend's generated protobuf schema (nothing committed).
import { create, toBinary } from '@bufbuild/protobuf';
import {
  ModelProtoSchema, GraphProtoSchema, NodeProtoSchema, ValueInfoProtoSchema, TypeProtoSchema, TypeProto_TensorSchema,
  TensorShapeProtoSchema, TensorShapeProto_DimensionSchema, OperatorSetIdProtoSchema, TensorProtoSchema,
} from '../frontend/onnx/proto/onnx_pb.js';
import { DTYPE_TO_ONNX } from '../runtime/dtype.js';
import type { Tensor } from '../runtime/tensor.js';

/** Deterministic pseudo-random float32 data in [-1, 1). */
export function randomF32(shape: number[], seed = 1): Tensor {
  let x = seed >>> 0;
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; data[i] = x / 2 ** 31 - 1; }
  return { dtype: 'float32', shape, data };
}

function valueInfo(name: string, shape: number[]) {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType: DTYPE_TO_ONNX.float32,
          shape: create(TensorShapeProtoSchema, {
            dim: shape.map((d) => create(TensorShapeProto_DimensionSchema, { value: { case: 'dimValue', value: BigInt(d) } })),
          }),
        }),
      },
    }),
  });
}

export function matmulModel(m: number, k: number, n: number): { bytes: Uint8Array; input: Tensor; flops: number } {
  const w = randomF32([k, n], 7);
  const wData = w.data as Float32Array;
  const graph = create(GraphProtoSchema, {
    name: `matmul_${m}x${k}x${n}`,
    node: [create(NodeProtoSchema, { opType: 'MatMul', input: ['A', 'W'], output: ['Y'], name: 'MatMul_0' })],
    input: [valueInfo('A', [m, k])],
    output: [valueInfo('Y', [m, n])],
    initializer: [create(TensorProtoSchema, {
      name: 'W', dims: [BigInt(k), BigInt(n)], dataType: DTYPE_TO_ONNX.float32,
      rawData: new Uint8Array(wData.buffer, wData.byteOffset, wData.byteLength).slice(),
    })],
  });
  const bytes = toBinary(ModelProtoSchema, create(ModelProtoSchema, {
    irVersion: 8n, producerName: 'kiln-bench', graph,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 17n })],
  }));
  return { bytes, input: randomF32([m, k], 3), flops: 2 * m * k * n };
}
