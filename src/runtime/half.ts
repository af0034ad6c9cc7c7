// Narrow float values on the host (float16, bfloat16, the float8 family): their bits <-> numbers with
// round-to-nearest-even (the rounding ONNX and numpy use), NaN, the infinities and subnormals included, and the views
// of a tensor's data as bits. A float16 tensor's data is a Float16Array where the engine has one, else a Uint16Array
// of the bits; bfloat16's is always a Uint16Array of the bits, a float8's a Uint8Array of them (dtype.ts).
import { ARRAY, type DType, type TypedArray, isHalf } from './dtype.js';

/**
 * Each narrow float format: fraction (m) and exponent (e) bits, the exponent bias, and how it spells NaN: 'ieee' (the
 * top exponent is infinity and NaN), 'fn' (no infinities; only S.1111.111 is NaN: float8e4m3fn), 'uz' (no
 * infinities, no negative zero; 0x80 is NaN: the fnuz types).
 */
interface Format {
  readonly m: number;
  readonly e: number;
  readonly bias: number;
  readonly nan: 'ieee' | 'fn' | 'uz';
}
export const NARROW_FORMAT: Readonly<Record<string, Format>> = {
  float16: { m: 10, e: 5, bias: 15, nan: 'ieee' },
  bfloat16: { m: 7, e: 8, bias: 127, nan: 'ieee' },
  float8e4m3fn: { m: 3, e: 4, bias: 7, nan: 'fn' },
  float8e4m3fnuz: { m: 3, e: 4, bias: 8, nan: 'uz' },
  float8e5m2: { m: 2, e: 5, bias: 15, nan: 'ieee' },
  float8e5m2fnuz: { m: 2, e: 5, bias: 16, nan: 'uz' },
};
const fmt = (t: DType): Format => NARROW_FORMAT[t];

/** The bits of a format's largest finite value. */
export function maxFiniteBits(f: Format): number {
  const expMask = (1 << f.e) - 1,
    fracMask = (1 << f.m) - 1;
  if (f.nan === 'ieee') return ((expMask - 1) << f.m) | fracMask;
  return (expMask << f.m) | (f.nan === 'fn' ? fracMask - 1 : fracMask);
}
/** The bits of a format's NaN, and of what overflows it without saturation (infinity, or NaN where it has none). */
export const nanBits = (f: Format): number =>
  f.nan === 'uz'
    ? 1 << (f.m + f.e)
    : f.nan === 'fn'
      ? (1 << (f.m + f.e)) - 1
      : (((1 << f.e) - 1) << f.m) | (1 << (f.m - 1));
const overflowBits = (f: Format): number => (f.nan === 'ieee' ? ((1 << f.e) - 1) << f.m : nanBits(f));

/** Round half to even of a non-negative number. */
function roundEven(v: number): number {
  const f = Math.floor(v),
    d = v - f;
  return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
}

/**
 * The bits of `x` in format `f`, rounded once from float64 to nearest even. Beyond the largest finite value:
 * infinity (NaN where the format has none), or that largest value when `saturate` (ONNX's Cast to float8).
 */
function encode(x: number, f: Format, saturate = false): number {
  const { m, e, bias } = f;
  const emin = 1 - bias;
  const signBit = 1 << (m + e);
  if (Number.isNaN(x)) return nanBits(f);
  const sign = x < 0 || Object.is(x, -0) ? signBit : 0;
  const a = Math.abs(x);
  const max = maxFiniteBits(f);
  const big = (s: number) => (saturate ? s | max : f.nan === 'uz' ? overflowBits(f) : s | overflowBits(f));
  if (a === Number.POSITIVE_INFINITY) return big(sign);
  if (a === 0) return f.nan === 'uz' ? 0 : sign;
  let ex = Math.floor(Math.log2(a));
  if (2 ** ex > a) ex--;
  else if (2 ** (ex + 1) <= a) ex++;
  // quantum of the value's binade (of the subnormals below emin); scaling by a power of two is exact in float64
  const q = roundEven(a / 2 ** (Math.max(ex, emin) - m));
  // a subnormal's bits are its count of quanta; a normal's carry into the exponent field where q reached 2^(m+1)
  const bits = ex < emin ? q : ((ex + bias) << m) + q - (1 << m);
  if (bits > max) return big(sign);
  // (no negative zero in the fnuz formats)
  return bits === 0 && f.nan === 'uz' ? 0 : sign | bits;
}

function decode(bits: number, f: Format): number {
  const { m, e, bias } = f;
  const expMask = (1 << e) - 1;
  const sign = bits >> (m + e) ? -1 : 1,
    ex = (bits >> m) & expMask,
    frac = bits & ((1 << m) - 1);
  if (f.nan === 'uz' && bits === 1 << (m + e)) return Number.NaN;
  if (f.nan === 'fn' && ex === expMask && frac === (1 << m) - 1) return Number.NaN;
  if (f.nan === 'ieee' && ex === expMask) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  if (ex === 0) return sign * frac * 2 ** (1 - bias - m);
  return sign * (frac + (1 << m)) * 2 ** (ex - bias - m);
}

/** The bits of `x` (any number, rounded once to nearest even) as narrow float `t` (see `encode` for `saturate`). */
export const halfBits = (t: DType, x: number, saturate = false): number => encode(x, fmt(t), saturate);
/** The value of the bits of narrow float `t`. */
export const halfValue = (t: DType, bits: number): number =>
  decode(bits & ((1 << (fmt(t).m + fmt(t).e + 1)) - 1), fmt(t));
/** `x` rounded to the nearest value of narrow float `t`. */
export const roundToHalf = (t: DType, x: number): number => halfValue(t, halfBits(t, x));

/** The bits of a narrow float tensor's data (a view of the same memory: 16 bits per element, 8 for float8). */
export function halfBitsOf(data: TypedArray): Uint16Array | Uint8Array {
  return data instanceof Uint16Array || data instanceof Uint8Array
    ? data
    : new Uint16Array(data.buffer, data.byteOffset, data.length);
}

/** A narrow float tensor's values as numbers. */
export function halfValues(t: DType, data: TypedArray): Float64Array {
  const bits = halfBitsOf(data);
  const out = new Float64Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfValue(t, bits[i]);
  return out;
}

/** Data of narrow float dtype `t` holding `values`, each rounded to nearest even. */
export function halfData(t: DType, values: ArrayLike<number>): TypedArray {
  const out = new ARRAY[t](values.length);
  const bits = halfBitsOf(out);
  for (let i = 0; i < values.length; i++) bits[i] = halfBits(t, Number(values[i]));
  return out;
}

/** Element `i` of data of dtype `t` as a value: a number for narrow floats (not their bits), else as stored. */
export function elementValue(t: DType, data: TypedArray, i: number): number | bigint {
  return isHalf(t) ? halfValue(t, halfBitsOf(data)[i]) : data[i];
}
