// A kernel for run-time sizes computes its tensors at their upper bounds (docs/dynamic-shapes.md); the positions
// past a run-time size are never read by a valid one, so an iteration of an outer loop that only stores there may
// be skipped. This pass puts that test at the top of such loops: `if (index along the axis < run-time size)`, where
// the loop variable alone gives a lower bound of the stored position's index along one axis of the buffer (its
// coefficient in the flat store index is a multiple of that axis's stride, and its whole range stays inside the
// axis). A batch of 1 in a kernel laid out for 8 then costs about one eighth of it. On a GPU the same analysis of a
// loop bound to a block index gives how many blocks a run needs (ForStmt.runCount), which the launch binder turns
// into a grid computed from the sizes at run time (src/codegen/common/launch.ts).
import {
  type Expr,
  type ReduceOp,
  add,
  affineCoef,
  floordiv,
  lt,
  max,
  mapExpr,
  mul,
  or,
  printExpr,
  reduceInit,
  visitExpr,
} from '../tensor-expr/expr.js';
import {
  type Buffer,
  type ForStmt,
  type PrimFunc,
  type Stmt,
  type StoreStmt,
  mapChildren,
  visitStmt,
} from './loop-ir.js';

/** Per buffer written by the kernel: its shape at the bounds and, per axis, the run-time size (or undefined). */
export type RunSizes = ReadonlyMap<Buffer, { bound: readonly number[]; sizes: readonly (Expr | undefined)[] }>;

export function guardRunSizes(f: PrimFunc, runSizes: RunSizes): PrimFunc {
  /**
   * Per global store under `loop`, an axis of its buffer with a run-time size along which the loop variable alone
   * bounds the stored position from below: the iterations with `loop.v * scale >= size` store past the sizes.
   * Undefined where some store tells nothing.
   */
  const storeBounds = (loop: ForStmt): { scale: number; size: Expr }[] | undefined => {
    const stores: Extract<Stmt, { k: 'store' }>[] = [];
    visitStmt(loop.body, (s) => {
      if (s.k === 'store' && s.buf.scope === 'global') stores.push(s);
    });
    if (!stores.length) return undefined;
    const bounds: { scale: number; size: Expr }[] = [];
    for (const st of stores) {
      const info = runSizes.get(st.buf);
      const c = affineCoef(st.index, loop.v);
      if (!info || c === undefined || c <= 0) return undefined;
      const strides = info.bound.map((_, k) => info.bound.slice(k + 1).reduce((a, b) => a * b, 1));
      const k = strides.findIndex((s) => c >= s && c % s === 0);
      if (k < 0 || !info.sizes[k] || (k > 0 && c * (loop.extent - 1) >= strides[k - 1])) return undefined;
      bounds.push({ scale: c / strides[k], size: info.sizes[k]! });
    }
    return [...new Map(bounds.map((b) => [`${b.scale} ${printExpr(b.size)}`, b])).values()];
  };
  const rewrite = (s: Stmt): Stmt => {
    const inner = mapChildren(s, rewrite);
    const block = inner.k === 'for' && inner.kind.startsWith('blockIdx');
    if (inner.k !== 'for' || (inner.kind !== 'serial' && inner.kind !== 'parallel' && !block) || inner.extent <= 1)
      return inner;
    let nested = false;
    visitStmt(inner.body, (st) => {
      if (st.k === 'for') nested = true;
    });
    const bounds = nested || block ? storeBounds(inner) : undefined;
    if (!bounds) return inner;
    // (innermost loops would test every element; a condition on block indices and sizes is uniform over the block:
    // barriers under it stay legal)
    const cond = nested ? bounds.map((b) => lt(mul(inner.v, b.scale), b.size)).reduce((a, b) => or(a, b)) : undefined;
    // a block-index loop's iterations that may store inside the sizes: the GPU grid a run needs (launch.ts)
    const count = block
      ? bounds
          .map((b) => (b.scale === 1 ? b.size : floordiv(add(b.size, b.scale - 1), b.scale)))
          .reduce((a, b) => max(a, b))
      : undefined;
    if (!cond && !count) return inner;
    return {
      ...inner,
      ...(cond ? { body: { k: 'if', cond, then: inner.body } } : {}),
      ...(count ? { runCount: { extent: inner.extent, count } } : {}),
    };
  };
  return { ...f, body: rewrite(f.body) };
}

