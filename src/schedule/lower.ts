// Lowering a scheduled kernel to the loop IR: inline producers, build loop nests from each stage's leaf axes,
// turn reductions into accumulator loops, flatten multi-dimensional accesses to row-major offsets, simplify.
import {
  type Expr, type Var, type IterVar, add, mul, constant, freshVar, mapExpr, reduceInit, substitute, binary, and, lt,
} from '../tensor-expr/expr.js';
import { simplify, type Interval } from '../tensor-expr/simplify.js';
import type { Tensor } from '../tensor-expr/tensor.js';
import { type Buffer, type PrimFunc, type Stmt, buffer, seq } from './loop-ir.js';
import type { Schedule, Stage, Axis } from './schedule.js';
import { unrollLoops } from './passes/unroll.js';

export function lower(name: string, inputs: readonly Tensor[], sch: Schedule): PrimFunc {
  const bufs = new Map<Tensor, Buffer>();
  const size = (t: Tensor) => t.shape.reduce((a, b) => a * b, 1);
  const inBufs = inputs.map((t, i) => { const b = buffer(`in${i}`, t.dtype, size(t)); bufs.set(t, b); return b; });
  const outBufs = sch.outputs.map((t, i) => { const b = buffer(`out${i}`, t.dtype, size(t)); bufs.set(t, b); return b; });
  const temps: Buffer[] = [];
  const inlined = new Map<Tensor, Stage>();
  for (const st of sch.stages) {
    if (st.inlined) inlined.set(st.tensor, st);
    else if (st.epilogue) bufs.set(st.tensor, bufs.get(st.epilogue.tensor)!); // never stored: its epilogue writes the output
    else if (!bufs.has(st.tensor)) { const b = buffer(`t${temps.length}`, st.tensor.dtype, size(st.tensor)); temps.push(b); bufs.set(st.tensor, b); }
  }
  const ranges = new Map<Var, Interval>();
  const ctx: LowerCtx = { bufs, inlined, ranges };
  const body = seq(sch.stages.filter((st) => !st.inlined && !st.fusedInto).map((st) => lowerStage(sch, st, ctx)));
  return { name, inputs: inBufs, outputs: outBufs, temps, body: unrollLoops(body) };
}

interface LowerCtx {
  bufs: Map<Tensor, Buffer>;
  inlined: Map<Tensor, Stage>;
  ranges: Map<Var, Interval>;
}

/** Replaces loads of inlined tensors by their bodies, recursively. */
function inlineLoads(e: Expr, ctx: LowerCtx): Expr {
  return mapExpr(e, (x) => {
    if (x.k !== 'load') return undefined;
    const st = ctx.inlined.get(x.buf as Tensor);
    if (!st) return undefined;
    const t = st.tensor;
    const m = new Map<Var, Expr>(t.axes.map((a, i) => [a.v, x.idx[i]]));
    return inlineLoads(substitute(t.body!, m), ctx);
  });
}

function flatIndex(shape: readonly number[], idx: readonly Expr[]): Expr {
  let e: Expr = constant(0, 'int32');
  let stride = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    e = add(e, mul(idx[d], stride));
    stride *= shape[d];
  }
  return e;
}

/** Rewrites loads of materialized tensors into flat buffer loads and simplifies. */
function finish(e: Expr, ctx: LowerCtx): Expr {
  const flat = mapExpr(e, (x) => {
    if (x.k !== 'load') return undefined;
    const b = ctx.bufs.get(x.buf as Tensor);
    if (!b) return undefined; // already a buffer load
    return { k: 'load', buf: b, idx: [flatIndex(x.buf.shape, x.idx)], dtype: x.dtype };
  });
  return simplify(flat, ctx.ranges);
}

function combine(op: string, acc: Expr, v: Expr): Expr {
  return binary(op === 'sum' ? 'add' : op === 'prod' ? 'mul' : (op as 'max' | 'min'), acc, v);
}

/** Emits `k(value)` with every reduction inside `value` computed first into a local accumulator. */
function emitValue(value: Expr, ctx: LowerCtx, k: (v: Expr) => Stmt): Stmt {
  let found: Extract<Expr, { k: 'reduce' }> | undefined;
  // Find an outermost reduction (not nested inside another one).
  const search = (e: Expr): void => {
    if (found) return;
    switch (e.k) {
      case 'reduce': found = e; return;
      case 'bin': search(e.a); search(e.b); return;
      case 'un': case 'cast': search(e.a); return;
      case 'select': search(e.c); search(e.a); search(e.b); return;
      case 'load': e.idx.forEach(search); return;
      default: return;
    }
  };
  search(value);
  if (!found) return k(finish(value, ctx));
  const r = found;
  const acc = freshVar('acc', r.dtype);
  const rest = mapExpr(value, (x) => (x === r ? acc : undefined));
  // Fresh loop variables per use: the same reduction may be inlined in several places.
  const fresh = new Map<Var, Expr>();
  const loops = r.axes.map((a: IterVar) => { const v = freshVar(a.v.name); fresh.set(a.v, v); ctx.ranges.set(v, { lo: 0, hi: a.extent - 1 }); return { v, extent: a.extent }; });
  const body = substitute(r.body, fresh);
  let inner = emitValue(body, ctx, (v) => ({ k: 'assign', v: acc, value: combine(r.op, acc, v) }));
  for (let i = loops.length - 1; i >= 0; i--) inner = { k: 'for', v: loops[i].v, extent: loops[i].extent, kind: 'serial', body: inner };
  return { k: 'decl', v: acc, init: reduceInit(r.op, r.dtype), body: seq([inner, emitValue(rest, ctx, k)]) };
}

