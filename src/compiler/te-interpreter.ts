// Constant folding of small tensors without WebAssembly: the operator's own tensor expression (the compute that
// every backend lowers) evaluated element by element in JavaScript. Building, compiling and instantiating a module
// costs far more than computing the handful of elements shape arithmetic has. Values follow the WebAssembly backend:
// integers wrap at their width (int64 as i64), float32 rounds after each operation, floordiv/floormod floor,
// casts from float saturate, narrow integers compute in 32 bits and wrap, float32 exp/erf/tanh take the kernels'
// inline forms and other math the same host functions. What the kernels would do differently or could not do
// (a trap, a read outside a buffer, an operation the backend rejects, a float sum or product, whose last bits
// follow the kernel's schedule) makes the interpreter decline, and the caller evaluates on the WebAssembly path,
// which then behaves as it always did.
import type { DType, TypedArray } from '../runtime/dtype.js';
import { ARRAY, isFloat, isHalf, isUnsigned, isWide } from '../runtime/dtype.js';
import { UNARY_MATH, type UnaryMathFn } from '../runtime/math.js';
import { type Tensor, sizeOf } from '../runtime/tensor.js';
import type { CallNode } from '../relay-ir/expr.js';
import type { OpSpec } from '../relay-ir/op.js';
import { type Dim, staticShape } from '../relay-ir/types.js';
import {
  dimAdd,
  dimBounds,
  dimEquals,
  dimExactDiv,
  dimFloorDiv,
  dimMax,
  dimMin,
  dimMod,
  dimMul,
  dimProvedLE,
  dimSub,
} from '../relay-ir/sym-dim.js';
import { type BinOp, type Buf, type Expr, type UnOp, type Var, reduceInit } from '../tensor-expr/expr.js';
import { getOpDef } from '../tensor-expr/op-def.js';
import { type Tensor as TeTensor, placeholder } from '../tensor-expr/tensor.js';
import { topoComputes } from '../schedule/schedule.js';
import { type F32Ops, INLINE_F32_FORMS, INLINE_F32_MATH, type InlineMathFn } from '../codegen/wasm/math-inline.js';
import '../tensor-expr/ops/index.js';

/**
 * Most element evaluations (every stage's elements times its reductions' extents) the interpreter takes on: up to
 * here it is as fast as the WebAssembly path or faster for every operator measured, the heavier bodies (Gather's)
 * included; a larger call goes to WebAssembly, whose fixed cost is then repaid (scripts/bench-fold-evaluator.mjs).
 */
export const MAX_INTERPRETED_WORK = 4096;

/** A symbolic integer: a shape value that depends on the model's symbolic dims (relay-ir/sym-dim.ts). */
class Sym {
  constructor(readonly dim: string) {}
}
type Val = number | bigint | Sym;
type Env = Val[];
type Fn = (env: Env) => Val;

/** Thrown where the kernels would trap or read outside a buffer, or where the backend has no such operation. */
class Declined extends Error {}
const decline = (why: string): never => {
  throw new Declined(why);
};

/**
 * The call's value computed from its tensor expression, or undefined where the interpreter declines (too much
 * work, no compute, or something the WebAssembly kernels do in their own way).
 */
export function interpretCall(
  call: CallNode & { op: OpSpec },
  args: readonly Tensor[],
  maxWork = MAX_INTERPRETED_WORK,
): Tensor | undefined {
  const out = evaluate(call, args, (a) => a.data as ArrayLike<Val>, maxWork, false);
  if (!out) return undefined;
  // (an operator whose output is an argument as it is: a copy, which the caller may own)
  const data = args.some((a) => a.data === out) ? (out as TypedArray).slice() : (out as TypedArray);
  return { dtype: call.type.dtype, shape: staticShape(call.type), data };
}

/**
 * The call's value where its integer arguments may hold symbolic dims (a Shape of a tensor with symbolic dims, and
 * arithmetic on it): the elements as dims, or undefined where a value cannot be told without the symbols' values
 * (a comparison the ranges do not decide, an index or a float that depends on a symbol) or the interpreter declines.
 */
