// The native part of an artifact (target 'native'): the program's kernels, as scheduled for the CPU, written as one
// LLVM module whose exported entry makes every call of a run in order with the memory plan's offsets, compiled by
// LLVM's tools into a shared library. The header's memory plan, calls and bindings are the program's own.
import { readFileSync } from 'node:fs';
import type { NativeSection } from '../runtime/artifact-format.js';
import { type CpuOption, type CpuTarget, DEFAULT_CPU, cpuinfoFlags, resolveCpu } from '../codegen/native/cpu.js';
import { defaultTrace } from '../schedule/cpu-schedule.js';
import type { PrimFunc } from '../schedule/loop-ir.js';
import { Schedule, type TraceStep } from '../schedule/schedule.js';
import { type BuiltKernel, type NativeVariant, reschedule } from './kernel.js';
import { scratchLayout } from './memory-plan.js';
import { emitLlvmModule } from '../codegen/native/llvm-ir.js';
import { buildSharedLibrary } from '../codegen/native/toolchain.js';
import type { Program } from './program.js';
import { MIN_PARALLEL_WORK } from '../runtime/executor.js';

export const NATIVE_TRIPLE = 'x86_64-pc-linux-gnu';
export const NATIVE_DATALAYOUT = 'e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128';
export const NATIVE_ENTRY = 'kiln_run';
/** The entry of a program with control flow: one call at a time, made by the runtime's control program. */
export const NATIVE_CALL_ENTRY = 'kiln_call';

/**
 * The library's entries: one call at a time for a program with control flow (its control program makes them);
 * else the whole run, and beside it one call at a time for per-kernel timings.
 */
const nativeEntry = (program: Program): { entry: string; perCall: boolean; callEntry?: string } =>
  program.header.control
    ? { entry: NATIVE_CALL_ENTRY, perCall: true }
    : { entry: NATIVE_ENTRY, perCall: false, callEntry: NATIVE_CALL_ENTRY };

/** The compiling machine's /proc/cpuinfo flags (empty where there is none). */
export function hostCpuFlags(): Set<string> {
  try {
    return cpuinfoFlags(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return new Set();
  }
}

/**
 * A kernel as the native library runs it (ProgramOptions.nativeKernel): the schedule tuned for this CPU target
 * (`trace`, from the tuning database's native records), else the default one with register tiles as wide as the
 * target's vectors and as many as its registers hold. A WebAssembly-tuned schedule is not used: its tiles are
 * sized for 4 lanes.
 */
export function nativeKernel(k: BuiltKernel, target: CpuTarget, trace?: readonly TraceStep[]): NativeVariant {
  const r = reschedule(k, trace ?? nativeDefaultTrace(k, target));
  return { prim: r.prim, trace: r.trace };
}

/** A kernel built for target native as its native variant: that loop IR and schedule (kiln inspect, dumps). */
export const asNativeKernel = (k: BuiltKernel): BuiltKernel => ({
  ...k,
  prim: k.native!.prim,
  trace: [...k.native!.trace],
});

/** A kernel's default schedule on a CPU target (what tuning records as its default there). */
export function nativeDefaultTrace(k: Pick<BuiltKernel, 'output'>, target: CpuTarget): TraceStep[] {
  return defaultTrace(new Schedule([k.output]), target.tiles);
}

/** A kernel's native variant: the one the program was built with, else the default if its scratch fits the plan. */
function plannedNativeKernel(k: BuiltKernel, target: CpuTarget): PrimFunc {
  if (k.native) return k.native.prim;
  const r = nativeKernel(k, target).prim;
  return scratchLayout(r).bytes <= scratchLayout(k.prim).bytes ? r : k.prim;
}

/**
 * The LLVM IR of a program's native library for a CPU level (the level the program's native kernels were
 * scheduled for, where it was built with them).
 */
export function nativeModuleText(program: Program, cpu: CpuOption = DEFAULT_CPU): string {
  const target = resolveCpu(cpu, hostCpuFlags);
  return emitLlvmModule(
    program.kernels.map((k) => plannedNativeKernel(k, target)),
    program.header.calls,
    {
      triple: NATIVE_TRIPLE,
      dataLayout: NATIVE_DATALAYOUT,
      cpu: 'x86-64',
      features: target.llvmFeatures,
      ...nativeEntry(program),
      vectorMath: target.vectorMath,
      // as the WebAssembly executor decides (its default minParallelWork)
      splitWorth: program.header.kernels.map((k) => k.flops + k.bytes / 4 >= MIN_PARALLEL_WORK),
    },
  );
}

/** Builds the native section and its library for `program` (E_DEPENDENCY when LLVM is not installed). */
export function buildNativeSection(
  program: Program,
  cpu: CpuOption = DEFAULT_CPU,
): { section: NativeSection; library: Uint8Array } {
  const target = resolveCpu(cpu, hostCpuFlags);
  const ir = nativeModuleText(program, target.level);
  const { library, tools } = buildSharedLibrary(ir, { cpu: 'x86-64', features: target.llvmFeatures });
  return {
    section: {
      triple: NATIVE_TRIPLE,
      cpu: target.level,
      features: target.flags,
      entry: nativeEntry(program).entry,
      threads: true,
      ...(nativeEntry(program).perCall ? { perCall: true } : { callEntry: NATIVE_CALL_ENTRY }),
      llvm: tools.version,
    },
    library,
  };
}
