// The CPU's default schedule rules (beside gpu-schedule.ts for the GPU targets), written as trace steps over the
// primitives of schedule.ts: which producers are inlined, which stages vectorize and how, register tiles for
// float32 sums, lane-wise reductions, and which loop runs in parallel. The tuner's CPU space (autotune/space.ts)
// builds its candidates from the same helpers.
import { type Expr, type Var, affineCoef, mentions, visitExpr } from '../tensor-expr/expr.js';
import type { ComputeHints, Tensor } from '../tensor-expr/tensor.js';
import { type Axis, Schedule, type Stage, type TraceStep } from './schedule.js';

/**
 * The schedule every kernel gets without tuning: producers without reductions are inlined into consumers;
 * float32 elementwise stages run their innermost axis in SIMD lanes (4 on WebAssembly, the target's vector width
 * natively); float32 sums get register tiles; each materialized stage's outermost loop of useful extent runs in
 * parallel (threads split it).
 */
export function defaultTrace(sch: Schedule, tiles: TileOptions = WASM_TILES): TraceStep[] {
  const probe = new Schedule(sch.outputs);
  const steps: TraceStep[] = [];
  const add = (ss: TraceStep[]) => {
    for (const s of ss) {
      probe.apply(s);
      steps.push(s);
    }
  };
  // inline first: whether a reduction can take the output stage as its epilogue depends on what is inlined
  const inlinedSize = new Map<Tensor, number>();
  const reads = readCounts(probe);
  probe.stages.forEach((st, i) => {
    if (st.isOutput || st.hasReduction() || worthMaterializing(probe, st) || st.tensor.hints?.recurrence) return;
    const size = expressionSize(st.tensor.body!, inlinedSize);
    if (size * (reads.get(st.tensor) ?? 0) > INLINE_MAX_NODES) return; // too big to copy into every read: computed once
    inlinedSize.set(st.tensor, size);
    add([{ p: 'computeInline', stage: i }]);
  });
  probe.stages.forEach((st, i) => {
    if (st.inlined) return;
    if (st.tensor.hints?.recurrence) {
      // (in order along its innermost axis: threads split an outer one only)
      const outer = parallelAxis(st);
      const last = st.roots.filter((a) => !a.reduce).pop();
      add(outer && outer !== last ? [{ p: 'annotate', stage: i, axis: outer.name, kind: 'parallel' }] : []);
      return;
    }
    if (st.reduction) {
      const lanes = laneReductionTrace(st, i);
      const tile = lanes.length && rowReduction(st) ? [] : registerTileTrace(st, i, tiles);
      add(tile.length ? tile : lanes);
      if (probe.epilogueOf(st)) add([{ p: 'fuseEpilogue', stage: i }]);
      add(threadAndUnrollSteps(st, i, parallelStepsAxis(sch, st, i, add)?.name));
    } else {
      const vector = vectorizeSteps(st, i, st.laneLayout, tiles.lanes);
      add(vector);
      add(threadAndUnrollSteps(st, i, parallelStepsAxis(sch, st, i, add)?.name, vector.leaves));
    }
  });
  return steps;
}

/** The loop threads split by default (parallelAxis), moved behind a static one where it runs along a run-time size. */
function parallelStepsAxis(sch: Schedule, st: Stage, stage: number, add: (s: TraceStep[]) => void): Axis | undefined {
  const outer = parallelAxis(st);
  const moved = outer && staticAxisAfter(st, outer, sch.runTimeAxes?.get(st.tensor));
  if (moved) add([{ p: 'reorder', stage, order: [moved.name, outer.name] }]);
  return moved ?? outer;
}

/**
 * In a kernel for run-time sizes (`runTime`: per axis of the stage's tensor, whether it is one), the outer loop may
 * run along a run-time size, often once (a batch of 1 laid out for 8) and then on one thread: the next loop with
 * more than one iteration, when it is a static spatial one, to move in front of it and take the threads instead.
 */