export function interpretSymbolic(
  call: CallNode & { op: OpSpec },
  args: readonly SymbolicTensor[],
  maxWork = MAX_INTERPRETED_WORK,
): Dim[] | undefined {
  const values = (a: SymbolicTensor) => a.values.map((v) => (typeof v === 'string' ? new Sym(v) : valOf(v, a.dtype)));
  const out = evaluate(call, args, values, maxWork, true);
  return out && Array.from(out, (v) => (v instanceof Sym ? v.dim : Number(v)));
}

/** The elements of the call's output from its compute over the arguments' elements, or undefined where it declines. */
function evaluate<A extends { readonly shape: readonly number[]; readonly dtype: DType }>(
  call: CallNode & { op: OpSpec },
  args: readonly A[],
  elements: (a: A) => ArrayLike<Val>,
  maxWork: number,
  symbolic: boolean,
): ArrayLike<Val> | undefined {
  const shape = staticShape(call.type);
  if (isHalf(call.type.dtype) || args.some((a) => isHalf(a.dtype))) return undefined; // the kernels round them
  const inputs = args.map((a, i) => placeholder(`in${i}`, a.shape, a.dtype));
  let out: TeTensor;
  try {
    out = getOpDef(call.op.name).compute(inputs, call.attrs, { ...call.type, shape });
  } catch {
    return undefined; // the WebAssembly path reports it
  }
  if (out.kind === 'placeholder') return elements(args[inputs.indexOf(out)]);
  if (out.dtype !== call.type.dtype || out.shape.some((d, i) => d !== shape[i])) return undefined;
  const stages = topoComputes([out]);
  if (stages.reduce((n, t) => n + sizeOf(t.shape) * (1 + work(t.body!)), 0) > maxWork) return undefined;
  const data = new Map<Buf, ArrayLike<Val>>(inputs.map((p, i) => [p, elements(args[i])]));
  try {
    for (const t of stages) data.set(t, materialize(t, data, symbolic));
  } catch (e) {
    if (e instanceof Declined) return undefined;
    throw e;
  }
  return data.get(out);
}

/** A small integer tensor whose elements are dims: numbers, or symbolic dims' texts. */
export interface SymbolicTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly values: readonly Dim[];
}

/** A number as a value of dtype `t` (int64 values beyond 2^53 arrive rounded: saturate, never wrap). */
const valOf = (v: number, t: DType): Val =>
  !isWide(t) ? v : v >= 2 ** 63 ? (1n << 63n) - 1n : v <= -(2 ** 63) ? -(1n << 63n) : BigInt(v);

/** Element evaluations a body's reductions add per element. */
function work(e: Expr): number {
  switch (e.k) {
    case 'reduce':
      return e.axes.reduce((n, a) => n * a.extent, 1) * (1 + work(e.body));
    case 'bin':
      return work(e.a) + work(e.b);
    case 'un':
    case 'cast':
      return work(e.a);
    case 'select':
      return work(e.c) + work(e.a) + work(e.b);
    case 'load':
      return e.idx.reduce((n, i) => n + work(i), 0);
    default:
      return 0;
  }
}

type Data = ReadonlyMap<Buf, ArrayLike<Val>>;

function materialize(t: TeTensor, data: Data, symbolic = false): ArrayLike<Val> {
  const slots = new Map<Var, number>();
  t.axes.forEach((a, i) => slots.set(a.v, i));
  const body = compile(t.body!, slots, data, symbolic);
  const out = symbolic ? new Array<Val>(sizeOf(t.shape)) : new ARRAY[t.dtype](sizeOf(t.shape));
  const env: Env = new Array(slots.size).fill(0);
  const rank = t.shape.length;
  for (let flat = 0; flat < out.length; flat++) {
    for (let d = rank - 1, rest = flat; d >= 0; d--) {
      env[d] = rest % t.shape[d];
      rest = Math.floor(rest / t.shape[d]);
    }
    (out as unknown as Val[])[flat] = body(env);
  }
  return out;
}

