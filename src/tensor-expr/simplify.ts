// Index and scalar simplification: constant folding, algebraic identities, and interval reasoning over loop
// variables' ranges (drops bounds checks that always hold and div/mod that cannot change a value).
import { type Expr, type Var, mapExpr, constant, printExpr } from './expr.js';

export interface Interval {
  lo: number;
  hi: number;
}
export type Ranges = ReadonlyMap<Var, Interval>;

const INT_OPS = new Set(['int32', 'bool']);

/** Bounds of an int32 expression, or undefined when unknown. */
export function bound(e: Expr, ranges: Ranges): Interval | undefined {
  switch (e.k) {
    case 'const':
      return typeof e.value === 'number' && INT_OPS.has(e.dtype) ? { lo: e.value, hi: e.value } : undefined;
    case 'var':
      return ranges.get(e);
    case 'load': {
      const i = e.idx.length === 1 && e.idx[0].k === 'const' ? Number(e.idx[0].value) : -1;
      return e.dtype === 'int32' ? e.buf.valueRanges?.[i] : undefined;
    }
    case 'select': {
      const a = bound(e.a, ranges),
        b = bound(e.b, ranges);
      return a && b ? { lo: Math.min(a.lo, b.lo), hi: Math.max(a.hi, b.hi) } : undefined;
    }
    case 'bin': {
      if (e.dtype !== 'int32') return undefined;
      const a = bound(e.a, ranges),
        b = bound(e.b, ranges);
      if (!a || !b) return undefined;
      switch (e.op) {
        case 'add':
          return { lo: a.lo + b.lo, hi: a.hi + b.hi };
        case 'sub':
          return { lo: a.lo - b.hi, hi: a.hi - b.lo };
        case 'mul': {
          const p = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi];
          return { lo: Math.min(...p), hi: Math.max(...p) };
        }
        case 'floordiv':
          if (b.lo === b.hi && b.lo > 0) return { lo: Math.floor(a.lo / b.lo), hi: Math.floor(a.hi / b.lo) };
          // a divisor known only by its range (a run-time size)
          if (b.lo > 0 && a.lo >= 0) return { lo: Math.floor(a.lo / b.hi), hi: Math.floor(a.hi / b.lo) };
          return undefined;
        case 'floormod':
          if (b.lo === b.hi && b.lo > 0) return a.lo >= 0 && a.hi < b.lo ? a : { lo: 0, hi: b.lo - 1 };
          if (b.lo > 0) return { lo: 0, hi: a.lo >= 0 ? Math.min(a.hi, b.hi - 1) : b.hi - 1 };
          return undefined;
        case 'min':
          return { lo: Math.min(a.lo, b.lo), hi: Math.min(a.hi, b.hi) };
        case 'max':
          return { lo: Math.max(a.lo, b.lo), hi: Math.max(a.hi, b.hi) };
        default:
          return undefined;
      }
    }
    default:
      return undefined;
  }
}

const isConst = (e: Expr): e is Extract<Expr, { k: 'const' }> => e.k === 'const';
const isC = (e: Expr, v: number): boolean => e.k === 'const' && e.value === v;

function foldInt(op: string, a: number, b: number): number | undefined {
  switch (op) {
    case 'add':
      return (a + b) | 0;
    case 'sub':
      return (a - b) | 0;
    case 'mul':
      return Math.imul(a, b);
    case 'floordiv':
      return b !== 0 ? Math.floor(a / b) : undefined;
    case 'floormod':
      return b !== 0 ? a - Math.floor(a / b) * b : undefined;
    case 'div':
      return b !== 0 ? Math.trunc(a / b) : undefined;
    case 'mod':
      return b !== 0 ? a % b : undefined;
    case 'min':
      return Math.min(a, b);
    case 'max':
      return Math.max(a, b);
    case 'eq':
      return +(a === b);
    case 'ne':
      return +(a !== b);
    case 'lt':
      return +(a < b);
    case 'le':
      return +(a <= b);
    case 'gt':
      return +(a > b);
    case 'ge':
      return +(a >= b);
    case 'and':
      return a & b;
    case 'or':
      return a | b;
    default:
      return undefined;
  }
}

const CMP = new Set(['lt', 'le', 'gt', 'ge', 'eq', 'ne']);
const INT32_MIN = -(2 ** 31),
  INT32_MAX = 2 ** 31 - 1;

/**
 * A 64-bit sum or product of widened 32-bit values and small constants as the same arithmetic in 32 bits, when the
 * ranges prove that no part of it leaves 32 bits (index arithmetic an operator wrote in int64); else undefined.
 */