function staticAxisAfter(st: Stage, outer: Axis, runTime: readonly boolean[] | undefined): Axis | undefined {
  const spatial = st.roots.filter((a) => !a.reduce);
  /** The root a leaf was split from (undefined through a fuse). */
  const rootOf = (a: Axis): Axis | undefined => {
    for (let i = st.relations.length - 1; i >= 0; i--) {
      const r = st.relations[i];
      if (r.kind === 'split' && (r.outer === a || r.inner === a)) a = r.parent;
      else if (r.kind === 'fuse' && r.fused === a) return undefined;
    }
    return a;
  };
  // (a leaf of a fuse counts as one: it may take a run-time size's part)
  const isRunTime = (a: Axis) => {
    const root = rootOf(a);
    return !root || runTime?.[spatial.indexOf(root)] === true;
  };
  if (!runTime || !isRunTime(outer)) return undefined;
  for (const a of st.leaves.slice(st.leaves.indexOf(outer) + 1)) {
    if (a.reduce || a.kind !== 'serial') return undefined;
    if (a.extent > 1) return isRunTime(a) ? undefined : a;
  }
  return undefined;
}

/**
 * SIMD lanes for a float32 stage without reductions: its innermost axis split by the lanes, the inner part
 * vectorized, when it is at least 8 wide or exactly 4. `maxLanes` is the target's vector width (4 on WebAssembly;
 * 8 or 16 natively, fewer for a shorter axis: at least one whole vector). A row that is not a multiple of the lanes
 * (58 = a padded 56) ends with a vector overlapping the one before it. `outer` names the loop over vectors,
 * `outerExtent` its trip count. `layout` (the operator's hints, see Stage.laneLayout) may say the axis is fused
 * rows (lanes within each row) or interleaved phases (one loop per phase outside the lanes).
 */
export function vectorizeSteps(
  st: Stage,
  stage: number,
  layout: ComputeHints | undefined = st.laneLayout,
  maxLanes = 4,
): VectorSteps {
  const steps = laneSteps(st, stage, layout, maxLanes);
  return steps.length ? unrollNearLanes(st, stage, steps) : steps;
}

/** Trace steps that vectorize a stage: `outer` names the loop over vectors, `outerExtent` its trip count. */
export type VectorSteps = TraceStep[] & {
  outer?: string;
  outerExtent?: number;
  /** The stage's loops in order after the steps, by name (for a stage with the unrollNearLanes hint). */
  leaves?: readonly string[];
};

function laneSteps(
  st: Stage,
  stage: number,
  layout: ComputeHints | undefined,
  maxLanes: number,
): TraceStep[] & { outer?: string; outerExtent?: number } {
  const inner = st.roots.filter((a) => !a.reduce).pop();
  // (uint8 / int8 stages: a quantizing epilogue, computed in float32 lanes and stored as bytes)
  if (!['float32', 'uint8', 'int8'].includes(st.tensor.dtype) || !inner) return [];
  const wide = (n: number) => n >= 8 || n === 4;
  const lanes = (
    axis: string,
    extent: number,
    pre: TraceStep[],
  ): TraceStep[] & { outer?: string; outerExtent?: number } => {
    let L = maxLanes;
    while (L > 4 && L > extent) L /= 2;
    const steps: TraceStep[] & { outer?: string; outerExtent?: number } = [
      ...pre,
      { p: 'split', stage, axis, factor: L, ...(extent % L ? { shiftTail: true } : {}) },
      { p: 'annotate', stage, axis: `${axis}.i`, kind: 'vectorized' },
    ];
    steps.outer = `${axis}.o`;
    steps.outerExtent = Math.ceil(extent / L);
    return steps;
  };
  const row = layout?.laneRowLength,
    phases = layout?.laneInterleave;
  if (row && inner.extent % row === 0 && row >= 4) {
    return lanes(`${inner.name}.i`, row, [{ p: 'split', stage, axis: inner.name, factor: row }]);
  }
  // an extent that is not a multiple of the phases guards the last positions (the loop partitioning pass gives
  // them a scalar loop of their own)
  if (phases && Math.ceil(inner.extent / phases) >= 4) {
    const steps = lanes(`${inner.name}.o`, Math.ceil(inner.extent / phases), [
      { p: 'split', stage, axis: inner.name, factor: phases },
      { p: 'reorder', stage, order: [`${inner.name}.i`, `${inner.name}.o`] },
      { p: 'annotate', stage, axis: `${inner.name}.i`, kind: 'unrolled' },
    ]);
    // whole phases: the loop over phases inside the loop over vectors, so that the phases' vectors of one position
    // are computed together (a backend may interleave them into one contiguous store)
    if (inner.extent % phases === 0) steps.push({ p: 'reorder', stage, order: [steps.outer!, `${inner.name}.i`] });
    return steps;
  }
  return wide(inner.extent) ? lanes(inner.name, inner.extent, []) : [];
}

