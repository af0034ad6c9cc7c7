// Scalar expressions shared by the tensor-expression level and the loop IR: index arithmetic, value math,
// loads from buffers and reductions. Nodes are plain immutable objects tagged by `k`.
import type { DType } from '../runtime/dtype.js';
import { BYTES, isFloat, isHalf, isUnsigned, isWide } from '../runtime/dtype.js';
import { roundToHalf } from '../runtime/half.js';
import type { UnaryMathFn } from '../runtime/math.js';
import { KilnError } from '../runtime/errors.js';

/** Anything an expression can load from: a tensor-expression tensor, or a loop-IR buffer. */
export interface Buf {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** The range of each element's value where it is known (the symbols' values of a kernel for run-time sizes). */
  readonly valueRanges?: readonly { readonly lo: number; readonly hi: number }[];
}

export type BinOp =
  | 'add'
  | 'sub'
  | 'mul'
  | 'div' // div: float division, or integer division truncating toward zero
  | 'floordiv'
  | 'floormod' // index arithmetic (floor semantics)
  | 'mod' // integer remainder with the sign of the dividend (C), float fmod
  | 'min'
  | 'max'
  | 'pow'
  | 'and'
  | 'or'
  | 'xor'
  | 'shl'
  | 'shr' // bitwise on ints, logical on bool
  | 'eq'
  | 'ne'
  | 'lt'
  | 'le'
  | 'gt'
  | 'ge'; // result dtype bool

export type UnOp =
  | 'neg'
  | 'abs'
  | 'sqrt'
  | 'floor'
  | 'ceil'
  | 'round'
  | 'not'
  | 'isnan'
  | 'sign'
  | 'bitnot'
  | 'bitcast' // the operand's bits as the node's dtype, of the same width (float <-> integer)
  | UnaryMathFn;

export type ReduceOp = 'sum' | 'prod' | 'max' | 'min';

export interface Var {
  readonly k: 'var';
  readonly name: string;
  readonly dtype: DType;
}
export interface IterVar {
  readonly v: Var;
  readonly extent: number;
}

export type Expr =
  | { readonly k: 'const'; readonly dtype: DType; readonly value: number | bigint }
  | Var
  | { readonly k: 'bin'; readonly op: BinOp; readonly a: Expr; readonly b: Expr; readonly dtype: DType }
  | { readonly k: 'un'; readonly op: UnOp; readonly a: Expr; readonly dtype: DType }
  | { readonly k: 'select'; readonly c: Expr; readonly a: Expr; readonly b: Expr; readonly dtype: DType }
  | { readonly k: 'cast'; readonly a: Expr; readonly dtype: DType }
  | { readonly k: 'load'; readonly buf: Buf; readonly idx: readonly Expr[]; readonly dtype: DType }
  | {
      readonly k: 'reduce';
      readonly op: ReduceOp;
      readonly body: Expr;
      readonly axes: readonly IterVar[];
      readonly dtype: DType;
    };

export type ExprLike = Expr | number;
export const INDEX: DType = 'int32';

let varCounter = 0;
export function freshVar(hint: string, dtype: DType = INDEX): Var {
  return { k: 'var', name: `${hint}${varCounter++}`, dtype };
}
export const iterVar = (hint: string, extent: number): IterVar => ({ v: freshVar(hint), extent });

export function constant(value: number | bigint, dtype: DType): Expr {
  if (isWide(dtype)) return { k: 'const', dtype, value: typeof value === 'bigint' ? value : BigInt(Math.trunc(value)) };
  let v = Number(value);
  if (dtype === 'bool') v = v ? 1 : 0;
  else if (!isFloat(dtype)) v = Math.trunc(v);
  else if (dtype === 'float32') v = Math.fround(v);
  else if (isHalf(dtype)) v = roundToHalf(dtype, v);
  return { k: 'const', dtype, value: v };
}
export const int = (v: number): Expr => constant(v, INDEX);
const lift = (x: ExprLike, dtype: DType): Expr => (typeof x === 'number' ? constant(x, dtype) : x);
/** A malformed expression: an operator definition built it wrong (a bug in Kiln, not in the model). */
const internal = (msg: string) => new KilnError('E_INTERNAL', msg, { hint: 'please report this with the model' });

function bin(op: BinOp, a: ExprLike, b: ExprLike): Expr {
  const dt = typeof a === 'number' ? (typeof b === 'number' ? INDEX : b.dtype) : a.dtype;
  const ea = lift(a, dt),
    eb = lift(b, dt);
  if (ea.dtype !== eb.dtype) throw internal(`${op}: dtype mismatch ${ea.dtype} vs ${eb.dtype}`);
  const cmp = op === 'eq' || op === 'ne' || op === 'lt' || op === 'le' || op === 'gt' || op === 'ge';
  return { k: 'bin', op, a: ea, b: eb, dtype: cmp ? 'bool' : dt };
}

