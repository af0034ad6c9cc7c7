// The default GPU schedule (WebGPU / CUDA style): producers without reductions are inlined, as on the CPU; every
// materialized stage runs one invocation (thread) per output element. Its spatial axes are bound to the grid:
// the innermost ones, up to `threads` elements, to the workgroup ('threadIdx.x'), possibly splitting one axis,
// and all outer ones to the workgroup grid ('blockIdx.x'). Several loops bound to the same kind of tag form one
// row-major linearized index (an implicit fuse: the codegen decomposes the linear id). Reductions run serially
// inside the invocation that owns the output element; workgroup tree reductions and shared-memory tiling are
// later schedules (the loop IR has shared buffers and barriers for them).
//
// A kernel with several materialized stages (a reduction feeding another stage, e.g. softmax) runs as one
// dispatch per stage: the dispatch boundary is the global barrier, temporaries live in global memory.
import type { Schedule, TraceStep } from './schedule.js';

export const GPU_THREADS = 64;

/**
 * The knobs of the default GPU schedule: the tuner's GPU search space samples them, the compiler uses the defaults.
 * Every field is optional; a missing field takes its default.
 */
export interface GpuScheduleOptions {
  /** Invocations per workgroup (threads per block) of the one-output-per-invocation schedule. */
  threads?: number;
}

export function gpuTrace(sch: Schedule, opts: GpuScheduleOptions = {}): TraceStep[] {
  const threads = opts.threads ?? GPU_THREADS;
  const steps: TraceStep[] = [];
  sch.stages.forEach((st, stage) => {
    if (!st.isOutput && !st.hasReduction()) { steps.push({ p: 'computeInline', stage }); return; }
    const spatial = st.roots.filter((a) => !a.reduce);
    let inWorkgroup = 1;
    let k = spatial.length - 1;
    // whole inner axes into the workgroup while they fit
    for (; k >= 0 && inWorkgroup * spatial[k].extent <= threads; k--) {
      steps.push({ p: 'annotate', stage, axis: spatial[k].name, kind: 'threadIdx.x' });
      inWorkgroup *= spatial[k].extent;
    }
    if (k < 0) return;
    // split the next axis so that the workgroup fills up; its outer part joins the grid
    const f = Math.floor(threads / inWorkgroup);
    let first = k;
    if (f > 1) {
      const a = spatial[k].name;
      steps.push({ p: 'split', stage, axis: a, factor: f },
        { p: 'annotate', stage, axis: `${a}.i`, kind: 'threadIdx.x' },
        { p: 'annotate', stage, axis: `${a}.o`, kind: 'blockIdx.x' });
      first = k - 1;
    }
    for (let j = first; j >= 0; j--) steps.push({ p: 'annotate', stage, axis: spatial[j].name, kind: 'blockIdx.x' });
  });
  return steps;
}
