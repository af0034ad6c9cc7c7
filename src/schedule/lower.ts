// Lowering a scheduled kernel to the loop IR: inline producers, build loop nests from each stage's leaf axes,
// turn reductions into accumulator loops, flatten multi-dimensional accesses to row-major offsets, simplify.
import {
  type Expr,
  type Var,
  type IterVar,
  add,
  mul,
  constant,
  freshVar,
  mapExpr,
  reduceInit,
  substitute,
  binary,
  and,
  lt,
  ge,
  eq,
  int,
  floordiv,
  floormod,
  sub,
  visitExpr,
  printExpr,
} from '../tensor-expr/expr.js';
import { simplify, bound, type Interval } from '../tensor-expr/simplify.js';
import type { Tensor } from '../tensor-expr/tensor.js';
import { type Buffer, type PrimFunc, type Stmt, buffer, seq } from './loop-ir.js';
import { type Schedule, type Stage, type Axis, SCHEDULE_HINT } from './schedule.js';
import { KilnError } from '../runtime/errors.js';
import { LOWER, LOWERING_LOOP_PASSES, checkLoopIR, runLoopPasses } from './loop-passes.js';

/** The tensors stored in temporary buffers, in the order of the lowered PrimFunc's `temps`. */
export function tempTensors(sch: Schedule, inputs: readonly Tensor[]): Tensor[] {
  return sch.stages
    .filter((st) => !st.inlined && !st.epilogue && !inputs.includes(st.tensor) && !sch.outputs.includes(st.tensor))
    .map((st) => st.tensor);
}

/** The scheduled kernel as loop IR, after the loop passes every target runs; `after` sees each step's result. */
export function lower(
  name: string,
  inputs: readonly Tensor[],
  sch: Schedule,
  after?: (pass: string, f: PrimFunc) => void,
): PrimFunc {
  const bufs = new Map<Tensor, Buffer>();
  const size = (t: Tensor) => t.shape.reduce((a, b) => a * b, 1);
  const inBufs = inputs.map((t, i) => {
    const b = { ...buffer(`in${i}`, t.dtype, size(t)), ...(t.valueRanges ? { valueRanges: t.valueRanges } : {}) };
    bufs.set(t, b);
    return b;
  });
  const outBufs = sch.outputs.map((t, i) => {
    const b = buffer(`out${i}`, t.dtype, size(t));
    bufs.set(t, b);
    return b;
  });
  const inlined = new Map<Tensor, Stage>();
  for (const st of sch.stages) {
    if (st.inlined) inlined.set(st.tensor, st);
    else if (st.epilogue) bufs.set(st.tensor, bufs.get(st.epilogue.tensor)!); // never stored: its epilogue writes the output
  }
  const temps = tempTensors(sch, inputs).map((t, i) => {
    const b = buffer(`t${i}`, t.dtype, size(t));
    bufs.set(t, b);
    return b;
  });
  const ranges = new Map<Var, Interval>();
  const ctx: LowerCtx = { bufs, inlined, ranges };
  const body = seq(sch.stages.filter((st) => !st.inlined && !st.fusedInto).map((st) => lowerStage(sch, st, ctx)));
  const lowered: PrimFunc = { name, inputs: inBufs, outputs: outBufs, temps, body };
  after?.(LOWER, lowered);
  // register tiles are indexed by loop variables until their loops are unrolled
  checkLoopIR(lowered, `after ${LOWER}`, { localIndex: 'any' });
  return runLoopPasses(lowered, LOWERING_LOOP_PASSES, { after });
}

export interface LowerCtx {
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
      case 'reduce':
        found = e;
        return;
      case 'bin':
        search(e.a);
        search(e.b);
        return;
      case 'un':
      case 'cast':
        search(e.a);
        return;
      case 'select':
        search(e.c);
        search(e.a);
        search(e.b);
        return;
      case 'load':
        e.idx.forEach(search);
        return;
      default:
        return;
    }
  };
  search(value);
  if (!found) return k(finish(value, ctx));
  const r = found;
  const acc = freshVar('acc', r.dtype);
  const rest = mapExpr(value, (x) => (x === r ? acc : undefined));
  // Fresh loop variables per use: the same reduction may be inlined in several places.
  const fresh = new Map<Var, Expr>();
  const loops = r.axes.map((a: IterVar) => {
    const v = freshVar(a.v.name);
    fresh.set(a.v, v);
    ctx.ranges.set(v, { lo: 0, hi: a.extent - 1 });
    return { v, extent: a.extent };
  });
  const body = substitute(r.body, fresh);
  let inner = emitValue(body, ctx, (v) => ({ k: 'assign', v: acc, value: combine(r.op, acc, v) }));
  for (let i = loops.length - 1; i >= 0; i--)
    inner = { k: 'for', v: loops[i].v, extent: loops[i].extent, kind: 'serial', body: inner };
  return { k: 'decl', v: acc, init: reduceInit(r.op, r.dtype), body: seq([inner, emitValue(rest, ctx, k)]) };
}