export const add = (a: ExprLike, b: ExprLike) => bin('add', a, b);
export const sub = (a: ExprLike, b: ExprLike) => bin('sub', a, b);
export const mul = (a: ExprLike, b: ExprLike) => bin('mul', a, b);
export const div = (a: ExprLike, b: ExprLike) => bin('div', a, b);
export const floordiv = (a: ExprLike, b: ExprLike) => bin('floordiv', a, b);
export const floormod = (a: ExprLike, b: ExprLike) => bin('floormod', a, b);
export const mod = (a: ExprLike, b: ExprLike) => bin('mod', a, b);
export const min = (a: ExprLike, b: ExprLike) => bin('min', a, b);
export const max = (a: ExprLike, b: ExprLike) => bin('max', a, b);
export const pow = (a: ExprLike, b: ExprLike) => bin('pow', a, b);
export const and = (a: ExprLike, b: ExprLike) => bin('and', a, b);
export const or = (a: ExprLike, b: ExprLike) => bin('or', a, b);
export const xor = (a: ExprLike, b: ExprLike) => bin('xor', a, b);
export const shl = (a: ExprLike, b: ExprLike) => bin('shl', a, b);
export const shr = (a: ExprLike, b: ExprLike) => bin('shr', a, b);
export const eq = (a: ExprLike, b: ExprLike) => bin('eq', a, b);
export const ne = (a: ExprLike, b: ExprLike) => bin('ne', a, b);
export const lt = (a: ExprLike, b: ExprLike) => bin('lt', a, b);
export const le = (a: ExprLike, b: ExprLike) => bin('le', a, b);
export const gt = (a: ExprLike, b: ExprLike) => bin('gt', a, b);
export const ge = (a: ExprLike, b: ExprLike) => bin('ge', a, b);
export const binary = bin;

export function unary(op: UnOp, a: Expr): Expr {
  return { k: 'un', op, a, dtype: op === 'isnan' ? 'bool' : a.dtype };
}
/** `a`'s bits read as `dtype`, a type of the same width. */
export function bitcast(dtype: DType, a: Expr): Expr {
  if (a.dtype === dtype) return a;
  if (BYTES[a.dtype] !== BYTES[dtype]) throw internal(`bitcast: ${a.dtype} to ${dtype} changes the width`);
  return { k: 'un', op: 'bitcast', a, dtype };
}
export function select(c: Expr, a: ExprLike, b: ExprLike): Expr {
  const dt = typeof a === 'number' ? (typeof b === 'number' ? INDEX : b.dtype) : a.dtype;
  const ea = lift(a, dt),
    eb = lift(b, dt);
  if (c.dtype !== 'bool') throw internal(`select: condition must be bool, got ${c.dtype}`);
  if (ea.dtype !== eb.dtype) throw internal(`select: dtype mismatch ${ea.dtype} vs ${eb.dtype}`);
  return { k: 'select', c, a: ea, b: eb, dtype: dt };
}
export function cast(dtype: DType, a: Expr): Expr {
  return a.dtype === dtype ? a : { k: 'cast', a, dtype };
}
export function load(buf: Buf, idx: readonly ExprLike[]): Expr {
  if (idx.length !== buf.shape.length)
    throw internal(`load ${buf.name}: ${idx.length} indices for rank ${buf.shape.length}`);
  return { k: 'load', buf, idx: idx.map((i) => lift(i, INDEX)), dtype: buf.dtype };
}
export function reduce(op: ReduceOp, body: Expr, axes: readonly IterVar[]): Expr {
  return { k: 'reduce', op, body, axes, dtype: body.dtype };
}
export const sum = (body: Expr, axes: readonly IterVar[]) => reduce('sum', body, axes);
export const rmax = (body: Expr, axes: readonly IterVar[]) => reduce('max', body, axes);
export const rmin = (body: Expr, axes: readonly IterVar[]) => reduce('min', body, axes);
export const prod = (body: Expr, axes: readonly IterVar[]) => reduce('prod', body, axes);
/** All conditions true (empty list: true). */
export function all(conds: Expr[]): Expr {
  return conds.length === 0 ? constant(1, 'bool') : conds.reduce((a, b) => and(a, b));
}

/** Identity of a reduction: the value the accumulator starts from. */
export function reduceInit(op: ReduceOp, dtype: DType): Expr {
  if (op === 'sum') return constant(0, dtype);
  if (op === 'prod') return constant(1, dtype);
  const lowest = op === 'max';
  if (isFloat(dtype)) return constant(lowest ? -Infinity : Infinity, dtype);
  const bits: Record<string, number> = {
    int8: 8,
    uint8: 8,
    int16: 16,
    uint16: 16,
    int32: 32,
    uint32: 32,
    int64: 64,
    uint64: 64,
    bool: 1,
  };
  const b = bits[dtype];
  if (isWide(dtype)) {
    const lo = isUnsigned(dtype) ? 0n : -(1n << 63n),
      hi = isUnsigned(dtype) ? (1n << 64n) - 1n : (1n << 63n) - 1n;
    return constant(lowest ? lo : BigInt.asIntN(64, hi), dtype);
  }
  const lo = isUnsigned(dtype) ? 0 : -(2 ** (b - 1)),
    hi = isUnsigned(dtype) ? 2 ** b - 1 : 2 ** (b - 1) - 1;
  return constant(lowest ? lo : hi, dtype);
}