/**
 * The operator's unrollNearLanes hint (ComputeHints) on vectorizing steps of a stage not yet scheduled: its
 * unrollAxis split by the factor, the inner part moved just outside the lanes; the parallelAxis, if any, first.
 * `leaves` tells threadAndUnrollSteps the loop order.
 */
function unrollNearLanes(st: Stage, stage: number, vector: VectorSteps): VectorSteps {
  const h = st.tensor.hints;
  const spatial = st.roots.filter((a) => !a.reduce);
  const u = h?.unrollAxis === undefined ? undefined : spatial[h.unrollAxis];
  if (!h?.unrollNearLanes || !u || u === spatial[spatial.length - 1] || u.extent % h.unrollNearLanes) return vector;
  const split: TraceStep = { p: 'split', stage, axis: u.name, factor: h.unrollNearLanes };
  const leaves = loopOrder(
    spatial.map((a) => a.name),
    [...vector, split],
  );
  const near = `${u.name}.i`,
    lanes = leaves[leaves.length - 1];
  const threaded = h.parallelAxis === undefined ? undefined : spatial[h.parallelAxis]?.name;
  const rest = leaves.filter((n) => n !== near && n !== lanes && n !== threaded);
  const order = [...(threaded && leaves.includes(threaded) ? [threaded] : []), ...rest, near, lanes];
  const steps: VectorSteps = [...vector, split, { p: 'reorder', stage, order }];
  steps.outer = vector.outer;
  steps.outerExtent = vector.outerExtent;
  steps.leaves = order;
  return steps;
}

/** Loop names in order after split and reorder steps, from the stage's roots. */
function loopOrder(roots: readonly string[], steps: readonly TraceStep[]): string[] {
  const leaves = [...roots];
  for (const s of steps) {
    if (s.p === 'split') leaves.splice(leaves.indexOf(s.axis), 1, `${s.axis}.o`, `${s.axis}.i`);
    if (s.p === 'reorder') {
      const slots = s.order.map((n) => leaves.indexOf(n)).sort((a, b) => a - b);
      slots.forEach((slot, i) => {
        leaves[slot] = s.order[i];
      });
    }
  }
  return leaves;
}

/**
 * Most expression nodes an inlined producer may copy into its readers. A stage that reads its producer k times
 * (elu reads x three times) and is inlined in turn multiplies: a chain of n such stages would be an expression of
 * k^n nodes (8 fused Elus never finished compiling). A producer whose inlined copies would pass this is computed
 * once into a buffer instead.
 */
const INLINE_MAX_NODES = 2048;

/** Nodes of `e` as the loop IR will hold it, with loads of inlined stages counted at their inlined size. */
function expressionSize(e: Expr, inlinedSize: ReadonlyMap<Tensor, number>): number {
  let n = 0;
  visitExpr(e, (x) => {
    n += x.k === 'load' ? (inlinedSize.get(x.buf as Tensor) ?? 1) : 1;
  });
  return n;
}

/** How many loads of each stage's tensor the stages' bodies hold. */
function readCounts(sch: Schedule): Map<Tensor, number> {
  const n = new Map<Tensor, number>();
  for (const o of sch.stages)
    visitExpr(o.tensor.body!, (e) => {
      if (e.k === 'load') n.set(e.buf as Tensor, (n.get(e.buf as Tensor) ?? 0) + 1);
    });
  return n;
}

const EXPENSIVE = new Set(['exp', 'log', 'erf', 'tanh', 'sin', 'cos', 'pow']);

/**
 * An elementwise producer computed once into a buffer rather than inlined: the operator asks for it (hint
 * `materialize`), or its body calls a transcendental and more than one stage reads it (softmax's exp(x - max),
 * read by the sum and by the output), so inlining would evaluate the transcendental once per reader.
 */
