// Narrow integers in 32-bit registers: every target computes int8/int16 as int32 and uint8/uint16 as uint32 (the
// dtypes in its caps' `narrowInRegisters`), so the shared lowering widens their arithmetic once, for all of them,
// and wraps a value back to its width where it may leave it. After the pass:
//   - no arithmetic, compare, select, constant or variable has a narrow dtype: each is int32 (signed) or uint32
//     (unsigned) and holds a value already within the narrow range, sign- or zero-extended;
//   - a load of a narrow buffer (global, shared or local) is `cast(int32|uint32, load)`, free on every target
//     (they load sign/zero-extended), and a store takes `cast(narrow, value)` of an in-range value, free as well
//     (wasm store8/16 and PTX st.s8/s16 truncate, WGSL keeps one 32-bit word per element);
//   - the wrap is explicit: signed `shr(shl(x, 32 - bits), 32 - bits)`, unsigned `and(x, 2^bits - 1)`, after what
//     may overflow (add, sub, mul, shl, pow; neg; signed abs, div and floordiv; unsigned bitnot) and after integer
//     casts into a narrow dtype from a wider range; and/or/xor/shr/min/max/mod of in-range values stay in range.
//   - a cast from float into a narrow dtype truncates through int64 where the target has it natively (values
//     beyond 2^31 wrap as in C), else through int32 (WGSL: i32(x), u32(i32(x)) for unsigned), then wraps.
// bool stays bool: a cast to it is a compare; arithmetic on it (add, mul, neg...) computes in int32 and compares
// the result with 0.
// (The index simplifier folds neither shl nor shr, and reads `and` of int32 with a constant as bitwise: the wraps
// survive it. Constants are wrapped here.)
import type { DType } from '../../runtime/dtype.js';
import { isFloat, isUnsigned } from '../../runtime/dtype.js';
import {
  type BinOp,
  type Expr,
  type UnOp,
  type Var,
  and,
  cast,
  constant,
  ne,
  shl,
  shr,
} from '../../tensor-expr/expr.js';
import { type PrimFunc, type Stmt, mapChildren, mapOwnParts } from '../../schedule/loop-ir.js';
import type { LoopPass } from '../../schedule/loop-passes.js';
import type { TargetCaps } from './target-caps.js';

const BITS: Partial<Record<DType, number>> = { int8: 8, int16: 16, uint8: 8, uint16: 16 };

/** Ops whose result may leave the narrow range of in-range operands. */
const WRAPS_BIN: ReadonlySet<BinOp> = new Set(['add', 'sub', 'mul', 'shl', 'pow']);
const WRAPS_BIN_SIGNED: ReadonlySet<BinOp> = new Set(['div', 'floordiv']); // -128 / -1
/** Arithmetic on bool that computes in int32 and compares with 0 (what the emitters once did after each). */
const BOOL_ARITH: ReadonlySet<string> = new Set(['add', 'sub', 'mul', 'shl', 'pow', 'neg', 'abs', 'bitnot']);

/** `v` wrapped to the range of narrow dtype `t` (two's complement, as a C cast). */
export function wrapValue(v: number, t: DType): number {
  const bits = BITS[t]!;
  const x = Number(BigInt.asIntN(32, BigInt(Math.trunc(v))));
  return isUnsigned(t) ? x & (2 ** bits - 1) : (x << (32 - bits)) >> (32 - bits);
}

/** Whether every value of `from` is a value of `to` (both narrow). */
const fits = (from: DType, to: DType) =>
  from === to || (BITS[from]! < BITS[to]! && (!isUnsigned(to) || isUnsigned(from)));

/** The pass: narrow integer arithmetic of the dtypes in `caps.narrowInRegisters` widened to 32 bits, wrapped. */
export function narrowPass(caps: TargetCaps): LoopPass {
  const narrow = new Set(caps.narrowInRegisters);
  return { name: 'narrow-integers', run: (f) => widenNarrow(f, narrow, caps.int64 === 'native') };
}