function narrowToInt32(e: Expr, ranges: Ranges): Expr | undefined {
  let n: Expr | undefined;
  if (e.k === 'cast' && e.a.dtype === 'int32') n = e.a;
  else if (e.k === 'const') {
    const v = Number(e.value);
    n = Number.isInteger(v) && v >= INT32_MIN && v <= INT32_MAX ? constant(v, 'int32') : undefined;
  } else if (e.k === 'bin' && (e.op === 'add' || e.op === 'sub' || e.op === 'mul') && e.dtype === 'int64') {
    const a = narrowToInt32(e.a, ranges),
      b = a && narrowToInt32(e.b, ranges);
    n = a && b ? { k: 'bin', op: e.op, a, b, dtype: 'int32' } : undefined;
  }
  const r = n && bound(n, ranges);
  return r && r.lo >= INT32_MIN && r.hi <= INT32_MAX ? n : undefined;
}

/** Simplifies one node whose children are already simplified. */
function step(e: Expr, ranges: Ranges): Expr | undefined {
  if (e.k === 'select') {
    if (isConst(e.c)) return e.c.value ? e.a : e.b;
    return undefined;
  }
  if (e.k === 'cast' && isConst(e.a) && INT_OPS.has(e.a.dtype) && INT_OPS.has(e.dtype)) {
    return constant(e.dtype === 'bool' ? +(e.a.value !== 0) : e.a.value, e.dtype);
  }
  // a 64-bit integer constant that an operator narrows (an axis, a shape entry) folds when it fits
  if (e.k === 'cast' && isConst(e.a) && e.a.dtype === 'int64' && INT_OPS.has(e.dtype)) {
    const v = BigInt(e.a.value);
    if (v >= -(2n ** 31n) && v < 2n ** 31n) return constant(e.dtype === 'bool' ? +(v !== 0n) : Number(v), e.dtype);
  }
  if (e.k === 'cast' && e.dtype === 'int32' && e.a.dtype === 'int64') return narrowToInt32(e.a, ranges);
  if (e.k !== 'bin') return undefined;
  const { a, b, op } = e;
  if (a.dtype === 'int64' && b.dtype === 'int64' && CMP.has(op)) {
    // a comparison of widened 32-bit values compares them
    const na = narrowToInt32(a, ranges),
      nb = na && narrowToInt32(b, ranges);
    if (na && nb) return { ...e, a: na, b: nb };
  }
  if (a.dtype === 'int64' && b.dtype === 'int64') {
    // the identities of 64-bit index arithmetic (x + 0, x * 1), left by ops written for any size
    const is = (x: Expr, v: bigint) => isConst(x) && BigInt(x.value) === v;
    if (op === 'add') {
      if (is(b, 0n)) return a;
      if (is(a, 0n)) return b;
    }
    if (op === 'mul') {
      if (is(b, 1n)) return a;
      if (is(a, 1n)) return b;
    }
    return undefined;
  }
  const intArgs = a.dtype === 'int32' || a.dtype === 'bool';
  if (intArgs && isConst(a) && isConst(b)) {
    const v = foldInt(op, a.value as number, b.value as number);
    if (v !== undefined) return constant(v, e.dtype);
  }
  if (a.dtype === 'bool') {
    if (op === 'and') {
      if (isConst(a)) return a.value ? b : a;
      if (isConst(b)) return b.value ? a : b;
    }
    if (op === 'or') {
      if (isConst(a)) return a.value ? a : b;
      if (isConst(b)) return b.value ? b : a;
    }
  } else if (intArgs && (op === 'and' || op === 'or')) {
    // bitwise on int32: only the identities (x & 0 = 0, x & -1 = x, x | 0 = x, x | -1 = -1)
    const [x, c] = isConst(b) ? [a, b] : isConst(a) ? [b, a] : [undefined, undefined];
    if (x && c) {
      if (c.value === 0) return op === 'and' ? c : x;
      if (c.value === -1) return op === 'and' ? x : c;
    }
  }
  if (a.dtype !== 'int32') return undefined;
  switch (op) {
    case 'add':
      if (isC(a, 0)) return b;
      if (isC(b, 0)) return a;
      if (isConst(a)) return step({ ...e, a: b, b: a }, ranges) ?? { ...e, a: b, b: a }; // constants to the right
      if (isConst(b) && a.k === 'bin' && a.op === 'add' && isConst(a.b))
        return addC(a.a, (a.b.value as number) + (b.value as number));
      if (isConst(b) && a.k === 'bin' && a.op === 'sub' && isConst(a.b))
        return addC(a.a, (b.value as number) - (a.b.value as number));
      if (a.k === 'bin' && a.op === 'add' && isConst(a.b)) return addC({ ...e, a: a.a }, a.b.value as number); // (x+c)+y -> (x+y)+c
      return foldDivModPairs(e);
    case 'sub':
      if (isC(b, 0)) return a;
      if (isConst(b)) return addC(a, -(b.value as number));
      break;
    case 'mul':
      if (isC(a, 0) || isC(b, 0)) return constant(0, 'int32');
      if (isC(a, 1)) return b;
      if (isC(b, 1)) return a;
      if (isConst(a)) return { ...e, a: b, b: a };
      if (isConst(b) && a.k === 'bin' && a.op === 'mul' && isConst(a.b))
        return { ...e, a: a.a, b: constant((a.b.value as number) * (b.value as number), 'int32') };
      break;
    case 'floordiv':
    case 'floormod': {
      if (!isConst(b) || (b.value as number) <= 0) break;
      const c = b.value as number;
      if (c === 1) return op === 'floordiv' ? a : constant(0, 'int32');
      const ba = bound(a, ranges);
      if (ba && ba.lo >= 0 && ba.hi < c) return op === 'floordiv' ? constant(0, 'int32') : a;
      // (x*c + y) with 0 <= y < c: floordiv -> x, floormod -> y
      if (a.k === 'bin' && a.op === 'add') {
        const [p, q] = [a.a, a.b];
        for (const [m, r] of [
          [p, q],
          [q, p],
        ] as const) {
          if (m.k === 'bin' && m.op === 'mul' && isConst(m.b) && (m.b.value as number) % c === 0) {
            const br = bound(r, ranges);
            if (br && br.lo >= 0 && br.hi < c) {
              const k = (m.b.value as number) / c;
              return op === 'floordiv' ? simplifyNode({ ...m, b: constant(k, 'int32') }, ranges) : r;
            }
          }
          // (x*k + y) with 0 <= y < k and k dividing c: floordiv -> x // (c/k), floormod -> (x %% (c/k))*k + y
          // (a split lane inside a reshaped axis: keeps the lane unit-stride for the vectorizer)
          if (
            m.k === 'bin' &&
            m.op === 'mul' &&
            isConst(m.b) &&
            (m.b.value as number) > 0 &&
            c % (m.b.value as number) === 0
          ) {
            const k = m.b.value as number,
              br = bound(r, ranges);
            if (br && br.lo >= 0 && br.hi < k) {
              const q = constant(c / k, 'int32');
              if (op === 'floordiv') return simplifyNode({ ...e, a: m.a, b: q }, ranges);
              const xm = simplifyNode({ k: 'bin', op: 'floormod', a: m.a, b: q, dtype: 'int32' }, ranges);
              return simplifyNode(
                { k: 'bin', op: 'add', a: simplifyNode({ ...m, a: xm }, ranges), b: r, dtype: 'int32' },
                ranges,
              );
            }
          }
        }
      }
      // (x*k + y) with k a multiple of c: floordiv -> x*(k/c) + y//c, floormod -> y %% c (exact for all integers)
      if (a.k === 'bin' && a.op === 'add') {
        for (const [m, r] of [
          [a.a, a.b],
          [a.b, a.a],
        ] as const) {
          if (m.k === 'bin' && m.op === 'mul' && isConst(m.b) && (m.b.value as number) % c === 0) {
            const rest = simplifyNode({ ...e, a: r }, ranges);
            if (op === 'floormod') return rest;
            const k = (m.b.value as number) / c;
            return simplifyNode(
              {
                k: 'bin',
                op: 'add',
                a: simplifyNode({ ...m, b: constant(k, 'int32') }, ranges),
                b: rest,
                dtype: 'int32',
              },
              ranges,
            );
          }
        }
      }
      // (y + k) with k a multiple of c: floordiv -> y//c + k/c, floormod -> y %% c (a second vector's lanes)
      if (a.k === 'bin' && a.op === 'add' && isConst(a.b) && (a.b.value as number) % c === 0) {
        const rest = simplifyNode({ ...e, a: a.a }, ranges);
        return op === 'floormod' ? rest : addC(rest, (a.b.value as number) / c);
      }
      if (a.k === 'bin' && a.op === 'mul' && isConst(a.b) && (a.b.value as number) % c === 0) {
        return op === 'floordiv'
          ? simplifyNode({ ...a, b: constant((a.b.value as number) / c, 'int32') }, ranges)
          : constant(0, 'int32');
      }
      break;
    }
    case 'min':
    case 'max': {
      const ba = bound(a, ranges),
        bb = bound(b, ranges);
      if (ba && bb) {
        if (ba.hi <= bb.lo) return op === 'min' ? a : b;
        if (bb.hi <= ba.lo) return op === 'min' ? b : a;
      }
      break;
    }
    case 'lt':
    case 'le':
    case 'gt':
    case 'ge':
    case 'eq':
    case 'ne': {
      const ba = bound(a, ranges),
        bb = bound(b, ranges);
      if (!ba || !bb) break;
      const always = (t: boolean) => constant(t ? 1 : 0, 'bool');
      if (op === 'lt') {
        if (ba.hi < bb.lo) return always(true);
        if (ba.lo >= bb.hi) return always(false);
      }
      if (op === 'le') {
        if (ba.hi <= bb.lo) return always(true);
        if (ba.lo > bb.hi) return always(false);
      }
      if (op === 'gt') {
        if (ba.lo > bb.hi) return always(true);
        if (ba.hi <= bb.lo) return always(false);
      }
      if (op === 'ge') {
        if (ba.lo >= bb.hi) return always(true);
        if (ba.hi < bb.lo) return always(false);
      }
      if (op === 'eq' && (ba.hi < bb.lo || bb.hi < ba.lo)) return always(false);
      if (op === 'ne' && (ba.hi < bb.lo || bb.hi < ba.lo)) return always(true);
      break;
    }
    default:
      break;
  }
  return undefined;
}

