// A kernel for run-time sizes computes its tensors at their upper bounds (docs/dynamic-shapes.md); the positions
// past a run-time size are never read by a valid one, so an iteration of an outer loop that only stores there may
// be skipped. This pass puts that test at the top of such loops: `if (index along the axis < run-time size)`, where
// the loop variable alone gives a lower bound of the stored position's index along one axis of the buffer (its
// coefficient in the flat store index is a multiple of that axis's stride, and its whole range stays inside the
// axis). A batch of 1 in a kernel laid out for 8 then costs about one eighth of it.
import { type Expr, affineCoef, int, lt, mul, or } from '../tensor-expr/expr.js';
import { type Buffer, type ForStmt, type PrimFunc, type Stmt, mapChildren, visitStmt } from './loop-ir.js';

/** Per buffer written by the kernel: its shape at the bounds and, per axis, the run-time size (or undefined). */
export type RunSizes = ReadonlyMap<Buffer, { bound: readonly number[]; sizes: readonly (Expr | undefined)[] }>;

export function guardRunSizes(f: PrimFunc, runSizes: RunSizes): PrimFunc {
  const guardOf = (loop: ForStmt): Expr | undefined => {
    if ((loop.kind !== 'serial' && loop.kind !== 'parallel') || loop.extent <= 1) return undefined;
    let nested = false;
    const stores: Extract<Stmt, { k: 'store' }>[] = [];
    visitStmt(loop.body, (s) => {
      if (s.k === 'for') nested = true;
      if (s.k === 'store' && s.buf.scope === 'global') stores.push(s);
    });
    // (innermost loops would test every element)
    if (!nested || !stores.length) return undefined;
    const conds: Expr[] = [];
    for (const st of stores) {
      const info = runSizes.get(st.buf);
      const c = affineCoef(st.index, loop.v);
      if (!info || c === undefined || c <= 0) return undefined;
      const strides = info.bound.map((_, k) => info.bound.slice(k + 1).reduce((a, b) => a * b, 1));
      const k = strides.findIndex((s) => c >= s && c % s === 0);
      if (k < 0 || !info.sizes[k] || (k > 0 && c * (loop.extent - 1) >= strides[k - 1])) return undefined;
      conds.push(lt(mul(loop.v, c / strides[k]), info.sizes[k]!));
    }
    const unique = [...new Map(conds.map((x) => [JSON.stringify(x), x])).values()];
    return unique.reduce((a, b) => or(a, b));
  };
  const rewrite = (s: Stmt): Stmt => {
    const inner = mapChildren(s, rewrite);
    if (inner.k !== 'for') return inner;
    const cond = guardOf(inner);
    return cond ? { ...inner, body: { k: 'if', cond, then: inner.body } } : inner;
  };
  return { ...f, body: rewrite(f.body) };
}

/** An int32 expression of run-time sizes read from the kernel's symbol buffer (`symbols[k]` for symbol k). */
export const symbolLoad = (symbols: Buffer, k: number): Expr => ({
  k: 'load',
  buf: symbols,
  idx: [int(k)],
  dtype: 'int32',
});