/**
 * `e` as a JavaScript function of the variables' values (each variable in its slot). `symbolic`: values may be
 * symbolic integers, which integer arithmetic carries along and comparisons decide from the symbols' ranges.
 */
function compile(e: Expr, slots: Map<Var, number>, data: Data, symbolic = false): Fn {
  const go = (x: Expr): Fn => {
    switch (x.k) {
      case 'const': {
        const v = normalize(x.dtype)(isWide(x.dtype) ? BigInt(x.value) : Number(x.value));
        return () => v;
      }
      case 'var': {
        const s = slots.get(x);
        if (s === undefined) return decline(`free variable ${x.name}`);
        return (env) => env[s];
      }
      case 'load':
        // (the kernels address memory with 32-bit integers)
        if (x.idx.some((i) => isFloat(i.dtype) || isWide(i.dtype)))
          return decline(`a ${x.buf.name} index is not 32-bit`);
        return loadFn(x.buf, x.idx.map(go), data);
      case 'cast':
        return symbolic
          ? symbolicUnary(go(x.a), castFn(ARG, x.a.dtype, x.dtype), (v) => symCast(v, x.dtype))
          : castFn(go(x.a), x.a.dtype, x.dtype);
      case 'select': {
        // only the chosen arm, as the kernels do where an arm may trap
        const c = go(x.c),
          a = go(x.a),
          b = go(x.b);
        return (env) => {
          const cond = c(env);
          if (cond instanceof Sym) return decline('a condition on a symbolic value');
          return cond ? a(env) : b(env);
        };
      }
      case 'un':
        return symbolic
          ? symbolicUnary(go(x.a), unaryFn(x.op, ARG, x.a.dtype, x.dtype), (v) => symUnary(x.op, v))
          : unaryFn(x.op, go(x.a), x.a.dtype, x.dtype);
      case 'bin': {
        if (!symbolic) return binaryFn(x.op, go(x.a), go(x.b), x.a.dtype);
        const f = symbolicBinary(x.op, x.a.dtype),
          a = go(x.a),
          b = go(x.b);
        return (env) => f(a(env), b(env));
      }
      case 'reduce': {
        // the kernels associate float sums and products their own way (vector lanes, tiles), so the last bits
        // follow the schedule: those stay with the WebAssembly path
        if (isFloat(x.dtype) && (x.op === 'sum' || x.op === 'prod')) return decline(`a ${x.dtype} ${x.op}`);
        const base = slots.size;
        x.axes.forEach((a, i) => slots.set(a.v, base + i));
        const body = go(x.body);
        const combineOp = x.op === 'sum' ? 'add' : x.op === 'prod' ? 'mul' : x.op;
        const combine = symbolic ? symbolicBinary(combineOp, x.dtype) : binaryOp(combineOp, x.dtype);
        const init = go(reduceInit(x.op, x.dtype))([]);
        const extents = x.axes.map((a) => a.extent);
        if (extents.some((n) => n === 0)) return () => init;
        return (env) => {
          let acc = init;
          for (let i = 0; i < extents.length; i++) env[base + i] = 0;
          // the axes as an odometer, the first outermost (the loop order of the lowering)
          for (;;) {
            acc = combine(acc, body(env));
            let d = extents.length - 1;
            while (d >= 0 && (env[base + d] as number) + 1 === extents[d]) env[base + d--] = 0;
            if (d < 0) return acc;
            env[base + d] = (env[base + d] as number) + 1;
          }
        };
      }
    }
  };
  return go(e);
}

function loadFn(buf: Buf, idx: Fn[], data: Data): Fn {
  const at = data.get(buf);
  if (!at) return decline(`load of ${buf.name}, which has no value`);
  const strides = buf.shape.map((_, d) => sizeOf(buf.shape.slice(d + 1)));
  return (env) => {
    let flat = 0;
    for (let d = 0; d < idx.length; d++) flat += (idx[d](env) as number) * strides[d];
    // the kernels would read whatever lies there
    if (!(flat >= 0 && flat < at.length)) decline(`${buf.name}[${flat}] is outside the buffer`);
    return at[flat];
  };
}

// --- values of each dtype ---------------------------------------------------------------------------------------