/**
 * k*c*(x // c) + k*(x %% c) + rest -> k*x + rest, anywhere in a sum (an axis split or fused and then flattened
 * again, e.g. y*W + x over a fused y*x loop). Undefined when the sum holds no such pair.
 */
function foldDivModPairs(e: Expr): Expr | undefined {
  const terms: { atom: Expr; coef: number }[] = [];
  let k = 0;
  const walk = (x: Expr, coef: number): void => {
    if (x.k === 'const') {
      k += coef * Number(x.value);
      return;
    }
    if (x.k === 'bin' && x.op === 'add') {
      walk(x.a, coef);
      walk(x.b, coef);
      return;
    }
    if (x.k === 'bin' && x.op === 'mul' && isConst(x.b)) {
      walk(x.a, coef * Number(x.b.value));
      return;
    }
    terms.push({ atom: x, coef });
  };
  walk(e, 1);
  let found = false;
  for (const m of terms) {
    const a = m.atom;
    if (a.k !== 'bin' || a.op !== 'floormod' || !isConst(a.b)) continue;
    const c = Number(a.b.value);
    const d = terms.find(
      (t) =>
        t.atom.k === 'bin' &&
        t.atom.op === 'floordiv' &&
        isConst(t.atom.b) &&
        Number(t.atom.b.value) === c &&
        printExpr(t.atom.a) === printExpr(a.a) &&
        t.coef === m.coef * c,
    );
    if (!d) continue;
    m.atom = a.a; // k*(x %% c) -> k*x; k*c*(x // c) dropped
    d.coef = 0;
    found = true;
  }
  if (!found) return undefined;
  let out: Expr | undefined;
  for (const t of terms) {
    if (t.coef === 0) continue;
    const v =
      t.coef === 1
        ? t.atom
        : { k: 'bin' as const, op: 'mul' as const, a: t.atom, b: constant(t.coef, 'int32'), dtype: 'int32' as const };
    out = out ? { k: 'bin', op: 'add', a: out, b: v, dtype: 'int32' } : v;
  }
  return addC(out ?? constant(0, 'int32'), k);
}

function addC(x: Expr, c: number): Expr {
  if (c === 0) return x;
  return { k: 'bin', op: 'add', a: x, b: constant(c, 'int32'), dtype: 'int32' };
}

function simplifyNode(e: Expr, ranges: Ranges): Expr {
  let cur = e;
  for (let i = 0; i < 8; i++) {
    const next = step(cur, ranges);
    if (!next || next === cur) return cur;
    cur = next;
  }
  return cur;
}

export function simplify(e: Expr, ranges: Ranges = new Map()): Expr {
  return mapExpr(e, (x) => simplifyNode(x, ranges));
}

/** `e` with variable `v` fixed to the int32 constant `value`, simplified (one unrolled iteration, one SIMD lane). */
export function fixVar(e: Expr, v: Var, value: number, ranges: Ranges = new Map()): Expr {
  const c = constant(value, 'int32');
  return simplify(
    mapExpr(e, (x) => (x === v ? c : undefined)),
    ranges,
  );
}