export function worthMaterializing(sch: Schedule, st: Stage): boolean {
  if (st.tensor.hints?.materialize) return true;
  let expensive = false;
  visitExpr(st.tensor.body!, (e) => {
    if ((e.k === 'un' || e.k === 'bin') && EXPENSIVE.has(e.op)) expensive = true;
  });
  if (!expensive) return false;
  const readers = sch.stages.filter((o) => {
    let reads = false;
    visitExpr(o.tensor.body!, (e) => {
      if (e.k === 'load' && e.buf === st.tensor) reads = true;
    });
    return reads;
  });
  return readers.length > 1;
}

/**
 * The operator's parallelAxis hint (ComputeHints): that spatial root moved in front of the roots before it and
 * split by the threads. Nothing when there is no hint or those roots are no longer plain leaves.
 */
function hintedParallelSteps(st: Stage, stage: number, leaves?: readonly string[]): TraceStep[] {
  const h = st.tensor.hints?.parallelAxis;
  const spatial = st.roots.filter((a) => !a.reduce);
  // (already outermost, where unrollNearLanes put it)
  if (h !== undefined && spatial[h] && leaves?.[0] === spatial[h].name)
    return [{ p: 'annotate', stage, axis: spatial[h].name, kind: 'parallel' }];
  if (h === undefined || !spatial[h] || spatial.slice(0, h + 1).some((a) => !st.leaves.includes(a))) return [];
  const name = spatial[h].name;
  return [
    ...(h > 0 ? [{ p: 'reorder' as const, stage, order: [name, ...spatial.slice(0, h).map((a) => a.name)] }] : []),
    { p: 'annotate', stage, axis: name, kind: 'parallel' },
  ];
}

/**
 * Threads on the operator's parallelAxis hint (hintedParallelSteps), else on loop `fallback`; then the operator's
 * unrollAxis hint: that spatial root, still a plain serial leaf not taken by the threads, annotated unrolled.
 * The default trace and the tuner's elementwise candidates end each stage with these.
 */
export function threadAndUnrollSteps(
  st: Stage,
  stage: number,
  fallback: string | undefined,
  vectorLeaves?: readonly string[],
): TraceStep[] {
  // (the loop order vectorizeSteps left, where it moved the unrolled axis near the lanes)
  const leaves = st.tensor.hints?.unrollNearLanes ? vectorLeaves : undefined;
  const hinted = hintedParallelSteps(st, stage, leaves);
  const steps: TraceStep[] = hinted.length
    ? hinted
    : fallback
      ? [{ p: 'annotate', stage, axis: fallback, kind: 'parallel' }]
      : [];
  const threaded = steps.find((s) => s.p === 'annotate')?.axis;
  const h = st.tensor.hints?.unrollAxis;
  const unroll = h === undefined ? undefined : st.roots.filter((a) => !a.reduce)[h];
  if (unroll && leaves?.includes(`${unroll.name}.i`)) {
    steps.push({ p: 'annotate', stage, axis: `${unroll.name}.i`, kind: 'unrolled' });
  } else if (unroll && st.leaves.includes(unroll) && unroll.kind === 'serial' && unroll.name !== threaded) {
    steps.push({ p: 'annotate', stage, axis: unroll.name, kind: 'unrolled' });
  }
  return steps;
}

/** The outermost serial spatial leaf with more than one iteration, if only unit loops are outside it. */
function parallelAxis(st: Stage): Axis | undefined {
  for (const a of st.leaves) {
    if (a.reduce || a.kind !== 'serial') return undefined;
    if (a.extent > 1) return a;
  }
  return undefined;
}

/**
 * Accumulator vectors of a default register tile. V8 (TurboFan, x64) spills beyond about 8 live accumulators plus
 * the operands: a 169x512x1000 MatMul ran at 40 GFLOP/s with 8, 24-27 GFLOP/s with 10-12 (CPU time, 1 thread).
 */
export const MAX_ACCUMULATORS = 8;

/**
 * The register tiles a CPU target's registers allow: float32 lanes per vector and accumulator vectors. WebAssembly
 * has 4 lanes and MAX_ACCUMULATORS; native x86-64 8 (AVX2) or 16 (AVX-512) lanes and more registers (16 or 32).
 */
export interface TileOptions {
  lanes: number;
  maxAccumulators: number;
  /** Vector registers: the most accumulators a tuned tile may try (a little spill can still pay). */
  registers: number;
}
export const WASM_TILES: TileOptions = { lanes: 4, maxAccumulators: MAX_ACCUMULATORS, registers: 16 };

