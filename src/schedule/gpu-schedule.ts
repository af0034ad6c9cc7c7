// The default GPU schedule (WebGPU / CUDA style), chosen from each stage's compute (never from op names):
//  - producers without reductions are inlined, as on the CPU;
//  - float32 sum reductions with enough work on two output axes that some input does not depend on (matmul,
//    gemm, batched matmul, convolutions) are tiled: a block tile of tileRows x tileCols outputs per workgroup, a
//    regRows x regCols register tile per thread (cacheWrite), the reduction in steps of tileK along its first axis
//    with each reused input staged in shared memory (cacheRead at that step, cooperative fetch, barriers) and the
//    kernel's elementwise output computed at the write-back (fuseEpilogue). Tiles shrink (tileK first) until the
//    shared buffers fit `sharedBytes`; a stage whose tile cannot fit stays on the simple schedule;
//  - other reductions that are long (>= treeMinReduce elements per output) with few outputs (<= treeMaxOutputs)
//    run as workgroup tree reductions (crossThreadReduce): one workgroup per output element;
//  - everything else runs one invocation (thread) per output element, or per four consecutive ones (vec4): a float32
//    stage without reductions whose innermost axis is a multiple of 4 long has it split by 4, the inner part a
//    'vectorized' loop that the WGSL backend emits as vec4 loads and one vec4 store where alignment is proved. Its
//    spatial axes are bound to the grid:
//    the innermost ones, up to `threads` elements, to the workgroup ('threadIdx.x'), possibly splitting one axis,
//    and all outer ones to the workgroup grid ('blockIdx.x'); reductions run serially in each invocation.
// Several loops bound to the same kind of tag form one row-major linearized index (an implicit fuse: the codegen
// decomposes the linear id).
//
// A kernel with several materialized stages (a reduction feeding another stage, e.g. softmax) runs as one
// dispatch per stage: the dispatch boundary is the global barrier, temporaries live in global memory.
import { Schedule, type Stage, type TraceStep } from './schedule.js';
import { type Expr, type Var, visitExpr } from '../tensor-expr/expr.js';
import type { Interval } from '../tensor-expr/simplify.js';
import { planSharedReads } from './lower.js';
import { BYTES } from '../runtime/dtype.js';
import { TARGET_CAPS } from '../codegen/common/target-caps.js';

/** The limits every WebGPU device guarantees: the default schedule fits them (CUDA's are wider). */
const WEBGPU_LIMITS = TARGET_CAPS.webgpu.gpu!;

export const GPU_THREADS = 64;

/**
 * The knobs of the default GPU schedule: the tuner's GPU search space samples them, the compiler uses the defaults.
 * Every field is optional; a missing field takes its default.
 */
export interface GpuScheduleOptions {
  /** Invocations per workgroup (threads per block) of the one-output-per-invocation schedule (default 64). */
  threads?: number;
  /** Outputs per workgroup along the tile's row axis (default 64). */
  tileRows?: number;
  /** Outputs per workgroup along the tile's column axis (default 64). */
  tileCols?: number;
  /** Rows of each thread's register tile (default 4); tileRows / regRows threads along rows. */
  regRows?: number;
  /** Columns of each thread's register tile (default 4); tileCols / regCols threads along columns. */
  regCols?: number;
  /** Most threads of a tiled workgroup (default 256: WebGPU's guaranteed limit, a common CUDA block). */
  maxThreads?: number;
  /** Reduction step staged in shared memory per iteration, along the first reduction axis (default 8). */
  tileK?: number;
  /** Shared memory one workgroup may use (default 16384: WebGPU's guaranteed maxComputeWorkgroupStorageSize). */
  sharedBytes?: number;
  /** Fewest outputs (of the two tiled axes, times the others) for a tiled schedule (default 2048). */
  minTileOutputs?: number;
  /** Fewest reduction elements per output for a tiled schedule (default 16). */
  minTileReduce?: number;
  /** Threads of a workgroup tree reduction (a power of two, default 64; fewer when the reduction is shorter). */
  treeThreads?: number;
  /** Fewest reduction elements per output for a tree reduction (default 64). */
  treeMinReduce?: number;
  /** Most outputs of a stage that gets tree reductions (one workgroup each; default 65536). */
  treeMaxOutputs?: number;
  /**
   * Four consecutive outputs per invocation in float32 stages without reductions whose innermost axis is a multiple
   * of 4 (default true; target 'cuda' turns it off: its codegen vectorizes copies only, other lanes run serially).
   */
  vec4?: boolean;
}

