// float16 and bfloat16 values on the host: their bits <-> numbers with IEEE round-to-nearest-even (the rounding
// ONNX and numpy use), NaN, the infinities and subnormals included, and the views of a tensor's data as bits.
// A float16 tensor's data is a Float16Array where the engine has one, else a Uint16Array of the bits; bfloat16's is
// always a Uint16Array of the bits (dtype.ts).
import { ARRAY, type DType, type TypedArray, isHalf } from './dtype.js';

/** Mantissa (stored fraction) and exponent bits of each 16-bit float format. */
const FORMAT = { float16: { m: 10, e: 5 }, bfloat16: { m: 7, e: 8 } } as const;
const fmt = (t: DType) => FORMAT[t as keyof typeof FORMAT];

/** Round half to even of a non-negative number. */
function roundEven(v: number): number {
  const f = Math.floor(v),
    d = v - f;
  return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
}

/** The bits of `x` in a binary float format of `m` fraction and `e` exponent bits, rounded once from float64. */
function encode(x: number, m: number, e: number): number {
  const expMask = (1 << e) - 1,
    bias = (1 << (e - 1)) - 1,
    emin = 1 - bias;
  const sign = x < 0 || Object.is(x, -0) ? 1 << (m + e) : 0;
  if (Number.isNaN(x)) return (expMask << m) | (1 << (m - 1)); // the quiet NaN
  const a = Math.abs(x);
  if (a === 0) return sign;
  if (a === Number.POSITIVE_INFINITY) return sign | (expMask << m);
  let ex = Math.floor(Math.log2(a));
  if (2 ** ex > a) ex--;
  else if (2 ** (ex + 1) <= a) ex++;
  // quantum of the value's binade (of the subnormals below emin); scaling by a power of two is exact in float64
  const q = roundEven(a / 2 ** (Math.max(ex, emin) - m));
  // a subnormal's bits are its count of quanta; a normal's carry into the exponent field where q reached 2^(m+1)
  const bits = ex < emin ? q : ((ex + bias) << m) + q - (1 << m);
  return sign | Math.min(bits, expMask << m); // beyond the largest finite value: infinity
}

function decode(bits: number, m: number, e: number): number {
  const expMask = (1 << e) - 1,
    bias = (1 << (e - 1)) - 1;
  const sign = bits >> (m + e) ? -1 : 1,
    ex = (bits >> m) & expMask,
    frac = bits & ((1 << m) - 1);
  if (ex === expMask) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  if (ex === 0) return sign * frac * 2 ** (1 - bias - m);
  return sign * (frac + (1 << m)) * 2 ** (ex - bias - m);
}

/** The 16 bits of `x` (any number, rounded once to nearest even) as float16 or bfloat16. */
export const halfBits = (t: DType, x: number): number => encode(x, fmt(t).m, fmt(t).e);
/** The value of 16 bits of float16 or bfloat16. */
export const halfValue = (t: DType, bits: number): number => decode(bits & 0xffff, fmt(t).m, fmt(t).e);
/** `x` rounded to the nearest float16 / bfloat16 value. */
export const roundToHalf = (t: DType, x: number): number => halfValue(t, halfBits(t, x));

/** The bits of a 16-bit float tensor's data (a view of the same memory). */
export function halfBitsOf(data: TypedArray): Uint16Array {
  return data instanceof Uint16Array ? data : new Uint16Array(data.buffer, data.byteOffset, data.length);
}

/** A 16-bit float tensor's values as numbers. */
export function halfValues(t: DType, data: TypedArray): Float64Array {
  const bits = halfBitsOf(data);
  const out = new Float64Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfValue(t, bits[i]);
  return out;
}

/** Data of dtype `t` (float16 or bfloat16) holding `values`, each rounded to nearest even. */
export function halfData(t: DType, values: ArrayLike<number>): TypedArray {
  const out = new ARRAY[t](values.length);
  const bits = halfBitsOf(out);
  for (let i = 0; i < values.length; i++) bits[i] = halfBits(t, Number(values[i]));
  return out;
}

/** Element `i` of data of dtype `t` as a value: a number for 16-bit floats (not their bits), else as stored. */
export function elementValue(t: DType, data: TypedArray, i: number): number | bigint {
  return isHalf(t) ? halfValue(t, halfBitsOf(data)[i]) : data[i];
}