/** The register tile of a float32 reduction: lanes along spatial axis `j`, `vj` vectors wide; `vi` rows of axis `i`. */
export interface RegisterTile {
  j: number;
  vj: number;
  i: number;
  vi: number;
  /** Spatial axes ending at `i` fused into the row axis (1: just `i`), from the operator's rowAxes hint. */
  rows: number;
  /** Spatial axes ending at `j` fused into the lane axis (1: just `j`), from the operator's laneAxes hint. */
  laneAxes: number;
  /** float32 lanes per vector: the target's, or fewer for a lane axis narrower than its vectors. */
  lanes: number;
}

/**
 * The default register tile of a float32 reduction (indices into its spatial axes; i = -1: no row axis), or
 * undefined when none applies. The operator's hints pick the lane and row axes, else the last two.
 */
export function registerTileShape(st: Stage, tiles: TileOptions = WASM_TILES): RegisterTile | undefined {
  let L = tiles.lanes;
  const r = st.reduction;
  const h = st.tensor.hints;
  if (!r || r.op === 'prod' || !(st.tensor.dtype === 'float32' || (st.tensor.dtype === 'int32' && h?.integerTile)))
    return undefined;
  const spatial = st.roots.filter((a) => !a.reduce);
  const jAt = h?.vectorAxis ?? spatial.length - 1;
  const iAt = h?.rowAxis ?? spatial.length - 2;
  // (never fusing the row axis into the lanes)
  let laneAxes = Math.max(1, Math.min(h?.laneAxes ?? 1, jAt + 1));
  while (laneAxes > 1 && iAt > jAt - laneAxes && iAt < jAt) laneAxes--;
  const j = spatial[jAt] && { extent: spatial.slice(jAt - laneAxes + 1, jAt + 1).reduce((p, a) => p * a.extent, 1) };
  // (a lane axis narrower than the target's vectors, 12 output channels on AVX-512: half-width vectors, not none)
  while (j && L > 4 && j.extent < L) L /= 2;
  if (!j || j.extent < L) return undefined;
  // rows over several axes fused into one (a 1x1 convolution's output rows and columns: one long row axis
  // instead of short ones with a partial tile at each row's end), when none of them is the lane axis
  const rows = iAt >= 0 && (h?.rowAxes ?? 1) > 1 && iAt - h!.rowAxes! + 1 > jAt ? h!.rowAxes! : 1;
  const i =
    iAt >= 0 && iAt !== jAt
      ? { extent: spatial.slice(iAt - rows + 1, iAt + 1).reduce((p, a) => p * a.extent, 1) }
      : undefined;
  // vectors per tile row: 2 or 3 when that divides the axis (2 x 4 rows fill the accumulator budget); otherwise
  // (7, 13, 28, 49 wide) full-width tiles, the last one shifted back to overlap its neighbour: 2 vectors wide
  // when that recomputes little (WIDE_TILE_WASTE), else the width with the fewest recomputed lanes
  // (4 when a pointwise convolution's fused rows cap the tile at 6 rows and the registers hold 24 accumulators)
  const widths = tiles.maxAccumulators >= 24 && ((h?.rowAxes ?? 1) > 1 || laneAxes > 1) ? [4, 3, 2] : [2, 3];
  const divides = j.extent % L === 0 ? widths.find((v) => (j.extent / L) % v === 0) : undefined;
  // (a depthwise convolution, lanes along its output row by hint, shares one weight across its whole tile: no gain)
  const wideGains = h?.vectorAxis === undefined;
  // (no rows to tile, a matrix-vector product or a batch-1 Gemm: each accumulator is one dependency chain through
  // the reduction, and two leave the FMA units waiting on latency; as many vectors as the registers allow, up to 8)
  const oneRow = !i || i.extent === 1;
  const widest = oneRow
    ? [8, 4].find(
        (v) =>
          v <= tiles.maxAccumulators &&
          L * v <= j.extent &&
          lanesComputed(j.extent, v, L) <= WIDE_TILE_WASTE * (j.extent / L),
      )
    : undefined;
  const vj =
    widest ??
    divides ??
    (wideGains && L * 2 <= j.extent && lanesComputed(j.extent, 2, L) <= WIDE_TILE_WASTE * (j.extent / L)
      ? 2
      : [2, 1]
          .filter((v) => L * v <= j.extent)
          .reduce((best, v) => (lanesComputed(j.extent, v, L) < lanesComputed(j.extent, best, L) ? v : best)));
  // rows: at most MAX_ACCUMULATORS accumulators
  let vi = 1;
  if (i) {
    const fits = [6, 5, 4, 3, 2].filter((v) => v * vj <= tiles.maxAccumulators && v <= i.extent);
    // the count that keeps the most accumulators busy on average (a divisor: all of them), a last partial tile
    // included (its extra rows are computed from clamped indices and dropped); ties to the smaller count
    const busy = (v: number) => i.extent / Math.ceil(i.extent / v);
    for (const v of [...fits].reverse()) if (busy(v) > busy(vi) + 1e-9) vi = v;
  }
  return { j: jAt, vj, i: i ? iAt : -1, vi, rows, laneAxes, lanes: L };
}

