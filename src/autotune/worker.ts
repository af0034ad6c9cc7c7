// Worker-thread entry points (piscina): `build` turns a kernel + trace into a one-kernel WebAssembly program (or,
// with a GPU target, a WGSL or resource-checked PTX one: gpu-build.ts; with a native one, a shared library built
// by LLVM); `measure` runs a WebAssembly one with warm-up and repeats and returns its latencies and output, and
// in the native measuring process (native-child.ts) a native one (GPU programs are measured by their device's
// runners).
import v8 from 'node:v8';
import { buildProgram } from '../compiler/program.js';
import { WasmExecutor } from '../runtime/executor.js';
import { type Tensor, sizeOf } from '../runtime/tensor.js';
import { ARRAY, isFloat } from '../runtime/dtype.js';
import type { TraceStep } from '../schedule/schedule.js';
import { runShape } from '../runtime/run-sizes.js';
import { withDimRanges } from '../relay-ir/sym-dim.js';
import type { ArtifactHeader } from '../runtime/artifact-format.js';
import {
  type BuildOutput,
  type BuiltHeader,
  type KernelSpec,
  kernelFromSpec,
  kernelMain,
  specSymbols,
} from './tasks.js';
import { type GpuBuildTarget, buildGpuCandidate } from './gpu-build.js';
import { type CpuLevel, CPU_TARGETS } from '../codegen/native/cpu.js';
import { buildNativeSection, nativeKernel } from '../compiler/native-program.js';
import { type NativeHost, NativeExecutor } from '../runtime/native.js';

// Measure optimized code only: without this, a new module first runs V8's baseline (Liftoff) code and tiers up in
// the background, late and unpredictably when other threads (the builders' binaryen) keep the compiler busy. The
// flag is process-wide; it is set only in processes that load the tuner's worker module.
v8.setFlagsFromString('--no-liftoff');

/** Native candidates: code for this x86-64 level, built by LLVM. */
export type NativeBuildTarget = { kind: 'native'; cpu: CpuLevel };
/** Where a candidate runs when not on WebAssembly. */
export type BuildTarget = GpuBuildTarget | NativeBuildTarget;

export interface BuildTask {
  spec: KernelSpec;
  trace: TraceStep[] | null;
  optimize?: boolean;
  target?: BuildTarget;
}

export function build(task: BuildTask): BuildOutput {
  const target = task.target;
  if (target && target.kind !== 'native') return buildGpuCandidate(task.spec, task.trace, target);
  // a kernel for run-time sizes: built with the model's symbol table, so it is the kernel the model's program has
  // (its calls' types are inferred again under the ranges, as importAndOptimize inferred them)
  const symbols = specSymbols(task.spec);
  const fn = symbols ? withDimRanges(symbols.ranges, () => kernelFromSpec(task.spec)) : kernelFromSpec(task.spec);
  const trace = task.trace ?? undefined;
  if (target) {
    // the trace schedules the native kernel as compiling does with a native record (the WebAssembly module, never
    // run, keeps its default)
    const cpu = CPU_TARGETS[target.cpu];
    const prog = buildProgram(kernelMain(fn, symbols), {
      optimize: false,
      nativeKernel: (_, k) => nativeKernel(k, cpu, trace),
      ...(symbols && { symbols }),
    });
    const { section, library } = buildNativeSection(prog, cpu.level);
    return { header: { ...prog.header, native: section }, wasm: new Uint8Array(0), native: library };
  }
  const prog = buildProgram(kernelMain(fn, symbols), {
    optimize: task.optimize !== false,
    traceFor: trace && (() => trace),
    ...(symbols && { symbols }),
  });
  return { header: prog.header, wasm: prog.wasm };
}

export interface MeasureTask {
  header: BuiltHeader;
  wasm: Uint8Array;
  /** A native candidate's library (measured only where a NativeHost is given: the native measuring process). */
  native?: Uint8Array;
  /** Seed of the random inputs (the same for every candidate of a task). */
  seed: number;
  /** Warm-up runs (at least), and at least minWarmupMs of them: V8 first runs a new module's baseline (Liftoff)
   *  code and tiers up to optimized code in the background, so early runs are not steady state. */
  warmup: number;
  minWarmupMs?: number;
  repeats: number;
  /** Each repeat runs the kernel enough times to last at least this long (ms), and reports the mean. */
  minRepeatMs: number;
  /** Testing hook: 'trap' makes the run fail, 'hang' never returns, 'crash' kills the process (child processes only). */
  fault?: Fault;
  /** A program for run-time sizes: the symbols' values (header.symbols order) of each size one run goes through. */
  sizes?: number[][];
}
export interface MeasureOutput {
  /** Per repeat, the mean time of one run (with `sizes`: of one pass through all of them). */
  costs: number[];
  /** The first output (with `sizes`: its values at each size, one after another, flat). */
  output: Tensor;
  /** With `sizes`: per size, per repeat, the mean time at that size. */
  sizeCosts?: number[][];
}