/** A value brought to its dtype's range and representation (two's complement wrap, float32 rounding). */
function normalize(t: DType): (x: Val) => Val {
  switch (t) {
    case 'float32':
      return (x) => Math.fround(x as number);
    case 'float64':
      return (x) => x;
    case 'int32':
      return (x) => (x as number) | 0;
    case 'uint32':
      return (x) => (x as number) >>> 0;
    case 'int16':
      return (x) => ((x as number) << 16) >> 16;
    case 'uint16':
      return (x) => (x as number) & 0xffff;
    case 'int8':
      return (x) => ((x as number) << 24) >> 24;
    case 'uint8':
      return (x) => (x as number) & 0xff;
    case 'bool':
      return (x) => ((x as number) !== 0 ? 1 : 0);
    case 'int64':
      return (x) => BigInt.asIntN(64, x as bigint);
    case 'uint64':
      return (x) => BigInt.asUintN(64, x as bigint);
    default:
      return decline(`${t} values`); // 16-bit floats: the kernels' rounding, not the interpreter's
  }
}

/** The 32-bit register a narrow integer (or bool) computes in. */
const registerOf = (t: DType): DType =>
  t === 'int8' || t === 'int16' || t === 'bool' ? 'int32' : t === 'uint8' || t === 'uint16' ? 'uint32' : t;

const INT64_MIN = -(1n << 63n);

/** A float truncated to an integer dtype, saturating (NaN is 0), as trunc_sat does; narrow dtypes via int64. */
function fromFloat(x: number, t: DType): Val {
  const trunc = Number.isNaN(x) ? 0 : Math.trunc(x);
  switch (t) {
    case 'int32':
      return Math.min(Math.max(trunc, -(2 ** 31)), 2 ** 31 - 1) | 0;
    case 'uint32':
      return Math.min(Math.max(trunc, 0), 2 ** 32 - 1) >>> 0;
    case 'int64':
      return trunc >= 2 ** 63 ? (1n << 63n) - 1n : trunc < -(2 ** 63) ? INT64_MIN : BigInt(trunc);
    case 'uint64':
      return trunc >= 2 ** 64 ? (1n << 64n) - 1n : trunc <= 0 ? 0n : BigInt(trunc);
    default:
      // int8..uint16: saturate to int64, keep the low 32 bits, wrap to the width (common/narrow.ts)
      return normalize(t)(Number(BigInt.asIntN(32, fromFloat(x, 'int64') as bigint)));
  }
}

/** An int64/uint64 to float32 with one rounding (through float64 alone it could round twice). */
function bigToF32(v: bigint): number {
  const d = Number(v);
  const f = Math.fround(d);
  if (f === d || !Number.isFinite(f)) return f;
  // d lies strictly between two float32 values; only a tie at d can go the wrong way after d's own rounding
  const other = f < d ? nextF32Up(f) : nextF32Down(f);
  const [lo, hi] = f < d ? [f, other] : [other, f];
  if (d - lo !== hi - d) return f;
  const exact = BigInt(d);
  return v > exact ? hi : v < exact ? lo : f;
}

const f32Bits = new Float32Array(1);
const i32Bits = new Int32Array(f32Bits.buffer);
const nextF32Up = (f: number) => {
  f32Bits[0] = f;
  i32Bits[0] += f >= 0 ? 1 : -1;
  return f32Bits[0];
};
const nextF32Down = (f: number) => {
  f32Bits[0] = f;
  i32Bits[0] += f > 0 ? -1 : 1;
  return f32Bits[0];
};
/** Whether the float32's sign bit is set (for -0 and NaN too). */
const signBit = (f: number) => {
  f32Bits[0] = f;
  return i32Bits[0] < 0;
};
const f64View = new DataView(new ArrayBuffer(8));
/** Whether the float64's sign bit is set. */
const signBit64 = (f: number) => {
  f64View.setFloat64(0, f);
  return f64View.getInt8(0) < 0;
};