/** Loops over `axes` around `inner`; `hooks` put statements at the start and end of an axis's loop body. */
function nest(axes: readonly Axis[], inner: Stmt, hooks?: ReadonlyMap<string, { pre: Stmt[]; post: Stmt[] }>): Stmt {
  let s = inner;
  for (let i = axes.length - 1; i >= 0; i--) {
    const h = hooks?.get(axes[i].name);
    if (h) s = seq([...h.pre, s, ...h.post]);
    s = { k: 'for', v: axes[i].v, extent: axes[i].extent, kind: axes[i].kind, body: s };
  }
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

  if (st.treeThreads) return lowerTreeStage(st, t, out, storeIndex, bind, spatialGuards, ctx);
  if (!st.reduction) {
    const value = inlineLoads(substitute(t.body!, bind), ctx);
    const store = emitValue(value, ctx, (v) => ({ k: 'store', buf: out, index: storeIndex(), value: v }));
    return nest(st.leaves, guard(spatialGuards, store));
  }
  const r = st.reduction;
  const body = inlineLoads(substitute(r.body, bind), ctx);
  const spatialLeaves = st.leaves.filter((a) => !a.reduce),
    reduceLeaves = st.leaves.filter((a) => a.reduce);
  const reduceInside = st.leaves.findIndex((a) => a.reduce) >= spatialLeaves.length || reduceLeaves.length === 0;
  // with an epilogue, a local tile's write-back computes the output stage's body on the tile value
  const writeBack = (tileValue: Expr): { buf: Buffer; value: Expr } => {
    const o = st.epilogue;
    if (!o) return { buf: out, value: tileValue };
    const at = new Map<Var, Expr>(o.tensor.axes.map((a, d) => [a.v, spatialIdx[d]]));
    const value = inlineLoads(substitute(o.tensor.body!, at), ctx);
    return {
      buf: ctx.bufs.get(o.tensor)!,
      value: mapExpr(value, (x) => (x.k === 'load' && x.buf === t ? tileValue : undefined)),
    };
  };
  const lastLeaf = st.leaves[st.leaves.length - 1];
  if (st.cacheLocal && lastLeaf.reduce && lastLeaf.kind === 'vectorized') {
    return lowerLaneReduction(st, r, body, storeIndex(), writeBack, spatialGuards, reduceGuards, ctx);
  }
  if (st.cacheLocal && (!reduceInside || blockLeaves(st).length)) {
    // A tile that runs past the end of a split spatial axis computes its extra rows from the last valid index
    // (clamped, so every load stays in bounds); the write-back's guards drop them.
    const clampedIndex = sch.rootIndex(st, true).index;
    const clamped = new Map<Var, Expr>(st.roots.map((a) => [a.v, simplify(clampedIndex.get(a)!, ctx.ranges)]));
    // shared-memory reads index with the unclamped positions: their fetch already stops at the tensor's edges
    const plan = st.sharedReads.length ? planSharedReads(st, bind, ctx) : undefined;
    const src = plan ? mapExpr(r.body, (x) => (x.k === 'load' ? plan.replace(x) : undefined)) : r.body;
    const tileBody =
      spatialGuards.length || plan ? inlineLoads(substitute(src, spatialGuards.length ? clamped : bind), ctx) : body;
    // a K-blocked tile reloads its partial sums from the output: at the clamped position (extra rows of a partial
    // tile read the last valid row, in bounds; their write-back is dropped)
    const reload = blockLeaves(st).length
      ? {
          buf: out,
          index: finish(
            flatIndex(
              t.shape,
              spatialRoots.map((a) => clamped.get(a.v)!),
            ),
            ctx,
          ),
        }
      : undefined;
    return lowerLocalTile(st, r, tileBody, storeIndex(), writeBack, spatialGuards, reduceGuards, ctx, plan, reload);
  }
  if (reduceInside) {
    const acc = freshVar('acc', r.dtype);
    const update = emitValue(body, ctx, (v) => ({ k: 'assign', v: acc, value: combine(r.op, acc, v) }));
    const inner: Stmt = {
      k: 'decl',
      v: acc,
      init: reduceInit(r.op, r.dtype),
      body: seq([
        nest(reduceLeaves, guard(reduceGuards, update)),
        { k: 'store', buf: out, index: storeIndex(), value: acc },
      ]),
    };
    return nest(spatialLeaves, guard(spatialGuards, inner));
  }
  // Reduction loops interleaved with spatial ones: accumulate in the output buffer.
  if (st.relations.some((x) => x.kind === 'split' && x.shiftTail)) {
    throw new KilnError(
      'E_INTERNAL',
      `stage ${t.name}: a shiftTail split would accumulate overlapping elements twice in the output buffer`,
      { hint: SCHEDULE_HINT },
    );
  }
  const idx = storeIndex();
  const cur: Expr = { k: 'load', buf: out, idx: [idx], dtype: out.dtype };
  const init = nest(
    spatialLeaves,
    guard(spatialGuards, { k: 'store', buf: out, index: idx, value: reduceInit(r.op, r.dtype) }),
  );
  const update = emitValue(body, ctx, (v) => ({ k: 'store', buf: out, index: idx, value: combine(r.op, cur, v) }));
  return seq([init, nest(st.leaves, guard([...spatialGuards, ...reduceGuards], update))]);
}