/**
 * Deterministic random inputs: floats uniform in [-1, 1), integers and bools zero (valid indices). `symbols`: the
 * symbols' values of a program for run-time sizes; the inputs' shapes at them (the runtime's own runShape).
 */
export function randomInputs(header: BuiltHeader, seed: number, symbols?: Int32Array): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  let x = seed >>> 0;
  for (const inp of header.inputs) {
    const shape = symbols ? runShape(header as ArtifactHeader, inp, symbols) : [...inp.shape];
    const n = sizeOf(shape);
    const data = new ARRAY[inp.dtype](n);
    if (isFloat(inp.dtype)) {
      const f = data as Float32Array;
      for (let i = 0; i < n; i++) {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        f[i] = x / 2 ** 31 - 1;
      }
    }
    feeds[inp.name] = { dtype: inp.dtype, shape, data };
  }
  return feeds;
}

/** One run of a program: its summed kernel time, per size with `sizes`, and its first output (per size). */
interface Run {
  ms: number;
  sizeMs?: number[];
  outs: Tensor[];
}

/** A program to run: WebAssembly, or a native library with the host that opens it. */
export interface MeasuredProgram {
  header: BuiltHeader;
  wasm: Uint8Array;
  native?: Uint8Array;
}

/** The executor of a program: WebAssembly in this thread, or its native library on one thread. */
function executor(p: MeasuredProgram, host: NativeHost | undefined) {
  const header: ArtifactHeader = {
    ...p.header,
    sections: { wasm: { offset: 0, length: p.wasm.length }, weights: { offset: 0, length: 0 } },
  };
  if (!p.native) return WasmExecutor.createSync({ header, wasm: p.wasm, weights: new Uint8Array(0) });
  if (!host) throw new Error('a native candidate is measured in the native measuring process (ChildNativeRunner)');
  return NativeExecutor.create(header, new Uint8Array(0), p.native, host, 1);
}

/**
 * One program's runs: the summed kernel time of one run (the wall clock without kernel timings: a native run is
 * one call) and its outputs. With `sizes` one run goes through each size in turn (run() writes the symbols region
 * from the inputs' shapes).
 */
function runner(p: MeasuredProgram, seed: number, sizes?: number[][], host?: NativeHost): () => Run {
  const header = p.header;
  const ex = executor(p, host);
  const name = header.outputs[0].name;
  const runs = (sizes ?? [undefined]).map((values) => {
    const feeds = randomInputs(header, seed, values && Int32Array.from(values));
    return () => {
      const timings: { ms: number }[] = [];
      const t0 = performance.now();
      const out = ex.run(feeds, timings as never)[name];
      return { ms: timings.length ? timings.reduce((s, t) => s + t.ms, 0) : performance.now() - t0, out };
    };
  });
  return () => {
    const each = runs.map((r) => r());
    return {
      ms: each.reduce((s, e) => s + e.ms, 0),
      ...(sizes && { sizeMs: each.map((e) => e.ms) }),
      outs: each.map((e) => e.out),
    };
  };
}

/** The output of a run: the one output, or its values at each size one after another. */
function joinOutputs(outs: Tensor[]): Tensor {
  if (outs.length === 1) return outs[0];
  const n = outs.reduce((s, t) => s + t.data.length, 0);
  const data = new ARRAY[outs[0].dtype](n);
  let at = 0;
  for (const t of outs) {
    (data as Float32Array).set(t.data as Float32Array, at);
    at += t.data.length;
  }
  return { dtype: outs[0].dtype, shape: [n], data } as Tensor;
}

/** Per-repeat sums of runs: the mean time of a run, and per size with sizes. */
class RepeatTotals {
  readonly costs: number[] = [];
  readonly sizeCosts?: number[][];
  private total = 0;
  private perSize?: number[];
  constructor(sizes: number | undefined) {
    if (sizes !== undefined) {
      this.sizeCosts = Array.from({ length: sizes }, () => []);
      this.perSize = new Array(sizes).fill(0);
    }
  }
  add(r: Run): void {
    this.total += r.ms;
    r.sizeMs?.forEach((m, i) => {
      this.perSize![i] += m;
    });
  }
  /** Ends a repeat of `number` runs. */
  end(number: number): void {
    this.costs.push(this.total / number);
    this.sizeCosts?.forEach((c, i) => c.push(this.perSize![i] / number));
    this.total = 0;
    this.perSize?.fill(0);
  }
}