function nest(axes: readonly Axis[], inner: Stmt): Stmt {
  let s = inner;
  for (let i = axes.length - 1; i >= 0; i--) s = { k: 'for', v: axes[i].v, extent: axes[i].extent, kind: axes[i].kind, body: s };
  return s;
}

function guard(conds: Expr[], s: Stmt): Stmt {
  return conds.length ? { k: 'if', cond: conds.reduce((a, b) => and(a, b)), then: s } : s;
}

function lowerStage(sch: Schedule, st: Stage, ctx: LowerCtx): Stmt {
  const t = st.tensor;
  const out = ctx.bufs.get(t)!;
  for (const l of st.leaves) ctx.ranges.set(l.v, { lo: 0, hi: l.extent - 1 });
  const { index, guards } = sch.rootIndex(st);
  const spatialRoots = st.roots.filter((a) => !a.reduce);
  const spatialIdx = spatialRoots.map((a) => index.get(a)!);
  const storeIndex = () => finish(flatIndex(t.shape, spatialIdx), ctx);
  const bind = new Map<Var, Expr>(st.roots.map((a) => [a.v, index.get(a)!]));
  const spatialGuards = guards.filter((g) => !g.axis.reduce).map((g) => lt(g.expr, g.extent));
  const reduceGuards = guards.filter((g) => g.axis.reduce).map((g) => lt(g.expr, g.extent));

  if (!st.reduction) {
    const value = inlineLoads(substitute(t.body!, bind), ctx);
    const store = emitValue(value, ctx, (v) => ({ k: 'store', buf: out, index: storeIndex(), value: v }));
    return nest(st.leaves, guard(spatialGuards, store));
  }
  const r = st.reduction;
  const body = inlineLoads(substitute(r.body, bind), ctx);
  const spatialLeaves = st.leaves.filter((a) => !a.reduce), reduceLeaves = st.leaves.filter((a) => a.reduce);
  const reduceInside = st.leaves.findIndex((a) => a.reduce) >= spatialLeaves.length || reduceLeaves.length === 0;
  // with an epilogue, a local tile's write-back computes the output stage's body on the tile value
  const writeBack = (tileValue: Expr): { buf: Buffer; value: Expr } => {
    const o = st.epilogue;
    if (!o) return { buf: out, value: tileValue };
    const at = new Map<Var, Expr>(o.tensor.axes.map((a, d) => [a.v, spatialIdx[d]]));
    const value = inlineLoads(substitute(o.tensor.body!, at), ctx);
    return { buf: ctx.bufs.get(o.tensor)!, value: mapExpr(value, (x) => (x.k === 'load' && x.buf === t ? tileValue : undefined)) };
  };
  const lastLeaf = st.leaves[st.leaves.length - 1];
  if (st.cacheLocal && lastLeaf.reduce && lastLeaf.kind === 'vectorized') {
    return lowerLaneReduction(st, r, body, storeIndex(), writeBack, spatialGuards, reduceGuards, ctx);
  }
  if (st.cacheLocal && !reduceInside) {
    // A tile that runs past the end of a split spatial axis computes its extra rows from the last valid index
    // (clamped, so every load stays in bounds); the write-back's guards drop them.
    const clampedIndex = sch.rootIndex(st, true).index;
    const clamped = new Map<Var, Expr>(st.roots.map((a) => [a.v, simplify(clampedIndex.get(a)!, ctx.ranges)]));
    const tileBody = spatialGuards.length ? inlineLoads(substitute(r.body, clamped), ctx) : body;
    return lowerLocalTile(st, r, tileBody, storeIndex(), writeBack, spatialGuards, reduceGuards, ctx);
  }
  if (reduceInside) {
    const acc = freshVar('acc', r.dtype);
    const update = emitValue(body, ctx, (v) => ({ k: 'assign', v: acc, value: combine(r.op, acc, v) }));
    const inner: Stmt = {
      k: 'decl', v: acc, init: reduceInit(r.op, r.dtype),
      body: seq([nest(reduceLeaves, guard(reduceGuards, update)), { k: 'store', buf: out, index: storeIndex(), value: acc }]),
    };
    return nest(spatialLeaves, guard(spatialGuards, inner));
  }
  // Reduction loops interleaved with spatial ones: accumulate in the output buffer.
  if (st.relations.some((x) => x.kind === 'split' && x.shiftTail)) {
    throw new Error(`stage ${t.name}: a shiftTail split would accumulate overlapping elements twice in the output buffer`);
  }
  const idx = storeIndex();
  const cur: Expr = { k: 'load', buf: out, idx: [idx], dtype: out.dtype };
  const init = nest(spatialLeaves, guard(spatialGuards, { k: 'store', buf: out, index: idx, value: reduceInit(r.op, r.dtype) }));
  const update = emitValue(body, ctx, (v) => ({ k: 'store', buf: out, index: idx, value: combine(r.op, cur, v) }));
  return seq([init, nest(st.leaves, guard([...spatialGuards, ...reduceGuards], update))]);
}