/**
 * A reduction whose innermost leaf is a vectorized reduction axis (laneReductionTrace): each lane accumulates a
 * partial result in a 4-wide local buffer, combined at the end:
 *   for spatial { alloc L[4]; L[l] = init; for red { L[l] op= body(lane l) }; out = L[0] op L[1] op L[2] op L[3] }
 * When the leaf before the lanes is an unrolled reduction leaf split from the same axis (r.i.o of r -> r.o, r.i ->
 * r.i.o, r.i.i), it indexes A separate partial vectors (A x 4 lanes, independent dependency chains), folded into the
 * first one before the lanes are combined.
 */
function lowerLaneReduction(
  st: Stage,
  r: Extract<Expr, { k: 'reduce' }>,
  body: Expr,
  outIndex: Expr,
  writeBack: (v: Expr) => { buf: Buffer; value: Expr },
  spatialGuards: Expr[],
  reduceGuards: Expr[],
  ctx: LowerCtx,
): Stmt {
  const lane = st.leaves[st.leaves.length - 1];
  const first = st.leaves.findIndex((a) => a.reduce);
  const spatial = st.leaves.slice(0, first);
  if (st.leaves.slice(first).some((a) => !a.reduce) || lane.extent !== 4) {
    throw new KilnError(
      'E_INTERNAL',
      `stage ${st.tensor.name}: a vectorized reduction axis needs 4 lanes and every spatial loop outside the reduction`,
      { hint: SCHEDULE_HINT },
    );
  }
  const accLeaf = laneAccumulatorLeaf(st);
  const red = st.leaves.slice(first, accLeaf ? -2 : -1);
  const A = accLeaf?.extent ?? 1;
  const tile = buffer(`${st.tensor.name}_lanes`, st.tensor.dtype, 4 * A, 'local');
  const at = (i: Expr): Expr => ({ k: 'load', buf: tile, idx: [i], dtype: tile.dtype });
  const slot: Expr = accLeaf ? add(mul(accLeaf.v, 4), lane.v) : lane.v;
  const overLanes = (s: Stmt): Stmt => {
    const inner: Stmt = { k: 'for', v: lane.v, extent: 4, kind: 'vectorized', body: s };
    return accLeaf ? { k: 'for', v: accLeaf.v, extent: A, kind: 'unrolled', body: inner } : inner;
  };
  const init = overLanes({ k: 'store', buf: tile, index: slot, value: reduceInit(r.op, r.dtype) });
  const update = emitValue(body, ctx, (v) => ({
    k: 'store',
    buf: tile,
    index: slot,
    value: combine(r.op, at(slot), v),
  }));
  const accumulate = nest(red, overLanes(guard(reduceGuards, update)));
  const fold: Stmt[] = [];
  for (let a = 1; a < A; a++) {
    const l = freshVar('lane');
    fold.push({
      k: 'for',
      v: l,
      extent: 4,
      kind: 'vectorized',
      body: { k: 'store', buf: tile, index: l, value: combine(r.op, at(l), at(add(l, 4 * a))) },
    });
  }
  const lanes = [0, 1, 2, 3].map((l) => at(constant(l, 'int32')));
  const wb = writeBack(combine(r.op, combine(r.op, lanes[0], lanes[1]), combine(r.op, lanes[2], lanes[3])));
  const store = emitValue(wb.value, ctx, (v) => ({ k: 'store', buf: wb.buf, index: outIndex, value: v }));
  return nest(spatial, guard(spatialGuards, { k: 'alloc', buf: tile, body: seq([init, accumulate, ...fold, store]) }));
}