function castFn(a: Fn, from: DType, to: DType): Fn {
  if (from === to) return a;
  if (isHalf(from) || isHalf(to)) return decline(`a cast between ${from} and ${to}`);
  if (to === 'bool') return (env) => ((isWide(from) ? a(env) !== 0n : a(env) !== 0) ? 1 : 0); // NaN too
  if (isFloat(to)) {
    const round = to === 'float32' ? Math.fround : (x: number) => x;
    if (isWide(from)) return to === 'float32' ? (env) => bigToF32(a(env) as bigint) : (env) => Number(a(env));
    return (env) => round(a(env) as number);
  }
  if (isFloat(from)) return (env) => fromFloat(a(env) as number, to);
  const norm = normalize(to);
  if (isWide(to)) return isWide(from) ? (env) => norm(a(env)) : (env) => norm(BigInt(a(env) as number));
  // to a 32-bit or narrow integer: the low 32 bits, wrapped to the width
  if (isWide(from)) return (env) => norm(Number(BigInt.asIntN(32, a(env) as bigint)));
  return (env) => norm(a(env));
}

// --- operations -------------------------------------------------------------------------------------------------

function binaryFn(op: BinOp, a: Fn, b: Fn, t: DType): Fn {
  const f = binaryOp(op, t);
  return (env) => f(a(env), b(env));
}

/** `op` on two values of dtype `t` (comparisons give bool 0/1). */
function binaryOp(op: BinOp, t: DType): (x: Val, y: Val) => Val {
  if (op === 'eq') return (x, y) => (x === y ? 1 : 0);
  if (op === 'ne') return (x, y) => (x !== y ? 1 : 0);
  if (op === 'lt') return (x, y) => (x < y ? 1 : 0);
  if (op === 'le') return (x, y) => (x <= y ? 1 : 0);
  if (op === 'gt') return (x, y) => (x > y ? 1 : 0);
  if (op === 'ge') return (x, y) => (x >= y ? 1 : 0);
  if (isFloat(t)) return floatOp(op, t);
  if (isWide(t)) return wideOp(op, t);
  return int32Op(op, t);
}

function floatOp(op: BinOp, t: DType): (x: Val, y: Val) => Val {
  const r = normalize(t) as (x: number) => number;
  const f = ((): ((x: number, y: number) => number) => {
    switch (op) {
      case 'add':
        return (x, y) => r(x + y);
      case 'sub':
        return (x, y) => r(x - y);
      case 'mul':
        return (x, y) => r(x * y);
      case 'div':
        return (x, y) => r(x / y);
      case 'min':
        return Math.min; // NaN-propagating, -0 below +0: as f32.min / f64.min
      case 'max':
        return Math.max;
      case 'pow':
        return (x, y) => r(x ** y);
      case 'mod':
        return (x, y) => r(x % y); // fmod
      default:
        return decline(`${op} on ${t}`);
    }
  })();
  return f as (x: Val, y: Val) => Val;
}

/** int32, uint32, the narrow integers (computed in 32 bits, then wrapped) and bool (0/1). */
function int32Op(op: BinOp, t: DType): (x: Val, y: Val) => Val {
  const norm = normalize(t) as (x: number) => number;
  const unsigned = isUnsigned(t);
  /** `y`, where dividing by it does not trap. */
  const nonZero = (y: number) => (y === 0 ? decline('integer division by zero') : y);
  // the narrow ones compute in int32, where -128 / -1 is no overflow
  const divisor = (x: number, y: number) =>
    t === 'int32' && x === -(2 ** 31) && y === -1 ? decline('integer overflow in division') : nonZero(y);
  const f = ((): ((x: number, y: number) => number) => {
    switch (op) {
      case 'add':
        return (x, y) => norm(x + y);
      case 'sub':
        return (x, y) => norm(x - y);
      case 'mul':
        return (x, y) => norm(Math.imul(x, y));
      case 'div':
        return (x, y) => norm(Math.trunc(x / divisor(x, y)));
      case 'mod':
        return (x, y) => norm(x % nonZero(y));
      case 'floordiv':
        return (x, y) => {
          const q = x / divisor(x, y);
          return norm(unsigned ? Math.trunc(q) : Math.floor(q));
        };
      case 'floormod':
        return (x, y) => {
          const r = x % nonZero(y);
          return norm(r !== 0 && r < 0 !== y < 0 ? r + y : r);
        };
      case 'min':
        return Math.min;
      case 'max':
        return Math.max;
      case 'pow': {
        const reg = registerOf(t);
        return (x, y) => norm(fromFloat(x ** y, reg) as number);
      }
      case 'and':
        return (x, y) => norm(x & y);
      case 'or':
        return (x, y) => norm(x | y);
      case 'xor':
        return (x, y) => norm(x ^ y);
      case 'shl':
        return (x, y) => norm(x << y);
      case 'shr':
        return unsigned ? (x, y) => norm(x >>> y) : (x, y) => norm(x >> y);
      default:
        return decline(`${op} on ${t}`);
    }
  })();
  return f as (x: Val, y: Val) => Val;
}