/**
 * A reduction whose innermost leaf is a vectorized reduction axis (laneReductionTrace): each lane accumulates a
 * partial result in a 4-wide local buffer, combined at the end:
 *   for spatial { alloc L[4]; L[l] = init; for red { L[l] op= body(lane l) }; out = L[0] op L[1] op L[2] op L[3] }
 */
function lowerLaneReduction(st: Stage, r: Extract<Expr, { k: 'reduce' }>, body: Expr, outIndex: Expr,
  writeBack: (v: Expr) => { buf: Buffer; value: Expr }, spatialGuards: Expr[], reduceGuards: Expr[], ctx: LowerCtx): Stmt {
  const lane = st.leaves[st.leaves.length - 1];
  const first = st.leaves.findIndex((a) => a.reduce);
  const spatial = st.leaves.slice(0, first), red = st.leaves.slice(first, -1);
  if (st.leaves.slice(first).some((a) => !a.reduce) || lane.extent !== 4) {
    throw new Error(`stage ${st.tensor.name}: a vectorized reduction axis needs 4 lanes and every spatial loop outside the reduction`);
  }
  const tile = buffer(`${st.tensor.name}_lanes`, st.tensor.dtype, 4, 'local');
  const at = (i: Expr): Expr => ({ k: 'load', buf: tile, idx: [i], dtype: tile.dtype });
  const init: Stmt = { k: 'for', v: lane.v, extent: 4, kind: 'vectorized', body: { k: 'store', buf: tile, index: lane.v, value: reduceInit(r.op, r.dtype) } };
  const update = emitValue(body, ctx, (v) => ({ k: 'store', buf: tile, index: lane.v, value: combine(r.op, at(lane.v), v) }));
  const accumulate = nest(red, { k: 'for', v: lane.v, extent: 4, kind: 'vectorized', body: guard(reduceGuards, update) });
  const lanes = [0, 1, 2, 3].map((l) => at(constant(l, 'int32')));
  const wb = writeBack(combine(r.op, combine(r.op, lanes[0], lanes[1]), combine(r.op, lanes[2], lanes[3])));
  const store = emitValue(wb.value, ctx, (v) => ({ k: 'store', buf: wb.buf, index: outIndex, value: v }));
  return nest(spatial, guard(spatialGuards, { k: 'alloc', buf: tile, body: seq([init, accumulate, store]) }));
}

/**
 * Reduction accumulated in a local tile: spatial leaves outside the first reduction leaf iterate over tiles;
 * those after the reduction leaves index the tile (registers once unrolled/vectorized):
 *   for outer { alloc T; T = init; for red, inner { T[inner] op= body }; for inner { out = T[inner] } }
 */
/** `body` must be safe to evaluate for every tile position (spatial indices clamped by the caller). */
function lowerLocalTile(st: Stage, r: Extract<Expr, { k: 'reduce' }>, body: Expr, outIndex: Expr,
  writeBack: (tileValue: Expr) => { buf: Buffer; value: Expr }, spatialGuards: Expr[], reduceGuards: Expr[], ctx: LowerCtx): Stmt {
  const first = st.leaves.findIndex((a) => a.reduce);
  const outer = st.leaves.slice(0, first);
  const rest = st.leaves.slice(first);
  const reduceLeaves = rest.filter((a) => a.reduce), inner = rest.filter((a) => !a.reduce);
  const size = inner.reduce((n, a) => n * a.extent, 1);
  const tile = buffer(`${st.tensor.name}_local`, st.tensor.dtype, size, 'local');
  let li: Expr = constant(0, 'int32');
  for (const a of inner) li = add(mul(li, a.extent), a.v);
  li = simplify(li, ctx.ranges);
  const cur: Expr = { k: 'load', buf: tile, idx: [li], dtype: tile.dtype };
  const init = nest(inner, { k: 'store', buf: tile, index: li, value: reduceInit(r.op, r.dtype) });
  const update = emitValue(body, ctx, (v) => ({ k: 'store', buf: tile, index: li, value: combine(r.op, cur, v) }));
  const accumulate = nest([...reduceLeaves, ...inner], guard(reduceGuards, update));
  const wb = writeBack(cur);
  const store = emitValue(wb.value, ctx, (v) => ({ k: 'store', buf: wb.buf, index: outIndex, value: v }));
  return nest(outer, { k: 'alloc', buf: tile, body: seq([init, accumulate, nest(inner, guard(spatialGuards, store))]) });
}