export function gpuTrace(sch: Schedule, opts: GpuScheduleOptions = {}): TraceStep[] {
  const threads = opts.threads ?? GPU_THREADS;
  const probe = new Schedule(sch.outputs);
  const steps: TraceStep[] = [];
  const add = (ss: TraceStep[]) => {
    for (const s of ss) {
      probe.apply(s);
      steps.push(s);
    }
  };
  // inline first: whether a reduction's consumer can become its write-back epilogue depends on what is inlined
  probe.stages.forEach((st, stage) => {
    if (!st.isOutput && !st.hasReduction() && !st.tensor.hints?.recurrence) add([{ p: 'computeInline', stage }]);
  });
  probe.stages.forEach((st, stage) => {
    if (st.inlined || st.fusedInto) return; // fusedInto: computed at another stage's write-back
    if (st.tensor.hints?.recurrence) {
      // one invocation per position of the outer axes, each running the innermost one in order
      add(simpleTrace(st, stage, threads, false, 1));
      return;
    }
    const tiled = tileTrace(probe, st, stage, opts);
    if (tiled) {
      add(tiled);
      if (probe.epilogueOf(st)) add([{ p: 'fuseEpilogue', stage }]);
      return;
    }
    const tree = treeTrace(st, stage, opts);
    if (tree) {
      add(tree);
      return;
    }
    add(simpleTrace(st, stage, threads, opts.vec4 ?? true));
  });
  return steps;
}

/**
 * One invocation per output element, or per four along the innermost axis (`vec4`); the innermost `serialInner`
 * axes stay loops inside each invocation.
 */
function simpleTrace(st: Stage, stage: number, threads: number, vec4: boolean, serialInner = 0): TraceStep[] {
  const steps: TraceStep[] = [];
  const spatial = st.roots
    .filter((a) => !a.reduce)
    .map((a) => ({ name: a.name, extent: a.extent }))
    .slice(0, st.roots.filter((a) => !a.reduce).length - serialInner);
  const last = spatial[spatial.length - 1];
  if (
    vec4 &&
    last &&
    last.extent >= 4 &&
    last.extent % 4 === 0 &&
    st.tensor.dtype === 'float32' &&
    !st.hasReduction()
  ) {
    steps.push(
      { p: 'split', stage, axis: last.name, factor: 4 },
      { p: 'annotate', stage, axis: `${last.name}.i`, kind: 'vectorized' },
    );
    spatial[spatial.length - 1] = { name: `${last.name}.o`, extent: last.extent / 4 };
  }
  let inWorkgroup = 1;
  let k = spatial.length - 1;
  // whole inner axes into the workgroup while they fit
  for (; k >= 0 && inWorkgroup * spatial[k].extent <= threads; k--) {
    steps.push({ p: 'annotate', stage, axis: spatial[k].name, kind: 'threadIdx.x' });
    inWorkgroup *= spatial[k].extent;
  }
  if (k < 0) return steps;
  // split the next axis so that the workgroup fills up; its outer part joins the grid
  const f = Math.floor(threads / inWorkgroup);
  let first = k;
  if (f > 1) {
    const a = spatial[k].name;
    steps.push(
      { p: 'split', stage, axis: a, factor: f },
      { p: 'annotate', stage, axis: `${a}.i`, kind: 'threadIdx.x' },
      { p: 'annotate', stage, axis: `${a}.o`, kind: 'blockIdx.x' },
    );
    first = k - 1;
  }
  for (let j = first; j >= 0; j--) steps.push({ p: 'annotate', stage, axis: spatial[j].name, kind: 'blockIdx.x' });
  return steps;
}

const pow2ceil = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const pow2floor = (n: number) => 2 ** Math.floor(Math.log2(Math.max(1, n)));

/** Root variables the loads of `t` in `e` index with. */
function indexVars(e: Expr, t: unknown): Set<Var> {
  const vs = new Set<Var>();
  visitExpr(e, (x) => {
    if (x.k === 'load' && x.buf === t)
      for (const i of x.idx)
        visitExpr(i, (y) => {
          if (y.k === 'var') vs.add(y);
        });
  });
  return vs;
}