function wideOp(op: BinOp, t: DType): (x: Val, y: Val) => Val {
  const norm = normalize(t) as (x: bigint) => bigint;
  const nonZero = (y: bigint) => (y === 0n ? decline('integer division by zero') : y);
  const divisor = (x: bigint, y: bigint) =>
    t === 'int64' && x === INT64_MIN && y === -1n ? decline('integer overflow in division') : nonZero(y);
  const f = ((): ((x: bigint, y: bigint) => bigint) => {
    switch (op) {
      case 'add':
        return (x, y) => norm(x + y);
      case 'sub':
        return (x, y) => norm(x - y);
      case 'mul':
        return (x, y) => norm(x * y);
      case 'div':
        return (x, y) => x / divisor(x, y);
      case 'mod':
        return (x, y) => x % nonZero(y);
      case 'floordiv':
        return (x, y) => {
          const q = x / divisor(x, y);
          return x % y !== 0n && x < 0n !== y < 0n ? q - 1n : q;
        };
      case 'floormod':
        return (x, y) => {
          const r = x % nonZero(y);
          return r !== 0n && r < 0n !== y < 0n ? r + y : r;
        };
      case 'min':
        // biome-ignore lint/complexity/useMathMinMax: bigints
        return (x, y) => (x < y ? x : y);
      case 'max':
        // biome-ignore lint/complexity/useMathMinMax: bigints
        return (x, y) => (x > y ? x : y);
      case 'pow':
        return (x, y) => fromFloat(Number(x) ** Number(y), t) as bigint;
      case 'and':
        return (x, y) => norm(x & y);
      case 'or':
        return (x, y) => norm(x | y);
      case 'xor':
        return (x, y) => norm(x ^ y);
      case 'shl':
        return (x, y) => norm(x << (y & 63n));
      case 'shr':
        // int64 values are signed (arithmetic shift), uint64 ones non-negative (logical)
        return (x, y) => norm(x >> (y & 63n));
      default:
        return decline(`${op} on ${t}`);
    }
  })();
  return f as (x: Val, y: Val) => Val;
}

/** float32 arithmetic on JavaScript numbers, for the kernels' inline exp/erf/tanh. */
const F32_NUMBERS: F32Ops = {
  k: Math.fround,
  add: (a, b) => Math.fround(a + b),
  sub: (a, b) => Math.fround(a - b),
  mul: (a, b) => Math.fround(a * b),
  div: (a, b) => Math.fround(a / b),
  min: Math.min,
  max: Math.max,
  abs: Math.abs,
  copysign: (a, b) => (signBit(b) ? -Math.abs(a) : Math.abs(a)),
  halfPow2: (t) => {
    f32Bits[0] = t;
    i32Bits[0] = (i32Bits[0] + 126) << 23;
    return f32Bits[0];
  },
  let: (v) => () => v,
};

/** Round half to even (f32.nearest / f64.nearest). */
function nearest(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r;
}