/**
 * Register tiling for a float32 reduction (matmul, conv, ...): one output axis runs in SIMD lanes, VJ vectors
 * wide, another VI rows deep (registerTileShape); the VI x VJ tile of accumulators stays in registers
 * (cacheWrite + unrolled/vectorized tile loops) while the reduction loops run around it.
 */
export function registerTileTrace(st: Stage, stage: number, tiles: TileOptions = WASM_TILES): TraceStep[] {
  const shape = registerTileShape(st, tiles);
  if (!shape) return [];
  const L = shape.lanes;
  const spatial = st.roots.filter((a) => !a.reduce),
    red = st.roots.filter((a) => a.reduce);
  const { vj, vi } = shape;
  const rowRoots = shape.i >= 0 ? spatial.slice(shape.i - shape.rows + 1, shape.i + 1) : [];
  const laneRoots = spatial.slice(shape.j - shape.laneAxes + 1, shape.j + 1);
  const steps: TraceStep[] = [];
  const fused = (roots: readonly Axis[]): { name: string; extent: number } | undefined => {
    let f: { name: string; extent: number } | undefined = roots[0];
    for (const a of roots.slice(1)) {
      steps.push({ p: 'fuse', stage, outer: f!.name, inner: a.name });
      f = { name: `${f!.name}*${a.name}`, extent: f!.extent * a.extent };
    }
    return f;
  };
  const i = fused(rowRoots),
    j = fused(laneRoots)!;
  steps.push(
    { p: 'split', stage, axis: j.name, factor: L * vj, ...(j.extent % (L * vj) ? { shiftTail: true } : {}) },
    { p: 'split', stage, axis: `${j.name}.i`, factor: L },
  );
  // tiles of j outside tiles of i: the operand read along j (a weight panel) stays in cache across i
  const order = [
    ...spatial.filter((a) => !rowRoots.includes(a) && !laneRoots.includes(a)).map((a) => a.name),
    `${j.name}.o`,
  ];
  const tile: string[] = [];
  // (or, by the operator's hint, tiles of i outside: the tiles sweep the output in memory order)
  const put = (name: string) =>
    st.tensor.hints?.rowTilesOuter ? order.splice(order.length - 1, 0, name) : order.push(name);
  if (i && vi > 1) {
    steps.push({ p: 'split', stage, axis: i.name, factor: vi });
    put(`${i.name}.o`);
    tile.push(`${i.name}.i`);
  } else if (i) {
    put(i.name);
  }
  order.push(...red.map((a) => a.name), ...tile, `${j.name}.i.o`, `${j.name}.i.i`);
  steps.push({ p: 'reorder', stage, order });
  for (const t of [...tile, `${j.name}.i.o`]) steps.push({ p: 'annotate', stage, axis: t, kind: 'unrolled' });
  steps.push({ p: 'annotate', stage, axis: `${j.name}.i.i`, kind: 'vectorized' }, { p: 'cacheWrite', stage });
  return steps;
}

/**
 * Whether a reduction reads rows that are contiguous along its innermost reduction axis and shares nothing across
 * its last spatial axis (a layernorm's or a reduce op's row sums): every value it reads per term is a different,
 * non-adjacent element for each position of that axis, so lanes along it would gather every element and reuse
 * nothing, while lanes along the row load vectors.
 */
