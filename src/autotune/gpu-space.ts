// The GPU search space of a kernel (targets webgpu and cuda): a candidate is a GpuScheduleOptions value, turned
// into a trace by the compiler's own gpuTrace; every knob may also be left to the compiler (COMPILER_DEFAULT), which
// the default candidate does for all of them, so it is the compiler's default schedule. Any knob the GPU schedule
// gains becomes searchable by adding one entry to GPU_KNOBS (its domain, derived from the kernel's stages and
// extents and the target's limits). The decisions live in one group named 'gpu' of a DecisionSpace, so sampling,
// mutation, the evolutionary search and the cost model are the ones the WebAssembly space uses.
import type { Schedule, TraceStep } from '../schedule/schedule.js';
import { type GpuScheduleOptions, gpuTrace } from '../schedule/gpu-schedule.js';
import { sizeOf } from '../runtime/tensor.js';
import { type Decisions, DecisionSpace, type Field, type StageSpace, type Value } from './space.js';

/** What the domains of a kernel's knobs are derived from. */
export interface GpuSpaceContext {
  /** The kernel's materialized stages (not inlined): their spatial and reduction extents, innermost last. */
  stages: { spatial: number[]; reduce: number[] }[];
  /** Most threads per workgroup/block the target allows (WebGPU: the device limit; CUDA: 1024). */
  maxThreads: number;
  /** Most shared (workgroup) memory per workgroup/block, bytes (WebGPU: the device limit; CUDA: 48 KiB static). */
  maxSharedBytes: number;
  /** The compiler's options for this target (e.g. CUDA's 256 threads per block); the default candidate. */
  base: GpuScheduleOptions;
}

/** The decision 'leave this knob to the compiler' (the option stays unset): the default candidate takes it for
 *  every knob, so it is the compiler's schedule whatever gpu-schedule.ts's defaults are or become. */
export const COMPILER_DEFAULT = -1;

/** A numeric field of GpuScheduleOptions: the values to search for a kernel (COMPILER_DEFAULT is always there). */
interface Knob {
  /** May depend on the knobs listed before it in `d` (COMPILER_DEFAULT there: their value is not known). */
  domain: (ctx: GpuSpaceContext, d: Readonly<Record<string, Value>>) => number[];
}
const known = (v: Value | undefined): v is number => typeof v === 'number' && v !== COMPILER_DEFAULT;

const pow2Between = (lo: number, hi: number) => {
  const r: number[] = [];
  for (let v = lo; v <= hi; v *= 2) r.push(v);
  return r;
};

/** Threads per workgroup: powers of two up to the target's limit (no more than the largest stage's outputs
 *  need), and the products of whole innermost axes that fit (a workgroup without a split axis). */
function threadDomain(ctx: GpuSpaceContext): number[] {
  const most = Math.max(1, ...ctx.stages.map((s) => sizeOf(s.spatial)));
  const cap = Math.min(ctx.maxThreads, Math.max(32, 2 ** Math.ceil(Math.log2(most))));
  const out = new Set(pow2Between(32, cap));
  for (const s of ctx.stages) {
    let p = 1;
    for (let k = s.spatial.length - 1; k >= 0; k--) {
      p *= s.spatial[k];
      if (p > ctx.maxThreads) break;
      if (p >= 16) out.add(p);
    }
  }
  return [...out];
}

/**
 * Every searchable field of GpuScheduleOptions, in decision order. A new numeric knob of the GPU schedule (tile
 * sizes, ...) is searched once it has an entry here; until then candidates leave it at the compiler's default.
 */
