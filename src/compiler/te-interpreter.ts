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
import { ARRAY, isFloat, isUnsigned, isWide } from '../runtime/dtype.js';
import { UNARY_MATH, type UnaryMathFn } from '../runtime/math.js';
import { type Tensor, sizeOf } from '../runtime/tensor.js';
import type { CallNode } from '../relay-ir/expr.js';
import type { OpSpec } from '../relay-ir/op.js';
import { staticShape } from '../relay-ir/types.js';
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

type Val = number | bigint;
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
  const shape = staticShape(call.type);
  const inputs = args.map((a, i) => placeholder(`in${i}`, a.shape, a.dtype));
  let out: TeTensor;
  try {
    out = getOpDef(call.op.name).compute(inputs, call.attrs, { ...call.type, shape });
  } catch {
    return undefined; // the WebAssembly path reports it
  }
  if (out.kind === 'placeholder') {
    const a = args[inputs.indexOf(out)];
    return { dtype: a.dtype, shape, data: a.data.slice() as TypedArray };
  }
  if (out.dtype !== call.type.dtype || out.shape.some((d, i) => d !== shape[i])) return undefined;
  const stages = topoComputes([out]);
  if (stages.reduce((n, t) => n + sizeOf(t.shape) * (1 + work(t.body!)), 0) > maxWork) return undefined;
  const data = new Map<Buf, TypedArray>(inputs.map((p, i) => [p, args[i].data]));
  try {
    for (const t of stages) data.set(t, materialize(t, data));
  } catch (e) {
    if (e instanceof Declined) return undefined;
    throw e;
  }
  return { dtype: out.dtype, shape, data: data.get(out)! };
}

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

function materialize(t: TeTensor, data: ReadonlyMap<Buf, TypedArray>): TypedArray {
  const slots = new Map<Var, number>();
  t.axes.forEach((a, i) => slots.set(a.v, i));
  const body = compile(t.body!, slots, data);
  const out = new ARRAY[t.dtype](sizeOf(t.shape));
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

/** `e` as a JavaScript function of the variables' values (each variable in its slot). */
function compile(e: Expr, slots: Map<Var, number>, data: ReadonlyMap<Buf, TypedArray>): Fn {
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
        return castFn(go(x.a), x.a.dtype, x.dtype);
      case 'select': {
        // only the chosen arm, as the kernels do where an arm may trap
        const c = go(x.c),
          a = go(x.a),
          b = go(x.b);
        return (env) => (c(env) ? a(env) : b(env));
      }
      case 'un':
        return unaryFn(x.op, go(x.a), x.a.dtype, x.dtype);
      case 'bin':
        return binaryFn(x.op, go(x.a), go(x.b), x.a.dtype);
      case 'reduce': {
        // the kernels associate float sums and products their own way (vector lanes, tiles), so the last bits
        // follow the schedule: those stay with the WebAssembly path
        if (isFloat(x.dtype) && (x.op === 'sum' || x.op === 'prod')) return decline(`a ${x.dtype} ${x.op}`);
        const base = slots.size;
        x.axes.forEach((a, i) => slots.set(a.v, base + i));
        const body = go(x.body);
        const combine = binaryOp(x.op === 'sum' ? 'add' : x.op === 'prod' ? 'mul' : x.op, x.dtype);
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

function loadFn(buf: Buf, idx: Fn[], data: ReadonlyMap<Buf, TypedArray>): Fn {
  const arr = data.get(buf);
  if (!arr) return decline(`load of ${buf.name}, which has no value`);
  const strides = buf.shape.map((_, d) => sizeOf(buf.shape.slice(d + 1)));
  const at = arr as unknown as ArrayLike<Val>;
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