/** The unrolled reduction leaf just outside a lane reduction's 4 lanes, split from the same axis (see above). */
function laneAccumulatorLeaf(st: Stage): Axis | undefined {
  const lane = st.leaves[st.leaves.length - 1],
    prev = st.leaves[st.leaves.length - 2];
  if (!prev?.reduce || prev.kind !== 'unrolled') return undefined;
  const rel = st.relations.find((x) => x.kind === 'split' && x.inner === lane);
  return rel && rel.kind === 'split' && rel.outer === prev ? prev : undefined;
}

/**
 * Reduction leaves outside a local tile's spatial loops (K-blocking: the tile loops run once per block of the
 * reduction, so that a block of both operands stays in cache): those before the last spatial leaf that has a
 * reduction leaf after it.
 */
export function blockLeaves(st: Stage): Axis[] {
  let q = -1;
  st.leaves.forEach((a, k) => {
    if (!a.reduce && st.leaves.slice(k + 1).some((b) => b.reduce)) q = k;
  });
  return st.leaves.slice(0, q + 1).filter((a) => a.reduce);
}

/**
 * Reduction accumulated in a local tile: spatial leaves outside the first reduction leaf iterate over tiles;
 * those after the reduction leaves index the tile (registers once unrolled/vectorized):
 *   for outer { alloc T; T = init; for red, inner { T[inner] op= body }; for inner { out = T[inner] } }
 */
/** `body` must be safe to evaluate for every tile position (spatial indices clamped by the caller). */
function lowerLocalTile(
  st: Stage,
  r: Extract<Expr, { k: 'reduce' }>,
  body: Expr,
  outIndex: Expr,
  writeBack: (tileValue: Expr) => { buf: Buffer; value: Expr },
  spatialGuards: Expr[],
  reduceGuards: Expr[],
  ctx: LowerCtx,
  plan?: SharedPlan,
  reload?: { buf: Buffer; index: Expr },
): Stmt {
  const blocks = blockLeaves(st);
  const lastBlock = blocks.length ? st.leaves.indexOf(blocks[blocks.length - 1]) : -1;
  const first = st.leaves.findIndex((a, k) => a.reduce && k > lastBlock);
  const outer = st.leaves.slice(0, first);
  const rest = st.leaves.slice(first);
  if (blocks.length && (plan || st.relations.some((x) => x.kind === 'split' && x.shiftTail && !x.parent.reduce))) {
    throw new KilnError(
      'E_INTERNAL',
      `stage ${st.tensor.name}: a reduction loop outside the tile loops needs tiles without shifted tails or shared reads`,
      { hint: SCHEDULE_HINT },
    );
  }
  const reduceLeaves = rest.filter((a) => a.reduce),
    inner = rest.filter((a) => !a.reduce);
  const size = inner.reduce((n, a) => n * a.extent, 1);
  const tile = buffer(`${st.tensor.name}_local`, st.tensor.dtype, size, 'local');
  let li: Expr = constant(0, 'int32');
  for (const a of inner) li = add(mul(li, a.extent), a.v);
  li = simplify(li, ctx.ranges);
  const cur: Expr = { k: 'load', buf: tile, idx: [li], dtype: tile.dtype };
  let init = nest(inner, { k: 'store', buf: tile, index: li, value: reduceInit(r.op, r.dtype) });
  const update = emitValue(body, ctx, (v) => ({ k: 'store', buf: tile, index: li, value: combine(r.op, cur, v) }));
  let accumulate = nest([...reduceLeaves, ...inner], guard(reduceGuards, update), plan?.hooks(ctx));
  if (plan) for (const b of plan.buffers) accumulate = { k: 'alloc', buf: b, body: accumulate };
  const wb = writeBack(cur);
  let store = nest(
    inner,
    guard(
      spatialGuards,
      emitValue(wb.value, ctx, (v) => ({ k: 'store', buf: wb.buf, index: outIndex, value: v })),
    ),
  );
  if (blocks.length) {
    // blocks after the first start from the partial result in the output; blocks before the last store it raw (the
    // epilogue, if any, applies once, to the complete sum)
    const isFirst = blocks.map((b) => eq(b.v, 0)).reduce((a, b) => and(a, b));
    const isLast = blocks.map((b) => eq(b.v, b.extent - 1)).reduce((a, b) => and(a, b));
    const partial: Expr = { k: 'load', buf: reload!.buf, idx: [reload!.index], dtype: reload!.buf.dtype };
    init = {
      k: 'if',
      cond: isFirst,
      then: init,
      else: nest(inner, { k: 'store', buf: tile, index: li, value: partial }),
    };
    store = {
      k: 'if',
      cond: isLast,
      then: store,
      else: nest(inner, guard(spatialGuards, { k: 'store', buf: reload!.buf, index: outIndex, value: cur })),
    };
  }
  return nest(outer, { k: 'alloc', buf: tile, body: seq([init, accumulate, store]) });
}

