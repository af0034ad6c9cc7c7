// The CUDA part of an artifact: every kernel of the program rescheduled for the GPU (the default GPU schedule of
// src/schedule/gpu-schedule.ts), lowered again and written as PTX with its launch metadata. Kernel order, call
// arguments and the memory plan are the program's own, so the runtime reuses the header's calls and offsets.
import type { ArtifactHeader, CudaSection } from '../runtime/artifact-format.js';
import type { TraceStep } from '../schedule/schedule.js';
import { type GpuScheduleOptions, gpuTrace } from '../schedule/gpu-schedule.js';
import type { PrimFunc } from '../schedule/loop-ir.js';
import { tempLayout } from './memory-plan.js';
import { type SmTarget, emitPtxModule } from '../codegen/ptx/codegen.js';
import { type BuiltKernel, reschedule } from './kernel.js';
import { launchRunIds } from './dynamic-kernel.js';

/** Threads per block of the default CUDA schedule. */
export const CUDA_BLOCK_THREADS = 256;
/**
 * The GPU schedule options of target 'cuda' (the tuner's default candidate is these). No vec4 elementwise lanes:
 * the PTX codegen vectorizes plain copies only, so four computed outputs would run serially in each thread.
 */
export const CUDA_SCHEDULE_OPTIONS: GpuScheduleOptions = { threads: CUDA_BLOCK_THREADS, vec4: false };

/**
 * A built kernel rescheduled for CUDA: under `trace` (a tuned GPU schedule) when given, else the default GPU
 * schedule (its temporaries may differ from the CPU schedule's).
 */
export function cudaKernel(k: BuiltKernel, trace?: readonly TraceStep[]): BuiltKernel {
  return trace
    ? { ...reschedule(k, trace), tuned: true }
    : reschedule(k, (sch) => gpuTrace(sch, CUDA_SCHEDULE_OPTIONS));
}

/** The loop IR of cudaKernel(k). */
export const gpuPrimFunc = (k: BuiltKernel): PrimFunc => cudaKernel(k).prim;

/**
 * `memoryBytes`: the program's memory plan; the GPU scratch region follows it. `traceFor`: tuned schedules.
 * Also gives the kernels as rescheduled, in the program's order.
 */
export function buildCudaSection(
  kernels: readonly BuiltKernel[],
  sm: SmTarget,
  memoryBytes: number,
  traceFor?: (def: BuiltKernel) => readonly TraceStep[] | undefined,
  symbols?: ArtifactHeader['symbols'],
): { section: CudaSection; kernels: BuiltKernel[] } {
  const gpuKernels = kernels.map((k) => cudaKernel(k, traceFor?.(k)));
  const prims = gpuKernels.map((k) => k.prim);
  const mod = emitPtxModule(prims, { sm });
  if (symbols) {
    // kernels for run-time sizes: the grid of each run from the symbols
    const names = symbols.map((s) => s.name);
    const counted = new Set(symbols.filter((s) => s.counted).map((s) => s.name));
    mod.kernels.forEach((k, i) => {
      if (!gpuKernels[i].runSizes) return;
      const symbolsBuf = prims[i].inputs[prims[i].inputs.length - 1];
      k.launches.forEach((l, s) => {
        const ids = launchRunIds(mod.bound[i][s], symbolsBuf, names, counted);
        if (ids) Object.assign(l, { runIds: ids }, mod.bound[i][s].foldedX ? { foldedX: true } : {});
      });
    });
  }
  const scratchAt = Math.ceil(memoryBytes / 256) * 256;
  const scratch = Math.max(0, ...prims.map((p) => tempLayout(p).bytes));
  return {
    section: {
      memoryBytes: scratchAt + scratch,
      scratchAt,
      sm: mod.sm,
      ptxVersion: mod.version,
      ptx: mod.ptx,
      kernels: mod.kernels,
    },
    kernels: gpuKernels,
  };
}
