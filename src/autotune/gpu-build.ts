// The builder's GPU half: a kernel + candidate trace -> a one-kernel program for WebGPU (WGSL, every kernel
// argument an input) or CUDA (PTX assembled by `ptxas -v` for the SM, then checked against the per-block limits
// before anything is measured: a candidate over them is an E_RESOURCES error, recorded, never launched).
import { KilnError } from '../runtime/errors.js';
import { staticShape } from '../relay-ir/types.js';
import type { FuncNode } from '../relay-ir/expr.js';
import type { TraceStep } from '../schedule/schedule.js';
import { buildWebGpuSection } from '../compiler/webgpu-program.js';
import { buildCudaSection, cudaKernel } from '../compiler/cuda-program.js';
import { type Stmt, kernelStages, visitStmt } from '../schedule/loop-ir.js';
import { buildProgram } from '../compiler/program.js';
import { VERSION } from '../compiler/version.js';
import type { CudaLaunch } from '../runtime/artifact-format.js';
import type { SmTarget } from '../codegen/ptx/codegen.js';
import { type EntryResources, runPtxas } from '../codegen/ptx/ptxas.js';
import { type BuildOutput, type BuiltHeader, type KernelSpec, kernelFromSpec, kernelMain } from './tasks.js';

export type GpuBuildTarget = { kind: 'webgpu' } | { kind: 'cuda'; sm: SmTarget };

/** Per-block limits of every SM Kiln targets (sm_80/86/90): CUDA C Programming Guide, compute capabilities table. */
export const CUDA_LIMITS = {
  threadsPerBlock: 1024,
  registersPerThread: 255,
  registersPerBlock: 65536,
  staticSharedBytes: 48 * 1024,
} as const;

/** The one-kernel program's inputs and output, as the runtime's header describes them. */
function ioHeader(main: FuncNode): Pick<BuiltHeader, 'inputs' | 'outputs'> {
  const out = main.body.type as { dtype: BuiltHeader['outputs'][number]['dtype'] } & Parameters<typeof staticShape>[0];
  return {
    inputs: main.params.map((p) => ({ name: p.name, dtype: p.type.dtype, shape: staticShape(p.type), offset: 0 })),
    outputs: [{ name: 'out0', dtype: out.dtype, shape: staticShape(out), offset: 0 }],
  };
}

export function buildWebGpuCandidate(spec: KernelSpec, trace: TraceStep[] | null): BuildOutput {
  const main = kernelMain(kernelFromSpec(spec));
  const { section: webgpu } = buildWebGpuSection(main, new Map(), ['out0'], {
    traceFor: trace ? () => trace : undefined,
  });
  const header: BuiltHeader = {
    kiln: VERSION,
    target: 'wasm',
    memoryBytes: 0,
    weightsAt: 0,
    ...ioHeader(main),
    kernels: [],
    calls: [],
    plan: { arenaBytes: 0, intermediateBytes: 0, weightBytes: 0 },
    webgpu,
  };
  return { header, wasm: new Uint8Array(0) };
}

/** Why a CUDA entry cannot run (or would spill), or undefined when it fits a block. */
export function cudaResourceProblem(r: EntryResources, launch: CudaLaunch): string | undefined {
  const threads = launch.block[0] * launch.block[1] * launch.block[2];
  const L = CUDA_LIMITS;
  const shared = Math.max(r.sharedBytes, launch.sharedBytes);
  if (threads > L.threadsPerBlock) return `${threads} threads per block (limit ${L.threadsPerBlock})`;
  if (r.registers > L.registersPerThread) return `${r.registers} registers per thread (limit ${L.registersPerThread})`;
  if (r.registers * threads > L.registersPerBlock)
    return `${r.registers} registers x ${threads} threads = ${r.registers * threads} per block (limit ${L.registersPerBlock})`;
  if (shared > L.staticSharedBytes) return `${shared} bytes of static shared memory (limit ${L.staticSharedBytes})`;
  if (r.spillStores || r.spillLoads) return `register spills (${r.spillStores} B stores, ${r.spillLoads} B loads)`;
  return undefined;
}

/**
 * Assembles `ptx` with `ptxas -v` for sm_`sm` and checks every launch against the block limits: E_RESOURCES when
 * one is over them (ptxas itself refuses some, e.g. too much shared data, and still reports the usage), E_INTERNAL
 * when ptxas rejects the PTX for another reason. Returns the resource usage per entry.
 */
export function checkCudaPtx(ptx: string, sm: SmTarget, launches: readonly CudaLaunch[]): EntryResources[] {
  const res = runPtxas(ptx, sm);
  const problems = launches
    .map((l) => {
      const r = res.resources.find((x) => x.entry === l.entry);
      const p = r ? cudaResourceProblem(r, l) : res.ok ? 'no ptxas -v resource line' : undefined;
      return p && `${l.entry}: ${p}`;
    })
    .filter((p): p is string => !!p);
  const tooMuch = res.errors
    .filter((e) => /uses too much|too many resources/i.test(e.message))
    .map((e) => e.message.replace(/^ptxas error\s*:\s*/, ''));
  const over = problems.length ? problems : tooMuch;
  if (over.length) throw new KilnError('E_RESOURCES', `over the sm_${sm} block limits: ${over.join('; ')}`);
  if (!res.ok)
    throw new KilnError(
      'E_INTERNAL',
      `ptxas -arch=sm_${sm} rejected the candidate: ${res.errors
        .map((e) => e.message)
        .join('; ')
        .slice(0, 300)}`,
    );
  return res.resources;
}

/** Threads per block of one launch: the product of its thread-bound loops (they nest: one linearized id). */
function blockThreads(s: Stmt): number {
  let n = 1;
  visitStmt(s, (x) => {
    if (x.k === 'for' && x.kind.startsWith('threadIdx')) n *= x.extent;
  });
  return n;
}

export function buildCudaCandidate(spec: KernelSpec, trace: TraceStep[] | null, sm: SmTarget): BuildOutput {
  const main = kernelMain(kernelFromSpec(spec));
  // the memory plan and call list of the one-kernel program (its WebAssembly is not measured: no optimizer)
  const prog = buildProgram(main, { optimize: false });
  // a block no SM can launch is refused before PTX is written (the PTX writer would stop at it)
  if (trace) {
    const { prim } = cudaKernel(prog.kernels[0], trace);
    const over = kernelStages(prim)
      .map(blockThreads)
      .filter((t) => t > CUDA_LIMITS.threadsPerBlock);
    if (over.length)
      throw new KilnError(
        'E_RESOURCES',
        `over the sm_${sm} block limits: ${over[0]} threads per block (limit ${CUDA_LIMITS.threadsPerBlock})`,
      );
  }
  const { section } = buildCudaSection(prog.kernels, sm, prog.header.memoryBytes, trace ? () => trace : undefined);
  const resources = checkCudaPtx(
    section.ptx,
    sm,
    section.kernels.flatMap((k) => k.launches),
  );
  return { header: { ...prog.header, cuda: section }, wasm: new Uint8Array(0), resources };
}

export function buildGpuCandidate(spec: KernelSpec, trace: TraceStep[] | null, target: GpuBuildTarget): BuildOutput {
  return target.kind === 'webgpu' ? buildWebGpuCandidate(spec, trace) : buildCudaCandidate(spec, trace, target.sm);
}