const isThreadKind = (k: string) => k.startsWith('threadIdx');

/** Variables an expression mentions. */
function varsOf(e: Expr): Set<Var> {
  const out = new Set<Var>();
  visitExpr(e, (x) => {
    if (x.k === 'var') out.add(x);
  });
  return out;
}

/** Whether an int32 index expression is a multiple of `c` for every value of its variables. */
function multipleOf(e: Expr, c: number): boolean {
  if (e.k === 'const') return Number(e.value) % c === 0;
  if (e.k !== 'bin') return false;
  if (e.op === 'add' || e.op === 'sub') return multipleOf(e.a, c) && multipleOf(e.b, c);
  if (e.op === 'mul') return multipleOf(e.a, c) || multipleOf(e.b, c);
  return false;
}

/**
 * Splits an index into a part F that depends only on `fixed` loops (the same for the whole region) and a part V
 * over the varying loops, index = F + V; floordiv/floormod by a constant split when F is a multiple of it.
 */
function splitFV(e: Expr, varying: ReadonlySet<Var>): { f: Expr; v: Expr } | undefined {
  const vs = [...varsOf(e)];
  if (!vs.some((x) => varying.has(x))) return { f: e, v: int(0) };
  if (vs.every((x) => varying.has(x))) return { f: int(0), v: e };
  if (e.k !== 'bin' || e.dtype !== 'int32') return undefined;
  switch (e.op) {
    case 'add':
    case 'sub': {
      const a = splitFV(e.a, varying),
        b = splitFV(e.b, varying);
      return a && b ? { f: binary(e.op, a.f, b.f), v: binary(e.op, a.v, b.v) } : undefined;
    }
    case 'mul': {
      const c = e.b.k === 'const' ? e.b : e.a.k === 'const' ? e.a : undefined;
      const s = c && splitFV(c === e.b ? e.a : e.b, varying);
      return c && s ? { f: mul(s.f, c), v: mul(s.v, c) } : undefined;
    }
    case 'floordiv':
    case 'floormod': {
      if (e.b.k !== 'const' || !(Number(e.b.value) > 0)) return undefined;
      const c = Number(e.b.value),
        s = splitFV(e.a, varying);
      if (!s || !multipleOf(s.f, c)) return undefined;
      return e.op === 'floordiv' ? { f: floordiv(s.f, c), v: floordiv(s.v, c) } : { f: int(0), v: floormod(s.v, c) };
    }
    default:
      return undefined;
  }
}

/** One tensor staged in a shared buffer: per dimension, the region's start (over the fixed loops) and extent. */
interface SharedRead {
  tensor: Tensor;
  at: string;
  buf: Buffer;
  dims: { full: boolean; f: Expr; vlo: number; ext: number }[];
}

export interface SharedPlan {
  buffers: Buffer[];
  /** The shared load replacing a load of a staged tensor (indices over the stage's root variables), or undefined. */
  replace(x: Extract<Expr, { k: 'load' }>): Expr | undefined;
  /** Fetch + barrier at the start of each `at` loop's body, barrier at its end. */
  hooks(ctx: LowerCtx): Map<string, { pre: Stmt[]; post: Stmt[] }>;
}