/** The reduction a combining operator performs, for the identity a masked-off term takes. */
const REDUCE_OF: Partial<Record<string, ReduceOp>> = { add: 'sum', mul: 'prod', max: 'max', min: 'min' };

/**
 * A reduction over a run-time length is masked term by term (`acc = acc + select(k < size, x, 0)`), which costs a
 * compare and a select per term and every term to the bound. Where a loop's body only makes such updates, all under
 * one condition that holds for the whole iteration (it names no variable bound inside the loop, and reads only
 * buffers the kernel never writes), the condition moves to an `if` around the body and the terms lose their masks.
 */
export function hoistReductionMasks(f: PrimFunc): PrimFunc {
  const written = new Set<Buffer>();
  visitStmt(f.body, (s) => {
    if (s.k === 'store') written.add(s.buf);
  });
  /** The mask of a masked update `buf[i] = op(buf[i], select(c, x, identity))`, with x; undefined otherwise. */
  const maskedUpdate = (s: StoreStmt): { c: Expr; x: Expr } | undefined => {
    const v = s.value;
    if (v.k !== 'bin' || !REDUCE_OF[v.op]) return undefined;
    const sameCell = (e: Expr) =>
      e.k === 'load' && e.buf === s.buf && e.idx.length === 1 && printExpr(e.idx[0]) === printExpr(s.index);
    const term = sameCell(v.a) ? v.b : sameCell(v.b) ? v.a : undefined;
    if (term?.k !== 'select' || term.b.k !== 'const') return undefined;
    const id = reduceInit(REDUCE_OF[v.op]!, term.dtype);
    return id.k === 'const' && id.value === term.b.value ? { c: term.c, x: term.a } : undefined;
  };
  const hoist = (loop: ForStmt): Stmt | undefined => {
    if (loop.kind === 'vectorized' || loop.kind.startsWith('threadIdx') || loop.kind.startsWith('blockIdx'))
      return undefined;
    const inner = new Set<string>();
    const stores: StoreStmt[] = [];
    let other = false;
    visitStmt(loop.body, (s) => {
      if (s.k === 'for' || s.k === 'decl') inner.add(s.v.name);
      else if (s.k === 'store') stores.push(s);
      else if (s.k === 'assign' || s.k === 'barrier') other = true;
    });
    if (other || !stores.length) return undefined;
    const masks = stores.map(maskedUpdate);
    const c = masks[0]?.c;
    if (!c || masks.some((m) => !m || printExpr(m.c) !== printExpr(c))) return undefined;
    let invariant = true;
    visitExpr(c, (e) => {
      if ((e.k === 'var' && inner.has(e.name)) || (e.k === 'load' && written.has(e.buf as Buffer))) invariant = false;
    });
    if (!invariant) return undefined;
    const unmasked = new Map(stores.map((st, i) => [st, masks[i]!.x]));
    const strip = (s: Stmt): Stmt => {
      const x = s.k === 'store' ? unmasked.get(s) : undefined;
      if (s.k !== 'store' || !x) return mapChildren(s, strip);
      const v = s.value as Extract<Expr, { k: 'bin' }>;
      return { ...s, value: mapExpr(v, (e) => (e.k === 'select' && printExpr(e.c) === printExpr(c) ? x : undefined)) };
    };
    return { ...loop, body: { k: 'if', cond: c, then: strip(loop.body) } };
  };
  const rewrite = (s: Stmt): Stmt => {
    if (s.k === 'for') {
      const h = hoist(s);
      if (h) return h;
    }
    return mapChildren(s, rewrite);
  };
  return { ...f, body: rewrite(f.body) };
}
