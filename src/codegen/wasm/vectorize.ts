// SIMD128 for loops the schedule marks `vectorized`. Handled now: a 4-wide float32 loop whose body is one store
// at a unit-stride index, with loads that are unit-stride (v128.load) or invariant (splat). Anything else
// returns undefined and the caller emits the scalar loop.
import binaryen from 'binaryen';
import type { Buffer, Stmt } from '../../schedule/loop-ir.js';
import type { FunctionEmitter } from './codegen.js';
import { type Expr, type Var, constant, substitute } from '../../tensor-expr/expr.js';
import { simplify } from '../../tensor-expr/simplify.js';

type ForStmt = Extract<Stmt, { k: 'for' }>;

/** Whether `e` mentions variable `v`. */
export function uses(e: Expr, v: Var): boolean {
  switch (e.k) {
    case 'var': return e === v;
    case 'const': return false;
    case 'bin': return uses(e.a, v) || uses(e.b, v);
    case 'un': case 'cast': return uses(e.a, v);
    case 'select': return uses(e.c, v) || uses(e.a, v) || uses(e.b, v);
    case 'load': return e.idx.some((i) => uses(i, v));
    case 'reduce': return true;
  }
}

/** Coefficient of v in an index that is affine in v, or undefined when it is not affine. */
function coeff(e: Expr, v: Var): number | undefined {
  if (!uses(e, v)) return 0;
  switch (e.k) {
    case 'var': return 1;
    case 'bin': {
      const a = coeff(e.a, v), b = coeff(e.b, v);
      if (a === undefined || b === undefined) return undefined;
      if (e.op === 'add') return a + b;
      if (e.op === 'sub') return a - b;
      if (e.op === 'mul') {
        if (e.b.k === 'const' && b === 0) return a * Number(e.b.value);
        if (e.a.k === 'const' && a === 0) return b * Number(e.a.value);
      }
      return undefined;
    }
    default: return undefined;
  }
}

/** Stride of an index in v: 0 (invariant), 1 (unit), or undefined (other). */
function stride(idx: Expr, v: Var): 0 | 1 | undefined {
  const c = coeff(idx, v);
  return c === 0 || c === 1 ? c : undefined;
}

/** A 4-lane value of `e` in lane variable `v` (lane l: v = l), or undefined when it cannot be vectorized. */
export function vectorizeExpr(em: FunctionEmitter, e: Expr, v: Var): number | undefined {
  const m = em.m;
  const base = (idx: Expr) => simplify(substitute(idx, new Map([[v, constant(0, 'int32')]])));
  const vec = (e: Expr): number | undefined => {
    if (!uses(e, v)) return e.dtype === 'float32' ? m.f32x4.splat(em.expr(e)) : undefined;
    if (e.dtype !== 'float32') return undefined;
    const hoisted = em.cached(e, true);
    if (hoisted !== undefined) return hoisted;
    switch (e.k) {
      case 'var': return undefined;
      case 'load': {
        if (stride(e.idx[0], v) !== 1) return undefined;
        const buf = e.buf as Buffer;
        if (buf.scope === 'local') {
          const c = base(e.idx[0]);
          if (c.k !== 'const' || Number(c.value) % 4) return undefined;
          return m.local.get(em.localBufs.get(buf)![Number(c.value) >> 2], binaryen.v128);
        }
        return m.v128.load(0, 4, em.addr(buf, em.expr(base(e.idx[0]))));
      }
      case 'bin': {
        const a = vec(e.a), b = vec(e.b);
        if (a === undefined || b === undefined) return undefined;
        switch (e.op) {
          case 'add': return m.f32x4.add(a, b);
          case 'sub': return m.f32x4.sub(a, b);
          case 'mul': return m.f32x4.mul(a, b);
          case 'div': return m.f32x4.div(a, b);
          case 'min': return m.f32x4.min(a, b);
          case 'max': return m.f32x4.max(a, b);
          default: return undefined;
        }
      }
      case 'un': {
        const a = vec(e.a);
        if (a === undefined) return undefined;
        switch (e.op) {
          case 'neg': return m.f32x4.neg(a);
          case 'abs': return m.f32x4.abs(a);
          case 'sqrt': return m.f32x4.sqrt(a);
          case 'floor': return m.f32x4.floor(a);
          case 'ceil': return m.f32x4.ceil(a);
          default: return undefined;
        }
      }
      default: return undefined;
    }
  };
  return vec(e);
}

export function vectorizeLoop(em: FunctionEmitter, s: ForStmt): number | undefined {
  if (s.extent !== 4 || s.body.k !== 'store' || s.body.buf.dtype !== 'float32') return undefined;
  const st = s.body, v = s.v, m = em.m;
  if (stride(st.index, v) !== 1) return undefined;
  const base = (idx: Expr) => simplify(substitute(idx, new Map([[v, constant(0, 'int32')]])));
  let slot: number | undefined;
  if (st.buf.scope === 'local') {
    const c = base(st.index);
    if (c.k !== 'const' || Number(c.value) % 4) return undefined;
    slot = em.localBufs.get(st.buf)![Number(c.value) >> 2];
  }
  const value = vectorizeExpr(em, st.value, v);
  if (value === undefined) return undefined;
  if (slot !== undefined) return m.local.set(slot, value);
  return m.v128.store(0, 4, em.addr(st.buf, em.expr(base(st.index))), value);
}