export const GPU_KNOBS: { readonly [K in keyof GpuScheduleOptions]?: Knob } = {
  threads: { domain: threadDomain },
  // shared-memory tiling of sum reductions (matmul, conv). Tiles over maxThreads threads or over sharedBytes of
  // shared memory are shrunk by the schedule itself, so no combination is invalid.
  tileRows: { domain: () => [16, 32, 64, 128] },
  tileCols: { domain: () => [16, 32, 64, 128] },
  regRows: { domain: (_, d) => [1, 2, 4, 8].filter((r) => !known(d.tileRows) || r <= d.tileRows) },
  regCols: { domain: (_, d) => [1, 2, 4, 8].filter((c) => !known(d.tileCols) || c <= d.tileCols) },
  tileK: { domain: () => [4, 8, 16, 32] },
  maxThreads: { domain: (ctx) => [64, 128, 256, 512, 1024].filter((t) => t <= ctx.maxThreads) },
  // a larger budget lets larger tiles keep their tileK (tiles shrink until their shared buffers fit)
  sharedBytes: { domain: (ctx) => [8192, 16384, 32768, 49152].filter((b) => b <= ctx.maxSharedBytes) },
  // workgroup tree reductions
  treeThreads: { domain: (ctx) => pow2Between(16, ctx.maxThreads) },
};

export interface GpuSpaceTarget {
  maxThreads: number;
  maxSharedBytes?: number;
  base?: GpuScheduleOptions;
}

export function gpuSpaceContext(sch: Schedule, target: GpuSpaceTarget): GpuSpaceContext {
  const stages = sch.stages
    .filter((st) => st.isOutput || st.hasReduction())
    .map((st) => ({
      spatial: st.roots.filter((a) => !a.reduce).map((a) => a.extent),
      reduce: st.roots.filter((a) => a.reduce).map((a) => a.extent),
    }));
  return {
    stages,
    maxThreads: target.maxThreads,
    maxSharedBytes: target.maxSharedBytes ?? 16384,
    base: target.base ?? {},
  };
}

/** The options a candidate's decisions stand for (the base options with the decided knobs). */
export function gpuOptions(d: Decisions, base: GpuScheduleOptions = {}): GpuScheduleOptions {
  const g = d.gpu ?? {};
  const out: Record<string, number> = { ...(base as Record<string, number>) };
  for (const name of Object.keys(GPU_KNOBS)) if (known(g[name])) out[name] = g[name] as number;
  return out as GpuScheduleOptions;
}

/** The GPU space of one kernel; `makeSchedule` gives a fresh schedule of the kernel's output. */
export class GpuSearchSpace extends DecisionSpace {
  readonly context: GpuSpaceContext;
  constructor(
    readonly makeSchedule: () => Schedule,
    target: GpuSpaceTarget,
  ) {
    const ctx = gpuSpaceContext(makeSchedule(), target);
    const knobs = Object.entries(GPU_KNOBS) as [string, Knob][];
    const defaults: Record<string, number> = Object.fromEntries(knobs.map(([name]) => [name, COMPILER_DEFAULT]));
    const traceOf = (d: Record<string, Value>) => gpuTrace(makeSchedule(), gpuOptions({ gpu: d }, ctx.base));
    // A knob none of whose values changes this kernel's trace (threads of a kernel whose stages are all tiled, tile
    // sizes of a kernel without a tiled stage, ...), next to the compiler's defaults or next to the largest values
    // of the others, is no decision. The others keep every value (one that is a no-op next to the defaults may
    // matter next to other decisions: a 128-row tile needs 8-row register tiles to fit 256 threads); candidates
    // that come out the same are measured once (the search dedups traces).
    const largest: Record<string, number> = {};
    for (const [name, k] of knobs) largest[name] = Math.max(COMPILER_DEFAULT, ...k.domain(ctx, largest));
    const fields: Field[] = [];
    for (const [name, k] of knobs) {
      const matters = [defaults, largest].some((at) => {
        const here = JSON.stringify(traceOf(at));
        return k.domain(ctx, at).some((v) => JSON.stringify(traceOf({ ...at, [name]: v })) !== here);
      });
      if (matters)
        fields.push({
          name,
          domain: (d) => ({ values: [COMPILER_DEFAULT, ...[...new Set(k.domain(ctx, d))].sort((a, b) => a - b)] }),
        });
    }
    const group: StageSpace = {
      stage: 'gpu',
      kind: 'gpu',
      fields,
      defaults: Object.fromEntries(fields.map((f) => [f.name, COMPILER_DEFAULT])),
      trace: (d): TraceStep[] => traceOf(d),
    };
    super([group]);
    this.context = ctx;
  }
}