function widenNarrow(f: PrimFunc, narrow: ReadonlySet<DType>, int64: boolean): PrimFunc {
  const isNarrow = (t: DType) => narrow.has(t);
  const reg = (t: DType): DType => (isNarrow(t) ? (isUnsigned(t) ? 'uint32' : 'int32') : t);
  const vars = new Map<Var, Var>();
  const v = (x: Var): Var => {
    if (!isNarrow(x.dtype)) return x;
    let y = vars.get(x);
    if (!y) vars.set(x, (y = { ...x, dtype: reg(x.dtype) }));
    return y;
  };
  /** `x` (the 32-bit register type of `t`) wrapped to the range of narrow `t`. */
  const wrap = (x: Expr, t: DType): Expr => {
    if (x.k === 'const') return constant(wrapValue(Number(x.value), t), x.dtype);
    const bits = BITS[t]!;
    if (isUnsigned(t)) return and(x, constant(2 ** bits - 1, 'uint32'));
    const s = constant(32 - bits, 'int32');
    return shr(shl(x, s), s);
  };
  /** A cast of `x` (the rewritten operand, of the register type of `from`) to `to`. */
  const castTo = (x: Expr, from: DType, to: DType): Expr => {
    // a narrow operand converts as its register type does (sign- or zero-extended already)
    if (!isNarrow(to)) return cast(to, x);
    const r = reg(to);
    if (isFloat(from)) {
      // truncate through int64 where native (values beyond 2^31 wrap as in C), else through int32
      const t = int64 ? cast('int64', x) : cast('int32', x);
      return wrap(cast(r, t), to);
    }
    if (from === 'bool' || (isNarrow(from) && fits(from, to))) return cast(r, x);
    return wrap(cast(r, x), to);
  };
  const memo = new Map<Expr, Expr>();
  /** `e` rewritten (memoized by node: shared subtrees stay shared). */
  const go = (e: Expr): Expr => {
    let y = memo.get(e);
    if (y === undefined) {
      y = rewrite(e);
      memo.set(e, y);
    }
    return y;
  };
  const rewrite = (e: Expr): Expr => {
    switch (e.k) {
      case 'const':
        return isNarrow(e.dtype) ? constant(wrapValue(Number(e.value), e.dtype), reg(e.dtype)) : e;
      case 'var':
        return v(e);
      case 'load': {
        const idx = e.idx.map(go);
        const l = idx.every((x, i) => x === e.idx[i]) ? e : { ...e, idx };
        return isNarrow(e.dtype) ? cast(reg(e.dtype), l) : l;
      }
      case 'cast':
        return castTo(go(e.a), e.a.dtype, e.dtype);
      case 'select': {
        const c = go(e.c),
          a = go(e.a),
          b = go(e.b);
        return c === e.c && a === e.a && b === e.b ? e : { ...e, c, a, b, dtype: reg(e.dtype) };
      }
      case 'un': {
        const a = go(e.a);
        if (e.dtype === 'bool' && BOOL_ARITH.has(e.op))
          return ne({ ...e, a: cast('int32', a), dtype: 'int32' }, constant(0, 'int32'));
        const y = a === e.a ? e : { ...e, a, dtype: reg(e.dtype) };
        return isNarrow(e.dtype) && wrapsUnary(e.op, e.dtype) ? wrap(foldUnary(y), e.dtype) : y;
      }
      case 'bin': {
        const a = go(e.a),
          b = go(e.b);
        if (e.dtype === 'bool' && e.a.dtype === 'bool' && BOOL_ARITH.has(e.op))
          return ne({ ...e, a: cast('int32', a), b: cast('int32', b), dtype: 'int32' }, constant(0, 'int32'));
        const y = a === e.a && b === e.b ? e : { ...e, a, b, dtype: reg(e.dtype) };
        const t = e.dtype;
        const wraps = WRAPS_BIN.has(e.op) || (WRAPS_BIN_SIGNED.has(e.op) && !isUnsigned(t));
        return isNarrow(t) && wraps ? wrap(foldBinary(y), t) : y;
      }
      case 'reduce':
        return e;
    }
  };
  const stmt = (s: Stmt): Stmt => {
    let own = mapOwnParts(s, { expr: go, v });
    if (own.k === 'store' && isNarrow(own.buf.dtype)) {
      const x = own.value;
      // a value just loaded from the same dtype is stored as it came
      const value = x.k === 'cast' && x.a.dtype === own.buf.dtype ? x.a : cast(own.buf.dtype, x);
      own = { ...own, value };
    }
    return mapChildren(own, stmt);
  };
  return { ...f, body: stmt(f.body) };
}

const wrapsUnary = (op: UnOp, t: DType) =>
  op === 'neg' || (op === 'abs' && !isUnsigned(t)) || (op === 'bitnot' && isUnsigned(t));

/** A unary op on a 32-bit constant, computed (before its wrap); else `e`. */
function foldUnary(e: Expr): Expr {
  if (e.k !== 'un' || e.a.k !== 'const') return e;
  const x = Number(e.a.value);
  const r = e.op === 'neg' ? -x : e.op === 'abs' ? Math.abs(x) : e.op === 'bitnot' ? ~x : undefined;
  return r === undefined ? e : constant(r | 0, e.dtype);
}

/** add/sub/mul/shl of 32-bit constants, computed (before their wrap); else `e`. */
function foldBinary(e: Expr): Expr {
  if (e.k !== 'bin' || e.a.k !== 'const' || e.b.k !== 'const') return e;
  const x = Number(e.a.value),
    y = Number(e.b.value);
  const r =
    e.op === 'add'
      ? x + y
      : e.op === 'sub'
        ? x - y
        : e.op === 'mul'
          ? Math.imul(x, y)
          : e.op === 'shl'
            ? x << y
            : undefined;
  return r === undefined ? e : constant(r | 0, e.dtype);
}