/** The bits of a `from` value read as `t` (same width), through one 8-byte scratch view. */
function bitcastFn(a: Fn, from: DType, t: DType): Fn {
  const view = new DataView(new ArrayBuffer(8));
  const put: Record<string, (v: Val) => void> = {
    float32: (v) => view.setFloat32(0, v as number, true),
    float64: (v) => view.setFloat64(0, v as number, true),
    int32: (v) => view.setInt32(0, v as number, true),
    uint32: (v) => view.setUint32(0, v as number, true),
    int64: (v) => view.setBigInt64(0, v as bigint, true),
    uint64: (v) => view.setBigUint64(0, v as bigint, true),
  };
  const get: Record<string, () => Val> = {
    float32: () => view.getFloat32(0, true),
    float64: () => view.getFloat64(0, true),
    int32: () => view.getInt32(0, true),
    uint32: () => view.getUint32(0, true),
    int64: () => view.getBigInt64(0, true),
    uint64: () => view.getBigUint64(0, true),
  };
  const p = put[from],
    g = get[t];
  if (!p || !g) return decline(`bitcast from ${from} to ${t}`);
  return (env) => {
    p(a(env));
    return g();
  };
}

function unaryFn(op: UnOp, a: Fn, from: DType, t: DType): Fn {
  if (op in UNARY_MATH) {
    if (t === 'float32' && INLINE_F32_MATH.has(op)) {
      const form = INLINE_F32_FORMS[op as InlineMathFn];
      return (env) => form(F32_NUMBERS, a(env) as number);
    }
    // the host function on float64, the result converted back (as the kernels' imports are called)
    const fn = UNARY_MATH[op as UnaryMathFn];
    const arg = castFn(a, from, 'float64');
    return castFn((env) => fn(arg(env) as number), 'float64', t);
  }
  if (op === 'bitcast') return bitcastFn(a, from, t);
  // (the result has the operand's dtype but for isnan's and bitcast's)
  if (op === 'isnan') return isFloat(from) ? (env) => (Number.isNaN(a(env)) ? 1 : 0) : () => 0;
  const norm = normalize(t);
  if (isFloat(t)) {
    const r = norm as (x: number) => number;
    const f = ((): ((x: number) => Val) => {
      switch (op) {
        case 'neg':
          return (x) => -x;
        case 'abs':
          return Math.abs;
        case 'sqrt':
          return (x) => r(Math.sqrt(x));
        case 'floor':
          return Math.floor;
        case 'ceil':
          return Math.ceil;
        case 'round':
          return nearest;
        case 'sign':
          // sign(±0) = ±0; NaN gives 1 with its sign bit (copysign)
          return (x) => (x === 0 ? x : (t === 'float32' ? signBit(x) : signBit64(x)) ? -1 : 1);
        default:
          return decline(`${op} on ${t}`);
      }
    })();
    return (env) => f(a(env) as number);
  }
  if (isWide(t)) {
    const n = norm as (x: bigint) => bigint;
    const unsigned = isUnsigned(t);
    const f = ((): ((x: bigint) => Val) => {
      switch (op) {
        case 'neg':
          return (x) => n(-x);
        case 'abs':
          return unsigned ? (x) => x : (x) => n(x < 0n ? -x : x);
        case 'floor':
        case 'ceil':
        case 'round':
          return (x) => x;
        case 'bitnot':
          return (x) => n(~x);
        case 'sign':
          return (x) => (x > 0n ? 1n : x < 0n ? -1n : 0n);
        default:
          return decline(`${op} on ${t}`);
      }
    })();
    return (env) => f(a(env) as bigint);
  }
  const n = norm as (x: number) => number;
  const unsigned = isUnsigned(t) && t !== 'bool';
  const f = ((): ((x: number) => number) => {
    switch (op) {
      case 'neg':
        return (x) => n(-x);
      case 'abs':
        return unsigned ? (x) => x : (x) => n(Math.abs(x));
      case 'floor':
      case 'ceil':
      case 'round':
        return (x) => x;
      case 'not':
        return (x) => (x === 0 ? 1 : 0);
      case 'bitnot':
        return (x) => n(~x);
      case 'sign':
        return (x) => (x > 0 ? 1 : x < 0 ? -1 : 0);
      default:
        return decline(`${op} on ${t}`);
    }
  })();
  return (env) => f(a(env) as number);
}