/** Rewrites bottom-up: `f` sees a node whose children are already rewritten; returning undefined keeps it. */
export function mapExpr(e: Expr, f: (e: Expr) => Expr | undefined): Expr {
  const go = (x: Expr): Expr => {
    let y: Expr;
    switch (x.k) {
      case 'const':
      case 'var':
        y = x;
        break;
      case 'bin': {
        const a = go(x.a),
          b = go(x.b);
        y = a === x.a && b === x.b ? x : { ...x, a, b };
        break;
      }
      case 'un': {
        const a = go(x.a);
        y = a === x.a ? x : { ...x, a };
        break;
      }
      case 'cast': {
        const a = go(x.a);
        y = a === x.a ? x : { ...x, a };
        break;
      }
      case 'select': {
        const c = go(x.c),
          a = go(x.a),
          b = go(x.b);
        y = c === x.c && a === x.a && b === x.b ? x : { ...x, c, a, b };
        break;
      }
      case 'load': {
        const idx = x.idx.map(go);
        y = idx.every((v, i) => v === x.idx[i]) ? x : { ...x, idx };
        break;
      }
      case 'reduce': {
        const body = go(x.body);
        y = body === x.body ? x : { ...x, body };
        break;
      }
    }
    return f(y) ?? y;
  };
  return go(e);
}

export function visitExpr(e: Expr, f: (e: Expr) => void): void {
  f(e);
  switch (e.k) {
    case 'bin':
      visitExpr(e.a, f);
      visitExpr(e.b, f);
      break;
    case 'un':
    case 'cast':
      visitExpr(e.a, f);
      break;
    case 'select':
      visitExpr(e.c, f);
      visitExpr(e.a, f);
      visitExpr(e.b, f);
      break;
    case 'load':
      e.idx.forEach((i) => visitExpr(i, f));
      break;
    case 'reduce':
      visitExpr(e.body, f);
      break;
    default:
      break;
  }
}

/** Whether `e` mentions variable `v` anywhere (reductions' bodies included). */
export function mentions(e: Expr, v: Var): boolean {
  let found = false;
  visitExpr(e, (x) => {
    if (x === v) found = true;
  });
  return found;
}

/** Coefficient of v in an int32 index that is affine in v (through +, - and products with constants), else undefined. */
export function affineCoef(e: Expr, v: Var): number | undefined {
  if (!mentions(e, v)) return 0;
  switch (e.k) {
    case 'var':
      return 1;
    case 'bin': {
      const a = affineCoef(e.a, v),
        b = affineCoef(e.b, v);
      if (a === undefined || b === undefined) return undefined;
      if (e.op === 'add') return a + b;
      if (e.op === 'sub') return a - b;
      if (e.op === 'mul') {
        if (e.b.k === 'const' && b === 0) return a * Number(e.b.value);
        if (e.a.k === 'const' && a === 0) return b * Number(e.a.value);
      }
      return undefined;
    }
    default:
      return undefined;
  }
}

export function substitute(e: Expr, map: ReadonlyMap<Var, Expr>): Expr {
  if (map.size === 0) return e;
  return mapExpr(e, (x) => (x.k === 'var' ? map.get(x) : undefined));
}

const INFIX: Partial<Record<BinOp, string>> = {
  add: '+',
  sub: '-',
  mul: '*',
  div: '/',
  floordiv: '//',
  floormod: '%%',
  mod: '%',
  and: '&&',
  or: '||',
  xor: '^',
  shl: '<<',
  shr: '>>',
  eq: '==',
  ne: '!=',
  lt: '<',
  le: '<=',
  gt: '>',
  ge: '>=',
};

export function printExpr(e: Expr): string {
  switch (e.k) {
    case 'const':
      return e.dtype === 'int32'
        ? String(e.value)
        : e.dtype === 'bool'
          ? e.value
            ? 'true'
            : 'false'
          : `${e.value}:${e.dtype}`;
    case 'var':
      return e.name;
    case 'bin':
      return INFIX[e.op]
        ? `(${printExpr(e.a)} ${INFIX[e.op]} ${printExpr(e.b)})`
        : `${e.op}(${printExpr(e.a)}, ${printExpr(e.b)})`;
    case 'un':
      return `${e.op}(${printExpr(e.a)})`;
    case 'select':
      return `select(${printExpr(e.c)}, ${printExpr(e.a)}, ${printExpr(e.b)})`;
    case 'cast':
      return `${e.dtype}(${printExpr(e.a)})`;
    case 'load':
      return `${e.buf.name}[${e.idx.map(printExpr).join(', ')}]`;
    case 'reduce':
      return `${e.op}(${printExpr(e.body)}, axes=[${e.axes.map((a) => `${a.v.name}:${a.extent}`).join(', ')}])`;
  }
}
