// The native part of an artifact (target 'native'): the program's kernels, as scheduled for the CPU, written as one
// LLVM module whose exported entry makes every call of a run in order with the memory plan's offsets, compiled by
// LLVM's tools into a shared library. The header's memory plan, calls and bindings are the program's own.
import { readFileSync } from 'node:fs';
import type { NativeSection } from '../runtime/artifact-format.js';
import { type CpuOption, type CpuTarget, cpuinfoFlags, resolveCpu } from '../codegen/native/cpu.js';
import { defaultTrace } from '../schedule/cpu-schedule.js';
import type { PrimFunc } from '../schedule/loop-ir.js';
import { type BuiltKernel, reschedule } from './kernel.js';
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

/** The library's entry: one call at a time for a program with control flow (its control program makes them). */
const nativeEntry = (program: Program): { entry: string; perCall: boolean } =>
  program.header.control ? { entry: NATIVE_CALL_ENTRY, perCall: true } : { entry: NATIVE_ENTRY, perCall: false };

/** The compiling machine's /proc/cpuinfo flags (empty where there is none). */
export function hostCpuFlags(): Set<string> {
  try {
    return cpuinfoFlags(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return new Set();
  }
}

/**
 * A kernel rescheduled for a CPU target: register tiles as wide as its vectors and as many as its registers hold.
 * The program's memory plan sized its scratch for the WebAssembly kernel, so the rescheduled one is used only when
 * it needs no more scratch (tiles live in registers: it does not); tuned kernels keep their schedule.
 */
export function nativeKernel(k: BuiltKernel, target: CpuTarget): PrimFunc {
  if (k.tuned) return k.prim;
  const r = reschedule(k, (sch) => defaultTrace(sch, target.tiles)).prim;
  return scratchLayout(r).bytes <= scratchLayout(k.prim).bytes ? r : k.prim;
}

/** The LLVM IR of a program's native library for a CPU level. */
export function nativeModuleText(program: Program, cpu: CpuOption = 'x86-64-v3'): string {
  const target = resolveCpu(cpu, hostCpuFlags);
  return emitLlvmModule(
    program.kernels.map((k) => nativeKernel(k, target)),
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
  cpu: CpuOption = 'x86-64-v3',
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
      ...(nativeEntry(program).perCall ? { perCall: true } : {}),
      llvm: tools.version,
    },
    library,
  };
}
