// SIMD128 for loops the schedule marks `vectorized`. Handled now: a 4-wide float32 loop whose body is one store
// at a unit-stride index, with loads that are unit-stride (v128.load) or invariant (splat). Anything else
// returns undefined and the caller emits the scalar loop.
import binaryen from 'binaryen';
import type { Stmt } from '../../schedule/loop-ir.js';
import type { FunctionEmitter } from './codegen.js';
import { type Expr, type Var, constant, substitute, printExpr } from '../../tensor-expr/expr.js';
import { simplify } from '../../tensor-expr/simplify.js';

type ForStmt = Extract<Stmt, { k: 'for' }>;

/** Whether `e` mentions variable `v`. */
function uses(e: Expr, v: Var): boolean {
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

/** Stride of an index in v: 0 (invariant), 1 (unit), or undefined (other). */
function stride(idx: Expr, v: Var): 0 | 1 | undefined {
  if (!uses(idx, v)) return 0;
  const at = (k: number) => simplify(substitute(idx, new Map([[v, constant(k, 'int32')]])));
  const d = simplify({ k: 'bin', op: 'sub', a: at(1), b: at(0), dtype: 'int32' });
  const d2 = simplify({ k: 'bin', op: 'sub', a: at(3), b: at(2), dtype: 'int32' });
  // affine and unit: difference is the constant 1 between neighbours (checked at two places)
  return d.k === 'const' && d.value === 1 && d2.k === 'const' && d2.value === 1 && printExpr(idx).indexOf('//') < 0 && printExpr(idx).indexOf('%%') < 0 ? 1 : undefined;
}

export function vectorizeLoop(em: FunctionEmitter, s: ForStmt): number | undefined {
  if (s.extent !== 4 || s.body.k !== 'store' || s.body.buf.dtype !== 'float32') return undefined;
  const st = s.body, v = s.v, m = em.m;
  if (stride(st.index, v) !== 1) return undefined;
  const base = (idx: Expr) => simplify(substitute(idx, new Map([[v, constant(0, 'int32')]])));
  const vec = (e: Expr): number | undefined => {
    if (!uses(e, v)) return e.dtype === 'float32' ? m.f32x4.splat(em.expr(e)) : undefined;
    if (e.dtype !== 'float32') return undefined;
    switch (e.k) {
      case 'var': return undefined;
      case 'load': {
        if (stride(e.idx[0], v) !== 1) return undefined;
        return m.v128.load(0, 4, em.addr(e.buf as never, em.expr(base(e.idx[0]))));
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
  const value = vec(st.value);
  if (value === undefined) return undefined;
  void binaryen;
  return m.v128.store(0, 4, em.addr(st.buf, em.expr(base(st.index))), value);
}