/** Shared-memory tiling with register tiles for a float32 sum reduction, or undefined when it does not fit. */
function tileTrace(sch: Schedule, st: Stage, stage: number, opts: GpuScheduleOptions): TraceStep[] | undefined {
  const r = st.reduction;
  if (r?.op !== 'sum' || st.tensor.dtype !== 'float32') return undefined;
  const spatial = st.roots.filter((a) => !a.reduce),
    red = st.roots.filter((a) => a.reduce);
  const h = st.tensor.hints;
  const jAt = h?.vectorAxis ?? spatial.length - 1;
  const iAt =
    h?.rowAxis !== undefined && h.rowAxis !== jAt
      ? h.rowAxis
      : jAt === spatial.length - 1
        ? spatial.length - 2
        : spatial.length - 1;
  const j = spatial[jAt],
    i = spatial[iAt];
  if (!i || !j || i === j) return undefined;
  const outputs = spatial.reduce((n, a) => n * a.extent, 1),
    R = red.reduce((n, a) => n * a.extent, 1);
  if (i.extent * j.extent < 64 || outputs < (opts.minTileOutputs ?? 2048) || R < (opts.minTileReduce ?? 16))
    return undefined;
  // stage the inputs that are reused across the tile: those that do not depend on one of the two tiled axes
  const reads = st.readTensors();
  const cached = reads
    .map((t, k) => ({ k, vs: indexVars(r.body, t) }))
    .filter(({ vs }) => !vs.has(i.v) || !vs.has(j.v));
  if (!cached.some(({ vs }) => !vs.has(i.v)) || !cached.some(({ vs }) => !vs.has(j.v))) return undefined;
  const regRows = opts.regRows ?? 4,
    regCols = opts.regCols ?? 4;
  // threads per tile axis; a short axis gets just enough (its tile a multiple of the register tile, so that the
  // tile's start stays a multiple of it: packed weights index with floordiv/floormod by 4)
  let tI = Math.min(Math.floor((opts.tileRows ?? 64) / regRows), Math.ceil(i.extent / regRows));
  let tJ = Math.min(Math.floor((opts.tileCols ?? 64) / regCols), Math.ceil(j.extent / regCols));
  const maxThreads = opts.maxThreads ?? WEBGPU_LIMITS.maxThreadsPerBlock;
  while (tI * tJ > maxThreads) {
    if (tI >= tJ) tI = Math.ceil(tI / 2);
    else tJ = Math.ceil(tJ / 2);
  }
  const k0 = red[0];
  const budget = opts.sharedBytes ?? WEBGPU_LIMITS.maxSharedBytes;
  for (let kt = Math.min(opts.tileK ?? 8, pow2ceil(k0.extent)); kt >= 1; kt /= 2) {
    const steps: TraceStep[] = [
      { p: 'split', stage, axis: i.name, factor: tI * regRows },
      { p: 'split', stage, axis: `${i.name}.i`, factor: regRows },
      { p: 'split', stage, axis: j.name, factor: tJ * regCols },
      { p: 'split', stage, axis: `${j.name}.i`, factor: regCols },
      { p: 'split', stage, axis: k0.name, factor: kt },
    ];
    const others = spatial.filter((a) => a !== i && a !== j).map((a) => a.name);
    const blocks = [...others, `${i.name}.o`, `${j.name}.o`],
      thr = [`${i.name}.i.o`, `${j.name}.i.o`];
    const reds = [`${k0.name}.o`, `${k0.name}.i`, ...red.slice(1).map((a) => a.name)];
    steps.push({ p: 'reorder', stage, order: [...blocks, ...thr, ...reds, `${i.name}.i.i`, `${j.name}.i.i`] });
    for (const b of blocks) steps.push({ p: 'annotate', stage, axis: b, kind: 'blockIdx.x' });
    for (const t of thr) steps.push({ p: 'annotate', stage, axis: t, kind: 'threadIdx.x' });
    steps.push(
      { p: 'annotate', stage, axis: `${i.name}.i.i`, kind: 'unrolled' },
      { p: 'annotate', stage, axis: `${j.name}.i.i`, kind: 'unrolled' },
    );
    if (red.length === 1 && kt <= 16) steps.push({ p: 'annotate', stage, axis: `${k0.name}.i`, kind: 'unrolled' });
    steps.push({ p: 'cacheWrite', stage });
    for (const { k } of cached) steps.push({ p: 'cacheRead', stage, input: k, at: `${k0.name}.o` });
    if (sharedBytesOf(sch.outputs, stage, steps) <= budget) return steps;
  }
  return undefined;
}

/** Shared bytes the cacheRead steps of a candidate trace for `stage` need (bound inference on a probe). */
function sharedBytesOf(outputs: Schedule['outputs'], stage: number, steps: TraceStep[]): number {
  const probe = new Schedule(outputs);
  for (const s of steps) probe.apply(s);
  const st = probe.stages[stage];
  const ranges = new Map<Var, Interval>(st.leaves.map((l) => [l.v, { lo: 0, hi: l.extent - 1 }]));
  const { index } = probe.rootIndex(st);
  const bind = new Map<Var, Expr>(st.roots.map((a) => [a.v, index.get(a)!]));
  return planSharedReads(st, bind, { ranges }).buffers.reduce((n, b) => n + b.size * BYTES[b.dtype], 0);
}

/** Workgroup tree reductions for a stage with long reductions and few outputs. */
function treeTrace(st: Stage, stage: number, opts: GpuScheduleOptions): TraceStep[] | undefined {
  let R = 0;
  visitExpr(st.tensor.body!, (e) => {
    if (e.k === 'reduce')
      R = Math.max(
        R,
        e.axes.reduce((n, a) => n * a.extent, 1),
      );
  });
  const outputs = st.roots.filter((a) => !a.reduce).reduce((n, a) => n * a.extent, 1);
  if (R < (opts.treeMinReduce ?? 64) || outputs > (opts.treeMaxOutputs ?? 65536) || outputs === 0) return undefined;
  const T = Math.max(2, Math.min(pow2floor(opts.treeThreads ?? 64), pow2floor(R)));
  const steps: TraceStep[] = st.roots
    .filter((a) => !a.reduce)
    .map((a) => ({ p: 'annotate', stage, axis: a.name, kind: 'blockIdx.x' }));
  steps.push({ p: 'crossThreadReduce', stage, threads: T });
  return steps;
}
