// Element types Kiln handles, their storage sizes and the typed arrays that hold them.
export type DType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'bfloat16'
  | 'float8e4m3fn'
  | 'float8e4m3fnuz'
  | 'float8e5m2'
  | 'float8e5m2fnuz'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'bool';

/** The 8-bit floats (ONNX's float8 family), stored as their bits. */
export const FLOAT8: readonly DType[] = ['float8e4m3fn', 'float8e4m3fnuz', 'float8e5m2', 'float8e5m2fnuz'];

export const DTYPES: readonly DType[] = [
  'float32',
  'float64',
  'float16',
  'bfloat16',
  ...FLOAT8,
  'int8',
  'uint8',
  'int16',
  'uint16',
  'int32',
  'uint32',
  'int64',
  'uint64',
  'bool',
];

export const BYTES: Record<DType, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  float8e4m3fn: 1,
  float8e4m3fnuz: 1,
  float8e5m2: 1,
  float8e5m2fnuz: 1,
  int8: 1,
  uint8: 1,
  int16: 2,
  uint16: 2,
  int32: 4,
  uint32: 4,
  int64: 8,
  uint64: 8,
  bool: 1,
};

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

type ArrayCtor = {
  new (n: number): TypedArray;
  new (buf: ArrayBufferLike, off: number, len: number): TypedArray;
  BYTES_PER_ELEMENT: number;
};

/**
 * The engine's Float16Array where it has one (its elements are numbers, its bytes the IEEE half bits); else a
 * Uint16Array of the bits, as bfloat16 always is (no engine has a bfloat16 array). runtime/half.ts converts.
 */
const FLOAT16_ARRAY: unknown = (globalThis as { Float16Array?: unknown }).Float16Array ?? Uint16Array;

export const ARRAY: Record<DType, ArrayCtor> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: FLOAT16_ARRAY,
  bfloat16: Uint16Array,
  // (the 8-bit floats: a Uint8Array of the bits)
  float8e4m3fn: Uint8Array,
  float8e4m3fnuz: Uint8Array,
  float8e5m2: Uint8Array,
  float8e5m2fnuz: Uint8Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
} as unknown as Record<DType, ArrayCtor>;

/** ONNX TensorProto.DataType codes. */
export const ONNX_DTYPE: Record<number, DType> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  16: 'bfloat16',
  17: 'float8e4m3fn',
  18: 'float8e4m3fnuz',
  19: 'float8e5m2',
  20: 'float8e5m2fnuz',
};
export const ONNX_DTYPE_NAMES: Record<number, string> = {
  0: 'undefined',
  1: 'float',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'double',
  12: 'uint32',
  13: 'uint64',
  14: 'complex64',
  15: 'complex128',
  16: 'bfloat16',
  17: 'float8e4m3fn',
  18: 'float8e4m3fnuz',
  19: 'float8e5m2',
  20: 'float8e5m2fnuz',
  21: 'uint4',
  22: 'int4',
  23: 'float4e2m1',
};
export const DTYPE_TO_ONNX: Record<DType, number> = Object.fromEntries(
  Object.entries(ONNX_DTYPE).map(([k, v]) => [v, Number(k)]),
) as Record<DType, number>;

export const isFloat = (t: DType): boolean => t === 'float32' || t === 'float64' || isHalf(t);
/**
 * The narrow floats: float16, bfloat16 and the 8-bit float8 family, stored as their bits and computed in float32 by
 * every target (codegen/common/half-float.ts, runtime/half.ts).
 */
export const isHalf = (t: DType): boolean => t === 'float16' || t === 'bfloat16' || isFloat8(t);
export const isFloat8 = (t: DType): boolean => FLOAT8.includes(t);
export const isWide = (t: DType): boolean => t === 'int64' || t === 'uint64';
export const isUnsigned = (t: DType): boolean =>
  t === 'uint8' || t === 'uint16' || t === 'uint32' || t === 'uint64' || t === 'bool';

/** isView of ArrayBuffer, by its own name (the runtime-purity test takes any "Buffer" followed by a dot for Node's Buffer). */
export const { isView } = ArrayBuffer;
