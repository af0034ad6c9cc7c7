// Builds small ONNX models (tests, the benchmark's MatMul) with the same generated protobuf schema the frontend
// decodes.
import { create, toBinary } from '@bufbuild/protobuf';
import {
  ModelProtoSchema,
  GraphProtoSchema,
  NodeProtoSchema,
  ValueInfoProtoSchema,
  TypeProtoSchema,
  TypeProto_TensorSchema,
  TensorShapeProtoSchema,
  TensorShapeProto_DimensionSchema,
  AttributeProtoSchema,
  AttributeProto_AttributeType,
  OperatorSetIdProtoSchema,
  TensorProtoSchema,
  type AttributeProto,
  type TensorProto,
} from './proto/onnx_pb.js';
import { DTYPE_TO_ONNX, type DType } from '../../runtime/dtype.js';
import { type Tensor, sizeOf } from '../../runtime/tensor.js';

export type Attr =
  | number
  | number[]
  | string
  | Tensor
  | { floats: number[] }
  | { float: number }
  | { strings: string[] }
  | { graph: GraphSpec };
export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  attrs?: Record<string, Attr>;
  domain?: string;
}

function attr(name: string, v: Attr): AttributeProto {
  const T = AttributeProto_AttributeType;
  if (typeof v === 'number')
    return Number.isInteger(v)
      ? create(AttributeProtoSchema, { name, type: T.INT, i: BigInt(v) })
      : create(AttributeProtoSchema, { name, type: T.FLOAT, f: v });
  if (typeof v === 'string')
    return create(AttributeProtoSchema, { name, type: T.STRING, s: new TextEncoder().encode(v) });
  if (Array.isArray(v)) return create(AttributeProtoSchema, { name, type: T.INTS, ints: v.map(BigInt) });
  if ('floats' in v) return create(AttributeProtoSchema, { name, type: T.FLOATS, floats: v.floats });
  if ('strings' in v) {
    const utf8 = new TextEncoder();
    return create(AttributeProtoSchema, { name, type: T.STRINGS, strings: v.strings.map((x) => utf8.encode(x)) });
  }
  if ('float' in v) return create(AttributeProtoSchema, { name, type: T.FLOAT, f: v.float });
  if ('graph' in v) return create(AttributeProtoSchema, { name, type: T.GRAPH, g: graphProto(name, v.graph) });
  return create(AttributeProtoSchema, { name, type: T.TENSOR, t: tensorProto(name, v) });
}

export function tensorProto(name: string, t: Tensor): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: t.shape.map(BigInt),
    dataType: DTYPE_TO_ONNX[t.dtype],
    rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).slice(),
  });
}

/** A dim: a size, a symbol's name, or null for an unknown dim with no name. */
type DimSpec = number | string | null;

function valueInfo(name: string, dtype: DType, shape: DimSpec[]) {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType: DTYPE_TO_ONNX[dtype],
          shape: create(TensorShapeProtoSchema, {
            dim: shape.map((d) =>
              create(TensorShape_Dim, {
                value:
                  d === null
                    ? { case: undefined }
                    : typeof d === 'number'
                      ? { case: 'dimValue', value: BigInt(d) }
                      : { case: 'dimParam', value: d },
              }),
            ),
          }),
        }),
      },
    }),
  });
}
const TensorShape_Dim = TensorShapeProto_DimensionSchema;

export interface GraphSpec {
  inputs: [string, DType, DimSpec[]][];
  outputs: [string, DType, DimSpec[]][];
  nodes: NodeSpec[];
  initializers?: Record<string, Tensor>;
}

export interface ModelSpec extends GraphSpec {
  opset?: number;
  /** Opsets of other domains (e.g. ai.onnx.preview) the nodes use. */
  domains?: Record<string, number>;
}

function graphProto(name: string, s: GraphSpec) {
  return create(GraphProtoSchema, {
    name,
    node: s.nodes.map((n, i) =>
      create(NodeProtoSchema, {
        opType: n.op,
        domain: n.domain ?? '',
        input: n.inputs,
        output: n.outputs,
        name: n.name ?? `${n.op}_${i}`,
        attribute: Object.entries(n.attrs ?? {}).map(([k, v]) => attr(k, v)),
      }),
    ),
    input: s.inputs.map(([n, t, sh]) => valueInfo(n, t, sh)),
    output: s.outputs.map(([n, t, sh]) => valueInfo(n, t, sh)),
    initializer: Object.entries(s.initializers ?? {}).map(([k, v]) => tensorProto(k, v)),
  });
}

export function buildModel(s: ModelSpec): Uint8Array {
  return toBinary(
    ModelProtoSchema,
    create(ModelProtoSchema, {
      irVersion: 8n,
      producerName: 'kiln-test',
      graph: graphProto('test', s),
      opsetImport: [
        create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(s.opset ?? 17) }),
        ...Object.entries(s.domains ?? {}).map(([domain, v]) =>
          create(OperatorSetIdProtoSchema, { domain, version: BigInt(v) }),
        ),
      ],
    }),
  );
}

/** Deterministic pseudo-random float32 data in [-1, 1). */
export function randomF32(shape: number[], seed = 1): Tensor {
  let x = seed >>> 0;
  const n = sizeOf(shape);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    data[i] = x / 2 ** 31 - 1;
  }
  return { dtype: 'float32', shape, data };
}
