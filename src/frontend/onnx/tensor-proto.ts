// ONNX TensorProto <-> Kiln tensors: raw little-endian bytes, the typed repeated fields, and external data.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ARRAY, BYTES, type DType, DTYPE_TO_ONNX, ONNX_DTYPE, ONNX_DTYPE_NAMES, isHalf } from '../../runtime/dtype.js';
import { halfBitsOf } from '../../runtime/half.js';
import { KilnError } from '../../runtime/errors.js';
import { type Tensor, sizeOf } from '../../runtime/tensor.js';
import { type TensorProto, TensorProtoSchema, TensorProto_DataLocation } from './proto/onnx_pb.js';

/** Reads external tensor data: (relative location, byte offset, byte length or undefined for "to the end"). */
export type ExternalDataReader = (location: string, offset: number, length: number | undefined) => Uint8Array;

export function onnxDType(code: number, what: string): DType {
  const t = ONNX_DTYPE[code];
  if (!t) {
    throw new KilnError('E_UNSUPPORTED', `${what}: element type ${ONNX_DTYPE_NAMES[code] ?? code} is not supported`, {
      hint: 'Kiln handles float32, float64, float16, bfloat16, float8 (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz), int8-64, uint8-64 and bool; cast the model to one of them before compiling',
    });
  }
  return t;
}

export function tensorFromProto(p: TensorProto, readExternal?: ExternalDataReader): Tensor {
  const what = `tensor '${p.name}'`;
  const dtype = onnxDType(p.dataType, what);
  const shape = p.dims.map((d) => Number(d));
  if (shape.some((d) => !Number.isInteger(d) || d < 0))
    throw new KilnError('E_MODEL_INVALID', `${what}: bad dims [${shape}]`);
  const n = sizeOf(shape);
  if (!(n <= 2 ** 31))
    throw new KilnError('E_MODEL_INVALID', `${what}: dims [${shape}] are implausible`, {
      hint: 'the data is corrupt, or not a TensorProto (sequence and optional values are not supported)',
    });
  const out = new ARRAY[dtype](n);
  let raw: Uint8Array | undefined;
  if (p.dataLocation === TensorProto_DataLocation.EXTERNAL) {
    const kv = Object.fromEntries(p.externalData.map((e) => [e.key, e.value]));
    if (!kv.location) throw new KilnError('E_MODEL_INVALID', `${what}: external data without a location`);
    if (!readExternal)
      throw new KilnError('E_MODEL_INVALID', `${what}: stored in external file '${kv.location}'`, {
        hint: 'compile from the model file path so Kiln can find its external data next to it',
      });
    raw = readExternal(kv.location, Number(kv.offset ?? 0), kv.length !== undefined ? Number(kv.length) : undefined);
  } else if (p.rawData.length > 0) {
    raw = p.rawData;
  }
  if (raw) {
    if (raw.length !== n * BYTES[dtype]) {
      throw new KilnError(
        'E_MODEL_INVALID',
        `${what}: ${raw.length} data bytes for ${dtype}[${shape}] (expected ${n * BYTES[dtype]})`,
        { hint: 'the model file is truncated or corrupt' },
      );
    }
    // copy: protobuf gives views into the file that are not always aligned
    new Uint8Array(out.buffer).set(raw);
    return { dtype, shape, data: out };
  }
  const src: ArrayLike<number | bigint> =
    dtype === 'float32'
      ? p.floatData
      : dtype === 'float64'
        ? p.doubleData
        : dtype === 'int64'
          ? p.int64Data
          : dtype === 'uint64'
            ? p.uint64Data
            : dtype === 'uint32'
              ? p.uint64Data
              : p.int32Data;
  if (src.length !== n) {
    throw new KilnError('E_MODEL_INVALID', `${what}: ${src.length} values for ${dtype}[${shape}]`, {
      hint: 'the model file is truncated or corrupt',
    });
  }
  if (isHalf(dtype)) {
    // int32_data holds 16-bit floats' bit patterns, one per element
    const bits = halfBitsOf(out);
    for (let i = 0; i < n; i++) bits[i] = Number(src[i]) & 0xffff;
    return { dtype, shape, data: out };
  }
  const wide = dtype === 'int64' || dtype === 'uint64';
  for (let i = 0; i < n; i++) (out as unknown as (number | bigint)[])[i] = wide ? BigInt(src[i]) : Number(src[i]);
  return { dtype, shape, data: out };
}

export function decodeTensorProto(bytes: Uint8Array, what = 'tensor file'): Tensor {
  let p: TensorProto;
  try {
    p = fromBinary(TensorProtoSchema, bytes);
  } catch (e) {
    throw new KilnError('E_MODEL_DECODE', `${what} is not an ONNX TensorProto: ${(e as Error).message}`);
  }
  return tensorFromProto(p);
}

export function encodeTensorProto(t: Tensor, name = ''): Uint8Array {
  const raw = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).slice();
  return toBinary(
    TensorProtoSchema,
    create(TensorProtoSchema, {
      name,
      dims: t.shape.map((d) => BigInt(d)),
      dataType: DTYPE_TO_ONNX[t.dtype],
      rawData: raw,
    }),
  );
}
