// ONNX node attributes, every type, decoded into plain values.
import { KilnError } from '../../runtime/errors.js';
import type { Tensor } from '../../runtime/tensor.js';
import { type AttributeProto, AttributeProto_AttributeType as T, type GraphProto } from './proto/onnx_pb.js';
import { type ExternalDataReader, tensorFromProto } from './tensor-proto.js';

export type OnnxAttr =
  | { type: 'float'; value: number }
  | { type: 'int'; value: number }
  | { type: 'string'; value: string }
  | { type: 'tensor'; value: Tensor }
  | { type: 'graph'; value: GraphProto }
  | { type: 'floats'; value: number[] }
  | { type: 'ints'; value: number[] }
  | { type: 'strings'; value: string[] }
  | { type: 'tensors'; value: Tensor[] }
  | { type: 'graphs'; value: GraphProto[] }
  | { type: 'sparse_tensor' | 'sparse_tensors' | 'type_proto' | 'type_protos'; value: unknown };

const utf8 = new TextDecoder();

/** A TENSOR or GRAPH attribute whose value field is absent (the type says one thing, the fields another). */
function missingValue(a: AttributeProto, field: string): never {
  throw new KilnError(
    'E_MODEL_INVALID',
    `attribute '${a.name}' has type ${T[a.type]} but no value in its '${field}' field`,
    { hint: 'the model is malformed; check it with onnx.checker.check_model' },
  );
}

export function decodeAttribute(a: AttributeProto, readExternal?: ExternalDataReader): OnnxAttr {
  switch (a.type) {
    case T.FLOAT:
      return { type: 'float', value: a.f };
    case T.INT:
      return { type: 'int', value: Number(a.i) };
    case T.STRING:
      return { type: 'string', value: utf8.decode(a.s) };
    case T.TENSOR:
      return { type: 'tensor', value: tensorFromProto(a.t ?? missingValue(a, 't'), readExternal) };
    case T.GRAPH:
      return { type: 'graph', value: a.g ?? missingValue(a, 'g') };
    case T.FLOATS:
      return { type: 'floats', value: [...a.floats] };
    case T.INTS:
      return { type: 'ints', value: a.ints.map(Number) };
    case T.STRINGS:
      return { type: 'strings', value: a.strings.map((s) => utf8.decode(s)) };
    case T.TENSORS:
      return { type: 'tensors', value: a.tensors.map((t) => tensorFromProto(t, readExternal)) };
    case T.GRAPHS:
      return { type: 'graphs', value: [...a.graphs] };
    case T.SPARSE_TENSOR:
      return { type: 'sparse_tensor', value: a.sparseTensor };
    case T.SPARSE_TENSORS:
      return { type: 'sparse_tensors', value: a.sparseTensors };
    case T.TYPE_PROTO:
      return { type: 'type_proto', value: a.tp };
    case T.TYPE_PROTOS:
      return { type: 'type_protos', value: a.typeProtos };
    default:
      throw new KilnError('E_MODEL_INVALID', `attribute '${a.name}' has unknown type ${a.type}`);
  }
}