/**
 * Bound inference for the cacheRead steps of a local-tile stage (loop order: outer, reduction, tile leaves).
 * Exported for the GPU schedule, which sizes its tiles by the shared bytes they need.
 */
export function planSharedReads(
  st: Stage,
  bind: ReadonlyMap<Var, Expr>,
  ctx: { ranges: Map<Var, Interval> },
): SharedPlan {
  const first = st.leaves.findIndex((a) => a.reduce);
  const outer = st.leaves.slice(0, first),
    rest = st.leaves.slice(first);
  const order = [...outer, ...rest.filter((a) => a.reduce), ...rest.filter((a) => !a.reduce)];
  const threadLeaves = outer.filter((a) => isThreadKind(a.kind));
  if (st.leaves.some((a) => isThreadKind(a.kind) && !outer.includes(a)))
    throw new KilnError(
      'E_INTERNAL',
      `cacheRead: stage ${st.tensor.name} has thread-bound loops inside its reduction`,
      { hint: SCHEDULE_HINT },
    );
  const reads: SharedRead[] = [];
  // loops of one iteration are 0: a tile that covers a whole axis still starts at a multiple of its size
  const unit = new Map<Var, Expr>(st.leaves.filter((a) => a.extent === 1).map((a) => [a.v, int(0)]));
  const at0 = (i: Expr) => substitute(substitute(i, bind), unit);
  const loadsOf = (t: Tensor) => {
    const ls: Expr[][] = [];
    visitExpr(st.reduction!.body, (x) => {
      if (x.k === 'load' && x.buf === t) ls.push(x.idx.map(at0));
    });
    return ls;
  };
  for (const { tensor, at } of st.sharedReads) {
    const atPos = order.findIndex((a) => a.name === at);
    if (atPos < first || !order[atPos].reduce)
      throw new KilnError(
        'E_INTERNAL',
        `cacheRead: '${at}' is not a reduction loop of stage ${st.tensor.name}'s tile`,
        { hint: SCHEDULE_HINT },
      );
    const varying = new Set<Var>([...order.slice(atPos + 1), ...threadLeaves].map((a) => a.v));
    const dims = tensor.shape.map((dim, d) => {
      let f: Expr | undefined,
        lo = Infinity,
        hi = -Infinity,
        ok = true;
      for (const idx of loadsOf(tensor)) {
        const s = splitFV(idx[d], varying);
        const b = s && bound(simplify(s.v, ctx.ranges), ctx.ranges);
        if (!s || !b) {
          ok = false;
          break;
        }
        const fs = simplify(s.f, ctx.ranges);
        if (f && printExpr(f) !== printExpr(fs)) {
          ok = false;
          break;
        }
        f = fs;
        lo = Math.min(lo, b.lo);
        hi = Math.max(hi, b.hi);
      }
      // a region past the tensor's edge (a partial tile) is fetched as zeros; only when bound inference fails
      // does the whole dimension come in
      return ok && f ? { full: false, f, vlo: lo, ext: hi - lo + 1 } : { full: true, f: int(0), vlo: 0, ext: dim };
    });
    const size = dims.reduce((n, x) => n * x.ext, 1);
    reads.push({ tensor, at, dims, buf: buffer(`${tensor.name}_shared`, tensor.dtype, size, 'shared') });
  }
  const flat = (r: SharedRead, local: Expr[]) => {
    let e: Expr = int(0);
    r.dims.forEach((d, i) => {
      e = add(mul(e, d.ext), local[i]);
    });
    return e;
  };
  return {
    buffers: reads.map((r) => r.buf),
    replace(x) {
      const r = reads.find((q) => q.tensor === x.buf);
      if (!r) return undefined;
      const atPos = order.findIndex((a) => a.name === r.at);
      const varying = new Set<Var>([...order.slice(atPos + 1), ...threadLeaves].map((a) => a.v));
      const local = x.idx.map((i0, d) => {
        const i = at0(i0),
          dd = r.dims[d];
        // (a whole dimension: clamped, the positions outside it belong to outputs the write-back drops)
        return dd.full
          ? binary('max', binary('min', i, r.tensor.shape[d] - 1), 0)
          : sub(splitFV(i, varying)!.v, dd.vlo);
      });
      return { k: 'load', buf: r.buf, idx: [simplify(flat(r, local), ctx.ranges)], dtype: r.buf.dtype };
    },
    hooks(lctx) {
      const nThreads = threadLeaves.reduce((n, a) => n * a.extent, 1);
      let tid: Expr = int(0);
      for (const a of threadLeaves) tid = add(mul(tid, a.extent), a.v);
      const hooks = new Map<string, { pre: Stmt[]; post: Stmt[] }>();
      for (const r of reads) {
        // four consecutive floats per thread (one 16-byte load where the backend has them) when the region's rows
        // start at multiples of 4 in a kernel input whose rows are multiples of 4 long: a vector is then all
        // inside or all outside the tensor
        const last = r.dims[r.dims.length - 1],
          rowLen = r.tensor.shape[r.tensor.shape.length - 1];
        const V =
          r.tensor.kind === 'placeholder' &&
          r.tensor.dtype === 'float32' &&
          !last.full &&
          last.ext % 4 === 0 &&
          rowLen % 4 === 0 &&
          last.vlo % 4 === 0 &&
          multipleOf(last.f, 4)
            ? 4
            : 1;
        const size = r.buf.size,
          units = size / V,
          n = Math.ceil(units / nThreads);
        const fv = freshVar('fetch');
        lctx.ranges.set(fv, { lo: 0, hi: n - 1 });
        const unit = simplify(add(mul(fv, nThreads), tid), lctx.ranges);
        const lin = simplify(mul(unit, V), lctx.ranges);
        let stride = size;
        const g = r.dims.map((d) => {
          stride /= d.ext;
          const c = floormod(floordiv(lin, stride), d.ext);
          return simplify(add(add(d.f, d.vlo), c), lctx.ranges);
        });
        const inb: Expr[] = [];
        g.forEach((gi, d) => {
          const b = bound(gi, lctx.ranges);
          if (!b || b.lo < 0) inb.push(ge(gi, 0));
          if (!b || b.hi >= r.tensor.shape[d]) inb.push(lt(gi, r.tensor.shape[d]));
        });
        const lane = freshVar('lane');
        lctx.ranges.set(lane, { lo: 0, hi: V - 1 });
        const at = (e: Expr) => (V === 1 ? e : simplify(add(e, lane), lctx.ranges));
        const ld: Expr = {
          k: 'load',
          buf: r.tensor,
          idx: [...g.slice(0, -1), at(g[g.length - 1])],
          dtype: r.tensor.dtype,
        };
        const value = finish(inlineLoads(ld, lctx), lctx);
        const put = (v: Expr): Stmt => {
          const st: Stmt = { k: 'store', buf: r.buf, index: at(lin), value: v };
          return V === 1 ? st : { k: 'for', v: lane, extent: V, kind: 'vectorized', body: st };
        };
        let fetch: Stmt = inb.length
          ? {
              k: 'if',
              cond: simplify(
                inb.reduce((a, b) => and(a, b)),
                lctx.ranges,
              ),
              then: put(value),
              else: put(reduceInit('sum', r.tensor.dtype)),
            }
          : put(value);
        if (n * nThreads > units) fetch = { k: 'if', cond: lt(unit, units), then: fetch };
        const h = hooks.get(r.at) ?? { pre: [], post: [] };
        h.pre.push({ k: 'for', v: fv, extent: n, kind: n <= 8 ? 'unrolled' : 'serial', body: fetch });
        hooks.set(r.at, h);
      }
      // the tile is complete before anyone reads it, and read by everyone before the next fetch overwrites it
      for (const h of hooks.values()) {
        h.pre.push({ k: 'barrier' });
        h.post.push({ k: 'barrier' });
      }
      return hooks;
    },
  };
}

