// The GPU search space of a kernel (targets webgpu and cuda): a candidate is a GpuScheduleOptions value, turned
// into a trace by the compiler's own gpuTrace, so the default candidate is the compiler's default schedule and any
// knob the GPU schedule gains becomes searchable by adding one entry to GPU_KNOBS (its domain, derived from the
// kernel's stages and extents). The decisions live in one group named 'gpu' of a DecisionSpace, so sampling,
// mutation, the evolutionary search and the cost model are the ones the WebAssembly space uses.
import { Schedule, type TraceStep } from '../schedule/schedule.js';
import { type GpuScheduleOptions, GPU_THREADS, gpuTrace } from '../schedule/gpu-schedule.js';
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

/** A numeric field of GpuScheduleOptions: its value in the compiler's default, and its domain for a kernel. */
interface Knob {
  default: (ctx: GpuSpaceContext) => number;
  /** Values to search (the default is always added). May depend on the knobs listed before it. */
  domain: (ctx: GpuSpaceContext, d: Readonly<Record<string, Value>>) => number[];
}

const pow2Between = (lo: number, hi: number) => { const r: number[] = []; for (let v = lo; v <= hi; v *= 2) r.push(v); return r; };

/** Threads per workgroup: powers of two up to the target's limit (no more than the largest stage's outputs
 *  need), and the products of whole innermost axes that fit (a workgroup without a split axis). */
function threadDomain(ctx: GpuSpaceContext): number[] {
  const most = Math.max(1, ...ctx.stages.map((s) => s.spatial.reduce((a, b) => a * b, 1)));
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
  threads: { default: (ctx) => ctx.base.threads ?? GPU_THREADS, domain: threadDomain },
  // shared-memory tiling of sum reductions (matmul, conv); the defaults are gpu-schedule.ts's (a test checks that
  // the default candidate emits the compiler's own code). Tiles over maxThreads threads or over sharedBytes of
  // shared memory are shrunk by the schedule itself, so no combination is invalid.
  tileRows: { default: (ctx) => ctx.base.tileRows ?? 64, domain: () => [16, 32, 64, 128] },
  tileCols: { default: (ctx) => ctx.base.tileCols ?? 64, domain: () => [16, 32, 64, 128] },
  regRows: { default: (ctx) => ctx.base.regRows ?? 4, domain: (_, d) => [1, 2, 4, 8].filter((r) => r <= (d.tileRows as number)) },
  regCols: { default: (ctx) => ctx.base.regCols ?? 4, domain: (_, d) => [1, 2, 4, 8].filter((c) => c <= (d.tileCols as number)) },
  tileK: { default: (ctx) => ctx.base.tileK ?? 16, domain: () => [4, 8, 16, 32] },
  maxThreads: { default: (ctx) => ctx.base.maxThreads ?? 256, domain: (ctx) => [64, 128, 256, 512, 1024].filter((t) => t <= ctx.maxThreads) },
  // a larger budget lets larger tiles keep their tileK (tiles shrink until their shared buffers fit)
  sharedBytes: { default: (ctx) => ctx.base.sharedBytes ?? 16384, domain: (ctx) => [8192, 16384, 32768, 49152].filter((b) => b <= ctx.maxSharedBytes) },
  // workgroup tree reductions
  treeThreads: { default: (ctx) => ctx.base.treeThreads ?? 64, domain: (ctx) => pow2Between(16, ctx.maxThreads) },
};

export interface GpuSpaceTarget { maxThreads: number; maxSharedBytes?: number; base?: GpuScheduleOptions }

export function gpuSpaceContext(sch: Schedule, target: GpuSpaceTarget): GpuSpaceContext {
  const stages = sch.stages.filter((st) => st.isOutput || st.hasReduction()).map((st) => ({
    spatial: st.roots.filter((a) => !a.reduce).map((a) => a.extent),
    reduce: st.roots.filter((a) => a.reduce).map((a) => a.extent),
  }));
  return { stages, maxThreads: target.maxThreads, maxSharedBytes: target.maxSharedBytes ?? 16384, base: target.base ?? {} };
}

/** The options a candidate's decisions stand for (the base options with the decided knobs). */
export function gpuOptions(d: Decisions, base: GpuScheduleOptions = {}): GpuScheduleOptions {
  const g = d.gpu ?? {};
  const out: Record<string, number> = { ...(base as Record<string, number>) };
  for (const name of Object.keys(GPU_KNOBS)) if (typeof g[name] === 'number') out[name] = g[name] as number;
  return out as GpuScheduleOptions;
}

/** The GPU space of one kernel; `makeSchedule` gives a fresh schedule of the kernel's output. */
export class GpuSearchSpace extends DecisionSpace {
  readonly context: GpuSpaceContext;
  constructor(readonly makeSchedule: () => Schedule, target: GpuSpaceTarget) {
    const ctx = gpuSpaceContext(makeSchedule(), target);
    const knobs = Object.entries(GPU_KNOBS) as [string, Knob][];
    const defaults: Record<string, number> = Object.fromEntries(knobs.map(([name, k]) => [name, k.default(ctx)]));
    const traceOf = (d: Record<string, Value>) => gpuTrace(makeSchedule(), gpuOptions({ gpu: d }, ctx.base));
    // Values that change nothing for this kernel (threads beyond its outputs, tile sizes of a kernel without a
    // tiled stage, ...) are dropped, judged with the other knobs at their defaults; a knob left with one value is
    // no decision at all.
    const fields: Field[] = [];
    for (const [name, k] of knobs) {
      const seen = new Set<string>([JSON.stringify(traceOf(defaults))]);
      const effective = new Set<number>([defaults[name]]);
      for (const v of k.domain(ctx, defaults)) {
        const t = JSON.stringify(traceOf({ ...defaults, [name]: v }));
        if (!seen.has(t)) { seen.add(t); effective.add(v); }
      }
      if (effective.size < 2) continue;
      const before = fields.map((f) => f.name);
      fields.push({
        name,
        domain: (d) => {
          const vs = k.domain(ctx, d).filter((v) => effective.has(v));
          // the default stays reachable from the default candidate (whatever its domain function says)
          if (!vs.includes(defaults[name]) && before.every((n) => d[n] === defaults[n])) vs.push(defaults[name]);
          return { values: vs.length ? vs.sort((a, b) => a - b) : [defaults[name]] };
        },
      });
    }
    const group: StageSpace = {
      stage: 'gpu', kind: 'gpu', fields, defaults: Object.fromEntries(fields.map((f) => [f.name, defaults[f.name]])),
      trace: (d): TraceStep[] => traceOf(d),
    };
    super([group]);
    this.context = ctx;
  }
}