function rowReduction(st: Stage): boolean {
  const r = st.reduction,
    reduceAxes = st.roots.filter((a) => a.reduce);
  const red = reduceAxes[reduceAxes.length - 1],
    lane = st.roots.filter((a) => !a.reduce).pop();
  if (!r || !red || !lane) return false;
  let rowContiguous = false,
    laneGathers = true;
  visitExpr(r.body, (e) => {
    if (e.k !== 'load') return;
    // (a load that no reduction axis moves, e.g. a row's mean, is read once per row either way)
    if (!reduceAxes.some((a) => e.idx.some((ix) => mentions(ix, a.v)))) return;
    const shape = (e.buf as Tensor).shape;
    const flat = (v: Var) =>
      e.idx.reduceRight<{ c: number | undefined; stride: number }>(
        ({ c, stride }, ix, d) => {
          const k = affineCoef(ix, v);
          return {
            c: c === undefined || k === undefined ? undefined : c + k * stride,
            stride: stride * Number(shape[d]),
          };
        },
        { c: 0, stride: 1 },
      ).c;
    if (flat(red.v) === 1) rowContiguous = true;
    const c = flat(lane.v);
    if (c === undefined || Math.abs(c) <= 1) laneGathers = false;
  });
  return rowContiguous && laneGathers;
}

/**
 * A reduction with no output axis to tile (a row's max or sum: softmax, layernorm, reduce ops, global pooling) runs
 * its innermost reduction axis in 4 SIMD lanes, each accumulating a partial result in a local vector; the lanes
 * are combined at the end. Float sums are reassociated (as every vectorizing compiler does under fast-math).
 */
export function laneReductionTrace(st: Stage, stage: number): TraceStep[] {
  const r = st.reduction;
  if (!r || !['sum', 'max', 'min'].includes(r.op) || st.tensor.dtype !== 'float32') return [];
  let nested = false;
  visitExpr(r.body, (e) => {
    if (e.k === 'reduce') nested = true;
  });
  const last = st.roots.filter((a) => a.reduce).pop();
  if (nested || !last || last.extent % 4 !== 0 || last.extent < 8) return [];
  // several partial vectors where the row allows (independent chains: one vector waits on the previous add's or
  // max's latency every iteration, 3 to 7 cycles for 4 elements)
  const vectors = REDUCTION_VECTORS.find((a) => last.extent % (4 * a) === 0 && last.extent >= 8 * a) ?? 1;
  return laneReductionSteps(stage, last.name, vectors);
}

/**
 * The steps of a lane reduction over reduction axis `axis`: 4 SIMD lanes, `vectors` partial vectors (an unrolled
 * loop over them), the loop over steps unrolled `unroll` deep (the tuner's lane space varies both).
 */
export function laneReductionSteps(stage: number, axis: string, vectors: number, unroll = 1): TraceStep[] {
  const steps: TraceStep[] = [{ p: 'split', stage, axis, factor: 4 * vectors }];
  if (vectors > 1)
    steps.push(
      { p: 'split', stage, axis: `${axis}.i`, factor: 4 },
      { p: 'annotate', stage, axis: `${axis}.i.o`, kind: 'unrolled' },
    );
  if (unroll > 1)
    steps.push(
      { p: 'split', stage, axis: `${axis}.o`, factor: unroll },
      { p: 'annotate', stage, axis: `${axis}.o.i`, kind: 'unrolled' },
    );
  steps.push(
    { p: 'annotate', stage, axis: vectors > 1 ? `${axis}.i.i` : `${axis}.i`, kind: 'vectorized' },
    { p: 'cacheWrite', stage },
  );
  return steps;
}
/** Partial vectors a row reduction accumulates in, the most the row's length allows first. */
const REDUCTION_VECTORS = [4, 2];

/**
 * How many more vectors than the axis needs a 2-vector-wide tile may compute (its last tile shifted back): a
 * tile 1 vector wide loads one operand value per row for every multiply-add, twice the loads of a 2-wide tile.
 */
const WIDE_TILE_WASTE = 1.15;

/** Vectors computed along an axis of `extent` elements in tiles of `vj` vectors (the last tile full width). */
const lanesComputed = (extent: number, vj: number, lanes: number) => Math.ceil(extent / (lanes * vj)) * vj;