/**
 * A stage whose reductions run across a workgroup (crossThreadReduce): its bound loops, then a 'threadIdx.x' loop
 * of T threads. Each outermost reduction: every thread reduces elements lin = ro*T + t of the fused reduction axes
 * into a register, writes it to a shared buffer, then a log2(T) tree (barrier between levels) leaves the result
 * in element 0, which every thread reads; thread 0 stores the stage's value.
 */
function lowerTreeStage(
  st: Stage,
  t: Tensor,
  out: Buffer,
  storeIndex: () => Expr,
  bind: Map<Var, Expr>,
  spatialGuards: Expr[],
  ctx: LowerCtx,
): Stmt {
  const T = st.treeThreads!;
  if (st.leaves.some((a) => isThreadKind(a.kind)))
    throw new KilnError('E_INTERNAL', `crossThreadReduce: stage ${t.name} binds other loops to threads`, {
      hint: SCHEDULE_HINT,
    });
  if (st.relations.some((r) => (r.kind === 'split' ? r.parent : r.outer).reduce))
    throw new KilnError('E_INTERNAL', `crossThreadReduce: stage ${t.name} splits or fuses reduction axes`, {
      hint: SCHEDULE_HINT,
    });
  const tv = freshVar('tr');
  ctx.ranges.set(tv, { lo: 0, hi: T - 1 });
  for (const v of [...bind.keys()]) if (st.roots.find((a) => a.v === v)?.reduce) bind.delete(v); // reduction axes stay the reduce's own
  const value = substitute(t.body!, bind);
  const tree = (v: Expr): Stmt => {
    let found: Extract<Expr, { k: 'reduce' }> | undefined;
    visitFirstReduce(v, (r) => {
      found = found ?? r;
    });
    if (!found) {
      const store: Stmt = { k: 'store', buf: out, index: storeIndex(), value: finish(inlineLoads(v, ctx), ctx) };
      return guard([...spatialGuards, eq(tv, 0)], store);
    }
    const r: Extract<Expr, { k: 'reduce' }> = found;
    const R = r.axes.reduce((n, a) => n * a.extent, 1),
      n = Math.ceil(R / T);
    const acc = freshVar('acc', r.dtype),
      ro = freshVar('ro');
    ctx.ranges.set(ro, { lo: 0, hi: n - 1 });
    const lin = add(mul(ro, T), tv);
    const m = new Map<Var, Expr>();
    let stride = R;
    r.axes.forEach((a, i) => {
      stride /= a.extent;
      m.set(a.v, simplify(i === 0 ? floordiv(lin, stride) : floormod(floordiv(lin, stride), a.extent), ctx.ranges));
    });
    const update = emitValue(inlineLoads(substitute(r.body, m), ctx), ctx, (x) => ({
      k: 'assign',
      v: acc,
      value: combine(r.op, acc, x),
    }));
    const conds = [...spatialGuards, ...(n * T > R ? [lt(lin, R)] : [])];
    const red = buffer(`red${t.name}`, r.dtype, T, 'shared');
    const at = (i: Expr): Expr => ({ k: 'load', buf: red, idx: [i], dtype: r.dtype });
    const steps: Stmt[] = [
      {
        k: 'for',
        v: ro,
        extent: n,
        kind: 'serial',
        body: guard(
          conds.map((c) => simplify(c, ctx.ranges)),
          update,
        ),
      },
      { k: 'store', buf: red, index: tv, value: acc },
      { k: 'barrier' },
    ];
    for (let s = T / 2; s >= 1; s /= 2) {
      steps.push(
        {
          k: 'if',
          cond: lt(tv, s),
          then: { k: 'store', buf: red, index: tv, value: combine(r.op, at(tv), at(add(tv, s))) },
        },
        { k: 'barrier' },
      );
    }
    steps.push(tree(mapExpr(v, (x) => (x === r ? at(int(0)) : undefined))));
    return { k: 'alloc', buf: red, body: { k: 'decl', v: acc, init: reduceInit(r.op, r.dtype), body: seq(steps) } };
  };
  return nest(
    st.leaves.filter((a) => !a.reduce),
    { k: 'for', v: tv, extent: T, kind: 'threadIdx.x', body: tree(value) },
  );
}

/** Calls `f` on each outermost reduction of `e` (not inside another reduction), in visit order. */
function visitFirstReduce(e: Expr, f: (r: Extract<Expr, { k: 'reduce' }>) => void): void {
  switch (e.k) {
    case 'reduce':
      f(e);
      return;
    case 'bin':
      visitFirstReduce(e.a, f);
      visitFirstReduce(e.b, f);
      return;
    case 'un':
    case 'cast':
      visitFirstReduce(e.a, f);
      return;
    case 'select':
      visitFirstReduce(e.c, f);
      visitFirstReduce(e.a, f);
      visitFirstReduce(e.b, f);
      return;
    case 'load':
      e.idx.forEach((i) => visitFirstReduce(i, f));
      return;
    default:
      return;
  }
}