// --- symbolic integers ------------------------------------------------------------------------------------------

/** The operand of a value-level function built from a Fn-level one (castFn, unaryFn) for symbolicUnary. */
const ARG: Fn = (env) => env[0];

/** `a` through `concrete` (a function of ARG) or, where `a` gives a symbolic value, through `sym`. */
function symbolicUnary(a: Fn, concrete: Fn, sym: (v: Sym) => Val): Fn {
  return (env) => {
    const v = a(env);
    return v instanceof Sym ? sym(v) : concrete([v]);
  };
}

const dimOf = (v: Val): Dim => (v instanceof Sym ? v.dim : Number(v));
/** A dim as a value of dtype `t`. */
const fromDim = (d: Dim, t: DType): Val => (typeof d === 'string' ? new Sym(d) : valOf(d, t));
const nonNegative = (d: Dim) => dimBounds(d)[0] >= 0;

function symCast(v: Sym, to: DType): Val {
  if (to === 'bool') {
    if (dimProvedLE(1, v.dim)) return 1;
    return decline(`${v.dim} != 0 is not decided`);
  }
  return isFloat(to) ? decline(`a float from the symbolic ${v.dim}`) : v;
}

function symUnary(op: UnOp, v: Sym): Val {
  if (op === 'neg') return fromDim(dimSub(0, v.dim), 'int32');
  if (op === 'abs' || op === 'floor' || op === 'ceil' || op === 'round')
    return op !== 'abs' || nonNegative(v.dim) ? v : decline(`abs(${v.dim})`);
  return decline(`${op} of the symbolic ${v.dim}`);
}

/** `op` on values of dtype `t` of which either may be symbolic. */
function symbolicBinary(op: BinOp, t: DType): (x: Val, y: Val) => Val {
  const concrete = binaryOp(op, t);
  return (x, y) => {
    if (!(x instanceof Sym || y instanceof Sym)) return concrete(x, y);
    if (isFloat(t)) return decline(`${op} on a symbolic ${t}`);
    const a = dimOf(x),
      b = dimOf(y);
    const cmp = (holds: boolean, fails: boolean) => (holds ? 1 : fails ? 0 : decline(`${a} ${op} ${b} is not decided`));
    const divisor = () => (typeof b === 'number' && b > 0 ? b : decline(`division of ${a} by ${b}`));
    switch (op) {
      case 'add':
        return fromDim(dimAdd(a, b), t);
      case 'sub':
        return fromDim(dimSub(a, b), t);
      case 'mul':
        return fromDim(dimMul(a, b), t);
      case 'div':
      case 'floordiv': {
        if (op === 'div' && !nonNegative(a)) return decline(`truncating division of ${a}`);
        const exact = typeof b === 'string' ? dimExactDiv(a, b) : undefined;
        return fromDim(exact ?? dimFloorDiv(a, divisor()), t);
      }
      case 'mod':
      case 'floormod':
        if (op === 'mod' && !nonNegative(a)) return decline(`remainder of ${a}`);
        return fromDim(dimMod(a, divisor()), t);
      case 'min':
        return fromDim(dimMin(a, b), t);
      case 'max':
        return fromDim(dimMax(a, b), t);
      case 'eq':
      case 'ne': {
        const [lo, hi] = dimBounds(dimSub(a, b));
        const same = dimEquals(a, b),
          differ = lo > 0 || hi < 0;
        return op === 'eq' ? cmp(same, differ) : cmp(differ, same);
      }
      case 'lt':
        return cmp(dimProvedLE(dimAdd(a, 1), b), dimProvedLE(b, a));
      case 'le':
        return cmp(dimProvedLE(a, b), dimProvedLE(dimAdd(b, 1), a));
      case 'gt':
        return cmp(dimProvedLE(dimAdd(b, 1), a), dimProvedLE(a, b));
      case 'ge':
        return cmp(dimProvedLE(b, a), dimProvedLE(dimAdd(a, 1), b));
      default:
        return decline(`${op} on the symbolic ${a}`);
    }
  };
}