export type Fault = 'trap' | 'hang' | 'crash';

/** Test faults: a candidate that never finishes, one that traps, or one that kills its process (as a segfault). */
function injectFault(fault: Fault | undefined): void {
  if (fault === 'hang')
    for (;;) {
      /* a candidate that never finishes */
    }
  if (fault === 'trap') throw new Error('RuntimeError: unreachable (injected fault)');
  if (fault === 'crash') process.kill(process.pid, 'SIGSEGV');
}

/** `host`: how native candidates are opened (in the native measuring process). */
export function measure(task: MeasureTask, host?: NativeHost): MeasureOutput {
  injectFault(task.fault);
  const once = runner(task, task.seed, task.sizes, host);
  const first = once();
  let probe = first.ms;
  const w0 = performance.now(),
    minWarm = task.minWarmupMs ?? 100;
  for (let i = 1; i < task.warmup || (performance.now() - w0 < minWarm && performance.now() - w0 < 5000); i++)
    probe = once().ms;
  const number = Math.max(1, Math.min(1000, Math.ceil(task.minRepeatMs / Math.max(probe, 1e-3))));
  const totals = new RepeatTotals(task.sizes?.length);
  for (let r = 0; r < task.repeats; r++) {
    for (let k = 0; k < number; k++) totals.add(once());
    totals.end(number);
  }
  return {
    costs: totals.costs,
    output: joinOutputs(first.outs),
    ...(totals.sizeCosts && { sizeCosts: totals.sizeCosts }),
  };
}

/**
 * Several programs of one task measured interleaved, so that a change of machine load (other processes) between
 * moments weighs on all of them alike: each is warmed up, then `rounds` rounds each run every program (in an order
 * that rotates per round) for about minRepeatMs and record its mean per run. costs[p][r] is program p's cost in
 * round r: the costs of one round were taken within milliseconds of each other, so their ratios are comparable
 * across rounds and batches even when absolute times are not. A program that fails to load or traps is reported
 * as an error and left out of later rounds; the others go on.
 */
export interface MeasureSetTask {
  programs: (MeasuredProgram & { fault?: Fault })[];
  seed: number;
  warmup: number;
  minWarmupMs?: number;
  rounds: number;
  minRepeatMs: number;
  /** As MeasureTask.sizes (for every program). */
  sizes?: number[][];
}
export type MeasureSetOutput = (
  | { ok: true; costs: number[]; output: Tensor; sizeCosts?: number[][] }
  | { ok: false; error: string }
)[];

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 500);

export function measureSet(task: MeasureSetTask, host?: NativeHost): MeasureSetOutput {
  const n = task.programs.length;
  const res: MeasureSetOutput = new Array(n);
  const run: ((() => Run) | undefined)[] = new Array(n);
  const totals = task.programs.map(() => new RepeatTotals(task.sizes?.length));
  const probe: number[] = new Array(n).fill(0);
  const fail = (i: number, e: unknown) => {
    res[i] = { ok: false, error: errorText(e) };
    run[i] = undefined;
  };
  for (let i = 0; i < n; i++) {
    const p = task.programs[i];
    try {
      injectFault(p.fault);
      run[i] = runner(p, task.seed, task.sizes, host);
      const first = run[i]!();
      probe[i] = first.ms;
      res[i] = {
        ok: true,
        costs: totals[i].costs,
        output: joinOutputs(first.outs),
        ...(totals[i].sizeCosts && { sizeCosts: totals[i].sizeCosts }),
      };
    } catch (e) {
      fail(i, e);
    }
  }
  // warm-up, interleaved: at least `warmup` runs of each, and minWarmupMs (100 ms) of them all together
  const w0 = performance.now(),
    minWarm = task.minWarmupMs ?? 100;
  for (let k = 1; k < task.warmup || (performance.now() - w0 < minWarm && performance.now() - w0 < 5000); k++) {
    for (let i = 0; i < n; i++)
      if (run[i]) {
        try {
          probe[i] = run[i]!().ms;
        } catch (e) {
          fail(i, e);
        }
      }
    if (!run.some(Boolean)) break;
  }
  const number = probe.map((p) => Math.max(1, Math.min(1000, Math.ceil(task.minRepeatMs / Math.max(p, 1e-3)))));
  for (let r = 0; r < task.rounds; r++) {
    for (let j = 0; j < n; j++) {
      const i = (j + r) % n;
      if (!run[i]) continue;
      try {
        for (let k = 0; k < number[i]; k++) totals[i].add(run[i]!());
        totals[i].end(number[i]);
      } catch (e) {
        fail(i, e);
      }
    }
  }
  return res;
}
