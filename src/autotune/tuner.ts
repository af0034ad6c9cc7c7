// The tuning job over a model: its distinct kernels become tasks; the default schedule of each is measured first
// (the reference latency and the reference output); then batches of candidates go to the task where the expected
// end-to-end gain is largest (calls x best latency, discounted while a task stops improving), are built in the
// pool, measured, checked against the reference output and recorded, each in its own transaction.
// Relative timing: the machine's load drifts (other processes: kernels run up to 2x slower for minutes), so a
// candidate timed alone in a quiet moment looks faster than the default timed in a busy one. Each batch therefore
// measures the default schedule interleaved with the candidates (rounds of ABC..., worker.ts measureSet) and records
// each candidate's cost relative to it (rel); search and task scheduling rank by rel (times the default's median over
// the run where a time is needed). A candidate that beats the incumbent (the default, or the best so far) is measured
// again, interleaved against the incumbent for more rounds, before it is recorded as confirmed, the state compiling
// applies (database.ts best()); one that fails keeps its relative measurement and is not applied.
// Records already in the database for this target are loaded first, so a stopped job resumes where it was.
// Targets: 'wasm' (Node's WebAssembly engine), 'webgpu' (the candidates' WGSL dispatches on the process's WebGPU
// device: Dawn in Node), 'cuda' (PTX assembled by ptxas and resource-checked before it is measured on a GPU;
// `buildOnly` records the checks without a GPU), 'native' (the kernels for an x86-64 level, built by LLVM in the
// pool and measured on one thread in a child process: native-child.ts). GPU tasks search GpuScheduleOptions
// (gpu-space.ts); native tasks the CPU space with the level's vector width and registers.
// Run-time sizes (a model tuned with ranges, `dims: { batch: [1, 16] }`, WebAssembly only): the tasks are the kernels
// for run-time sizes a compile with the same ranges builds, keyed with the ranges (workload.ts); every measurement
// runs a program at a few sizes drawn from the ranges and its cost per round combines its times there (sizes.ts),
// so the relative timing and the confirmations above work on that combined cost unchanged.
import { KilnError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { compareTensors } from '../conformance/compare.js';
import { type CompileOptions, fuseForTarget, importAndOptimize } from '../compiler/compile.js';
import { resolveWebGpuLimits } from '../codegen/common/webgpu-profile.js';
import { VERSION } from '../compiler/version.js';
import { DEFAULT_DB_PATH, type ErrorKind, type TuningRecord, TuningDatabase, traceHash } from './database.js';
import {
  type GpuTargetInfo,
  type TargetInfo,
  cpuModel,
  cudaTarget,
  detectTarget,
  nativeTarget,
  webgpuTarget,
} from './target.js';
import { CPU_TARGETS, type CpuOption, type CpuTarget, DEFAULT_CPU, resolveCpu } from '../codegen/native/cpu.js';
import { hostCpuFlags, nativeDefaultTrace } from '../compiler/native-program.js';
import { requireLlvm } from '../codegen/native/toolchain.js';
import type { BuiltKernel } from '../compiler/kernel.js';
import { type Decisions, SearchSpace } from './space.js';
import type { BuildTarget, MeasuredProgram } from './worker.js';
import { type TuneTask, extractTasks } from './tasks.js';
import { GpuSearchSpace } from './gpu-space.js';
import type { GpuBuildTarget } from './gpu-build.js';
import { ChildWebGpuRunner, CudaRunner, noCudaDevice } from './gpu-runner.js';
import { CUDA_SCHEDULE_OPTIONS } from '../compiler/cuda-program.js';
import type { SmTarget } from '../codegen/ptx/codegen.js';
import type { GpuScheduleOptions } from '../schedule/gpu-schedule.js';
import { Schedule } from '../schedule/schedule.js';
import { type Candidate, type Strategy, TaskSearch } from './search.js';
import { type Builder, type Runner, ChildNativeRunner, LocalBuilder, PoolBuilder, PoolRunner } from './measure.js';
import type { BuildOutput } from './tasks.js';
import type { TraceStep } from '../schedule/schedule.js';
import { median } from '../util/stats.js';
import type { FuncNode } from '../relay-ir/expr.js';
import { type DimRanges, withDimRanges } from '../relay-ir/sym-dim.js';
import { symbolTable } from '../compiler/program.js';
import type { SymbolTable } from '../compiler/dynamic-kernel.js';
import { type MeasuredSizes, combineSizeCosts, measuredSizes, sizeScales } from './sizes.js';

export type TuneTarget = 'wasm' | 'webgpu' | 'cuda' | 'native';

export interface TuneOptions {
  /** Where candidates are measured (default 'wasm'). */
  target?: TuneTarget;
  /** For target 'cuda': the SM the PTX is assembled for (default 80). */
  sm?: SmTarget;
  /** For target 'native': the x86-64 level the kernels are compiled for (default x86-64-v3, as compiling). */
  cpu?: CpuOption;
  /** For target 'cuda': build and resource-check candidates with ptxas, record the results, measure nothing. */
  buildOnly?: boolean;
  /** Traces built and measured before the search proposes any (a schedule from elsewhere, a test's candidate). */
  seedTraces?: TraceStep[][];
  /** Total candidate measurements in this run (the default schedules measured first are not counted). */
  trials: number;
  timeBudgetMs?: number;
  /** Builder threads (0: build in this thread). */
  workers?: number;
  /** Database path (default tuning-db/kiln.sqlite) or an open database. */
  db?: string | TuningDatabase;
  seed?: number;
  strategy?: Strategy;
  /** Candidates per batch (built in parallel, then measured one by one). */
  batch?: number;
  warmup?: number;
  /** Measurement rounds of a batch (each runs the default and every candidate once, interleaved). */
  repeats?: number;
  /** Rounds of the side-by-side re-measure that confirms a candidate beating the incumbent (default max(6, 2 x repeats)). */
  confirmRounds?: number;
  /** How much faster than the incumbent, side by side, a candidate must be to be confirmed (default 0.02: 2%, in the
   *  median over rounds; it must also be faster in at least 3 of 4 rounds). */
  confirmMargin?: number;
  minRepeatMs?: number;
  /** Per-candidate measurement timeout (ms). */
  timeoutMs?: number;
  compile?: Pick<CompileOptions, 'inputShapes' | 'dims' | 'specialize' | 'modelPath' | 'webgpuLimits'>;
  /**
   * Sizes of the model's symbolic dims, as compiling takes them (merged over `compile.dims`): a range `[lo, hi]`
   * tunes the kernels for run-time sizes that a compile with the same ranges builds (target 'wasm'), each
   * candidate timed at sizes drawn from the ranges (sizes.ts); their records apply to that compile only.
   */
  dims?: CompileOptions['dims'];
  /** Only these task indices (testing, narrowing). */
  onlyTasks?: number[];
  builder?: Builder;
  runner?: Runner;
  progress?: (p: TuneProgress) => void;
}

export interface TaskReport {
  index: number;
  workload: string;
  ops: string[];
  calls: number;
  /** The default schedule's median over the run's batches. */
  defaultMs?: number;
  /** The incumbent's relative cost times defaultMs (at the end: the side-by-side ratio of the last re-measure). */
  bestMs?: number;
  /** The incumbent's trace, when a candidate was confirmed faster than the default. */
  bestTrace?: TraceStep[];
  /** Candidates re-measured against the incumbent, and how many of them were confirmed. */
  confirms?: number;
  confirmed?: number;
  /** Confirmed traces that measured no faster than the default in the end-of-run check, and lost their confirmation. */
  revoked?: number;
  trials: number;
  errors: number;
  /** Measurements found in the database at start. */
  resumed: number;
  skipped?: string;
}

export interface TuneProgress {
  trials: number;
  totalTrials: number;
  errors: number;
  elapsedMs: number;
  etaMs: number;
  task: TaskReport;
  /** Every tuned task's report (best so far per task). */
  tasks: TaskReport[];
  /** Sum over tasks of calls x latency: default schedules vs best so far. */
  defaultTotalMs: number;
  bestTotalMs: number;
}

export interface TuneReport {
  target: TargetInfo;
  /** A model with run-time sizes: the sizes its kernels were measured at, with their weights. */
  sizes?: { values: Record<string, number>; weight: number; label: string }[];
  tasks: TaskReport[];
  trials: number;
  errors: number;
  elapsedMs: number;
  defaultTotalMs: number;
  bestTotalMs: number;
  /** Estimated model kernel time (sum of calls x best latency) after each trial. */
  curve: { trial: number; elapsedMs: number; bestTotalMs: number }[];
}

/** The compiler's GPU schedule options per target (webgpu-program.ts uses gpuTrace's defaults): the default
 *  candidate of the GPU space. test/autotune-gpu.test.ts checks it emits the compiler's own WGSL and PTX. */
export const gpuBaseOptions = (target: 'webgpu' | 'cuda'): GpuScheduleOptions =>
  target === 'cuda' ? CUDA_SCHEDULE_OPTIONS : {};

/** Confirmed traces per task that the end-of-run check may revoke (each costs a side-by-side measurement). */
const MAX_REVOKED = 3;

/** The schedule compiling would apply now: the default, or the last candidate confirmed faster side by side. */
interface Incumbent {
  trace: TraceStep[];
  hash: string;
  rel: number;
  program?: BuildOutput;
  isDefault: boolean;
}
interface TaskState {
  task: TuneTask;
  search: TaskSearch;
  report: TaskReport;
  reference?: Tensor;
  stale: number;
  exhausted: boolean;
  seed: number;
  defaultTrace: TraceStep[];
  /** The default schedule built once (every batch measures it). */
  refProgram?: BuildOutput;
  /** The default's median in each batch: their median is the task's long-run time. */
  refMs: number[];
  inc: Incumbent;
  /** A kernel for run-time sizes: the sizes each run goes through, their weights and (once measured) scales. */
  sizes?: MeasuredSizes;
}
/** One program's measurement in a batch: rel is its cost relative to the batch's first program (the reference). */
type Measured =
  | { ms: number; costs: number[]; output: Tensor; rel?: number; ratios?: number[] }
  | { error: string; errorKind: ErrorKind };
type MeasuredOk = Extract<Measured, { ms: number }>;
/** What a candidate (or the default) gave: a time, an error, or neither (built only); `program` when it can be confirmed. */
interface Outcome {
  ms?: number;
  costs?: number[];
  output?: Tensor;
  error?: string;
  errorKind?: ErrorKind;
  rel?: number;
  program?: BuildOutput;
}
type Proposal = { trace: TraceStep[]; hash: string; decisions?: Candidate['decisions'] };
/** A candidate of a batch that measured faster than the incumbent by its rel: the confirmation re-measures it. */
interface Contender {
  c: Proposal;
  rel: number;
  program: BuildOutput;
}

/**
 * The target's description, runner and GPU build target (or CPU level); E_NO_DEVICE for CUDA without a driver
 * unless buildOnly; for native, E_DEPENDENCY without LLVM or koffi, E_UNSUPPORTED for a level this CPU cannot run.
 */
async function openTarget(opts: TuneOptions): Promise<{
  target: TargetInfo;
  limits?: GpuTargetInfo;
  gpu?: GpuBuildTarget;
  native?: CpuTarget;
  runner?: Runner;
}> {
  const kind = opts.target ?? 'wasm';
  if (kind === 'wasm') return { target: detectTarget() };
  if (kind === 'native') {
    if (opts.buildOnly)
      throw new KilnError('E_INPUT', 'build-only tuning is for target cuda', { hint: 'leave out --build-only' });
    const cpu = resolveCpu(opts.cpu ?? DEFAULT_CPU, hostCpuFlags);
    const missing = cpu.flags.filter((f) => !hostCpuFlags().has(f));
    if (missing.length)
      throw new KilnError(
        'E_UNSUPPORTED',
        `tuning for ${cpu.level} measures its code on this CPU, which lacks ${missing.join(', ')}`,
        { hint: 'tune on a machine of that level, or for a level this CPU has (--cpu native)' },
      );
    const llvm = requireLlvm();
    // the measuring process opens libraries through koffi: fail here, not on every candidate
    await (await import('../node/native-library.js')).openNativeHost();
    return {
      target: nativeTarget(cpu, cpuModel(), String(llvm.version)),
      native: cpu,
      runner: opts.runner ?? new ChildNativeRunner(),
    };
  }
  if (kind === 'webgpu') {
    // the key from this process's adapter; candidates run on the same adapter in a child process
    const { nodeGpuAdapter } = await import('../conformance/node-webgpu.js');
    const target = webgpuTarget(await nodeGpuAdapter(), 'Dawn (npm webgpu)');
    return { target, limits: target, gpu: { kind: 'webgpu' }, runner: opts.runner ?? new ChildWebGpuRunner() };
  }
  if (kind !== 'cuda')
    throw new KilnError('E_INPUT', `unknown tuning target '${kind}'`, { hint: 'use wasm, webgpu, cuda or native' });
  const sm = opts.sm ?? 80;
  let runner: CudaRunner | undefined;
  if (!opts.runner) {
    try {
      runner = await CudaRunner.open();
    } catch (e) {
      if (!opts.buildOnly) throw noCudaDevice(e);
    }
  }
  const target = cudaTarget(sm, runner && { name: runner.device.name });
  if (opts.buildOnly) await runner?.close();
  return {
    target,
    limits: target,
    gpu: { kind: 'cuda', sm },
    runner: opts.buildOnly ? undefined : (opts.runner ?? runner),
  };
}

/**
 * Tunes a model's kernels: each task's default schedule measured first (resuming what the database holds), given
 * traces, then batches of search candidates where the expected gain is largest, then the end-of-run check of
 * every incumbent against the default. See TuningJob for the steps.
 */
export async function tune(modelBytes: Uint8Array, opts: TuneOptions): Promise<TuneReport> {
  const job = await TuningJob.open(modelBytes, opts);
  try {
    await job.prepareTasks();
    await job.runGivenTraces();
    await job.searchLoop();
    await job.finalCheck();
  } finally {
    await job.close();
  }
  return job.report();
}

/** One tuning run: its settings, resources (database, builder, runner), the per-task states and the counters. */
class TuningJob {
  /** Tasks that were measured and take part in the search (skipped ones have no state). */
  readonly states: TaskState[] = [];
  /** The reports of skipped tasks (their reason in `skipped`). */
  readonly skipped = new Map<TuneTask, TaskReport>();
  trials = 0;
  errors = 0;
  readonly curve: TuneReport['curve'] = [];
  readonly seed: number;
  readonly strategy: Strategy;
  readonly buildOnly: boolean;
  readonly batch: number;
  readonly measureOpts: { warmup: number; repeats: number; minRepeatMs: number };
  readonly confirmRounds: number;
  readonly confirmMargin: number;
  readonly timeoutMs: number;
  readonly deadline: number;

  private constructor(
    readonly opts: TuneOptions,
    readonly t0: number,
    readonly target: TargetInfo,
    /** What the builder builds: GPU programs, native libraries, or (undefined) WebAssembly. */
    readonly build: BuildTarget | undefined,
    readonly tasks: TuneTask[],
    readonly db: TuningDatabase,
    readonly ownDb: boolean,
    readonly builder: Builder,
    readonly runner: Runner | undefined,
    readonly symbols?: SymbolTable,
    /** The sizes every kernel for run-time sizes is measured at (each task keeps its own scales). */
    readonly sizes?: Omit<MeasuredSizes, 'scales'>,
  ) {
    const kind = opts.target ?? 'wasm';
    this.seed = opts.seed ?? 0;
    this.strategy = opts.strategy ?? 'evolutionary';
    this.buildOnly = kind === 'cuda' && !!opts.buildOnly;
    const workers = opts.workers ?? 2;
    this.batch = Math.max(1, opts.batch ?? Math.max(4, 2 * workers));
    this.measureOpts = { warmup: opts.warmup ?? 2, repeats: opts.repeats ?? 5, minRepeatMs: opts.minRepeatMs ?? 5 };
    this.confirmRounds = Math.max(1, opts.confirmRounds ?? Math.max(6, 2 * this.measureOpts.repeats));
    this.confirmMargin = opts.confirmMargin ?? 0.02;
    // WebGPU's time includes compiling the candidate's pipeline (SwiftShader: seconds for large unrolled tiles)
    this.timeoutMs = opts.timeoutMs ?? (kind === 'webgpu' ? 60_000 : 20_000);
    this.deadline = opts.timeBudgetMs !== undefined ? t0 + opts.timeBudgetMs : Infinity;
  }

  /** The model's tasks on the target, the database, the builder and the runner. */
  static async open(modelBytes: Uint8Array, opts: TuneOptions): Promise<TuningJob> {
    const t0 = performance.now();
    const compileOpts = opts.dims ? { ...opts.compile, dims: { ...opts.compile?.dims, ...opts.dims } } : opts.compile;
    // the graph passes of `kiln compile` for this target (Winograd on CPU targets, weights packed by the vector width)
    const { graph, dimRanges } = importAndOptimize(modelBytes, {
      ...compileOpts,
      target: opts.target ?? 'wasm',
      ...(opts.target === 'native' && { cpu: opts.cpu ?? DEFAULT_CPU }),
    });
    const buildOnly = (opts.target ?? 'wasm') === 'cuda' && !!opts.buildOnly;
    // the kernels `kiln compile` makes for this target (WebGPU: within the limits profile's bindings)
    const webgpuLimits = opts.target === 'webgpu' ? resolveWebGpuLimits(opts.compile?.webgpuLimits) : undefined;
    // as compileGraph fuses, and the symbols of run-time sizes as its program has them (kernels read their values
    // in this order, so it is part of their workloads)
    const fused = withDimRanges(dimRanges, () => fuseForTarget(graph, webgpuLimits).fused);
    const symbols = programSymbols(fused, dimRanges, opts.target ?? 'wasm');
    const { target, limits, gpu, native, runner: deviceRunner } = await openTarget(opts);
    const base = gpu ? gpuBaseOptions(gpu.kind) : {};
    const gpuSpace =
      gpu &&
      limits &&
      ((k: BuiltKernel) =>
        new GpuSearchSpace(() => new Schedule([k.output]), {
          // what the adapter allows and, for WebGPU, the limits profile the artifact is compiled to
          maxThreads: Math.min(limits.maxThreads, webgpuLimits?.maxComputeInvocationsPerWorkgroup ?? Infinity),
          maxSharedBytes: Math.min(limits.maxSharedBytes, webgpuLimits?.maxComputeWorkgroupStorageSize ?? Infinity),
          base,
        }));
    // native kernels: the CPU space with the level's vector width and registers
    const nativeSpace = native && ((k: BuiltKernel) => new SearchSpace(() => new Schedule([k.output]), native.tiles));
    let tasks = extractTasks(fused, gpuSpace || nativeSpace, symbols, !gpu);
    if (opts.onlyTasks) tasks = tasks.filter((t) => opts.onlyTasks!.includes(t.index));
    const ownDb = !(opts.db instanceof TuningDatabase);
    const db = opts.db instanceof TuningDatabase ? opts.db : TuningDatabase.open(opts.db ?? DEFAULT_DB_PATH);
    const workers = opts.workers ?? 2;
    const builder = opts.builder ?? (workers > 0 ? new PoolBuilder(workers) : new LocalBuilder());
    const runner = opts.runner ?? deviceRunner ?? (buildOnly ? undefined : new PoolRunner());
    const sizes = symbols && measuredSizes(symbols, opts.seed ?? 0);
    const build: BuildTarget | undefined = gpu ?? (native && { kind: 'native', cpu: native.level });
    return new TuningJob(opts, t0, target, build, tasks, db, ownDb, builder, runner, symbols, sizes);
  }

  /**
   * The trace compiling gives a task's kernel when no record applies (null-trace builds): the GPU space's default
   * candidate, the native default for the level's registers (nativeKernel), or the WebAssembly default.
   */
  private defaultTraceOf(task: TuneTask, defaults: Decisions | undefined): TraceStep[] {
    const b = this.build;
    if (b?.kind === 'native') return nativeDefaultTrace(task.kernel, CPU_TARGETS[b.cpu]);
    return b && defaults ? task.space.trace(defaults) : task.kernel.trace;
  }

  /** Closes what this job opened (not a builder, runner or database the caller passed). */
  async close(): Promise<void> {
    if (!this.opts.builder) await this.builder.close();
    if (!this.opts.runner) await this.runner?.close();
    if (this.ownDb) this.db.close();
  }

  // ---- 1. the tasks: resume from the database, measure each default schedule ----

  /** Resume + reference measurement of each task's default schedule; the tasks that can be tuned get a state. */
  async prepareTasks(): Promise<void> {
    for (const task of this.tasks) {
      const st = await this.prepareTask(task);
      if (st) this.states.push(st);
    }
  }

  /** A task's state, its default measured and its records resumed; undefined when it is skipped. */
  private async prepareTask(task: TuneTask): Promise<TaskState | undefined> {
    const report: TaskReport = {
      index: task.index,
      workload: task.workload.key,
      ops: task.ops,
      calls: task.calls,
      trials: 0,
      errors: 0,
      resumed: 0,
    };
    const search = new TaskSearch(task.space, task.kernel, task.workload.key, {
      strategy: this.strategy,
      seed: this.seed,
    });
    const defaults = task.space.defaults();
    const defaultTrace = this.defaultTraceOf(task, defaults);
    const defaultHash = traceHash(defaultTrace);
    const st: TaskState = {
      task,
      search,
      report,
      stale: 0,
      exhausted: false,
      seed: (this.seed * 7919 + task.index + 1) >>> 0,
      defaultTrace,
      refMs: [],
      inc: { trace: defaultTrace, hash: defaultHash, rel: 1, isDefault: true },
      ...(task.spec.symbols && this.sizes && { sizes: { ...this.sizes } }),
    };
    this.skipped.set(task, report); // (until it gets a state)
    if (!task.space.tunable) {
      report.skipped = 'no schedule decisions';
      return undefined;
    }
    if (task.kernel.output.dtype !== 'float32') {
      report.skipped = `output ${task.kernel.output.dtype}`;
      return undefined;
    }
    const resumedInc = this.resume(st);
    const def = await this.measureDefault(st);
    if (def.error) {
      report.skipped = `default schedule failed: ${def.error}`;
      this.record(st, defaultTrace, def, 'default');
      return undefined;
    }
    st.reference = def.output;
    this.record(st, defaultTrace, def, this.buildOnly ? 'default/build-only' : 'default', defaults, true);
    search.observe(
      { hash: defaultHash, trace: defaultTrace, decisions: defaults },
      def.ms !== undefined ? 1 : undefined,
    );
    if (resumedInc) st.inc = resumedInc;
    this.estimate(st);
    this.skipped.delete(task);
    return st;
  }

  /**
   * Tells the search the task's records in the database; returns the best confirmed one that still applies (the
   * incumbent to resume with). Relative costs as they are; records of a Kiln before relative timing (ms only)
   * relative to the median of their default records, or not ranked at all without one.
   */
  private resume(st: TaskState): Incumbent | undefined {
    const { task, search, report } = st;
    const defaultHash = st.inc.hash;
    const old = this.db.records(task.workload.key, this.target.key);
    const legacyDefault = median(
      old.filter((r) => r.search === 'default' && r.rel === undefined && r.ms !== undefined).map((r) => r.ms!),
    );
    let resumedInc: Incumbent | undefined;
    for (const r of old) {
      const hash = traceHash(r.trace);
      const value = r.error
        ? undefined
        : (r.rel ?? (r.ms !== undefined && Number.isFinite(legacyDefault) ? r.ms / legacyDefault : undefined));
      search.observe({ hash, trace: r.trace, decisions: r.decisions }, value);
      report.resumed++;
      if (
        r.confirmed &&
        r.rel !== undefined &&
        hash !== defaultHash &&
        r.rel < (resumedInc?.rel ?? 1) &&
        applies(task, r.trace)
      ) {
        resumedInc = { trace: r.trace, hash, rel: r.rel, isDefault: false };
      }
    }
    return resumedInc;
  }

  /** Measures the default schedule alone: the reference output, its first time, and the default record. */
  private async measureDefault(st: TaskState): Promise<Outcome> {
    const [b] = await this.builder.build(st.task.spec, [null], this.build);
    if (!b.ok) return { error: b.error, errorKind: b.kind ?? 'build' };
    st.refProgram = b.out;
    if (!this.runner) return { costs: [] };
    const [m] = await this.measureGroup(st, [b.out], this.measureOpts.repeats);
    if (!('ms' in m)) return m;
    st.refMs.push(m.ms);
    return { ...m, rel: 1 };
  }

  /** The given traces (opts.seedTraces) first, each recorded like a candidate of every task it applies to. */
  async runGivenTraces(): Promise<void> {
    for (const trace of this.opts.seedTraces ?? []) {
      for (const st of this.states) {
        if (this.trials >= this.opts.trials) break;
        if (!applies(st.task, trace)) continue; // not this task's
        await this.runBatch(st, [{ trace, hash: traceHash(trace) }], () =>
          this.buildOnly ? 'given/build-only' : 'given',
        );
      }
    }
    this.curve.push({ trial: 0, elapsedMs: performance.now() - this.t0, bestTotalMs: this.totals().b });
  }

  // ---- 2. the search: batches where the expected gain is largest ----

  /** Batches of candidates, each to the task where the expected gain is largest, until the trials or the time run out. */
  async searchLoop(): Promise<void> {
    const { opts } = this;
    const firstPass = new Set(this.states.map((s) => s.task.index));
    while (this.trials < opts.trials && performance.now() < this.deadline) {
      const live = this.states.filter((s) => !s.exhausted);
      if (!live.length) break;
      // every task once first; build-only has no latencies to weigh: tasks take turns
      const pick =
        live.find((s) => firstPass.has(s.task.index)) ??
        live.reduce((a, b) =>
          this.buildOnly ? (b.report.trials < a.report.trials ? b : a) : gain(b) > gain(a) ? b : a,
        );
      firstPass.delete(pick.task.index);
      const n = Math.min(this.batch, opts.trials - this.trials);
      const cands = pick.search.propose(n);
      if (!cands.length) {
        pick.exhausted = true;
        continue;
      }
      const trials0 = this.trials;
      const improved = await this.runBatch(
        pick,
        cands,
        (i) =>
          `${this.strategy === 'random' ? 'random' : `evolutionary/${cands[i].origin}`}${this.buildOnly ? '/build-only' : ''}`,
      );
      for (let t = trials0 + 1; t <= this.trials; t++)
        this.curve.push({ trial: t, elapsedMs: performance.now() - this.t0, bestTotalMs: this.totals().b });
      pick.stale = improved ? 0 : pick.stale + 1;
      this.reportProgress(pick);
    }
  }

  private reportProgress(pick: TaskState): void {
    const { opts } = this;
    const elapsed = performance.now() - this.t0;
    const { d, b } = this.totals();
    const etaTrials = (elapsed / Math.max(this.trials, 1)) * (opts.trials - this.trials);
    opts.progress?.({
      trials: this.trials,
      totalTrials: opts.trials,
      errors: this.errors,
      elapsedMs: elapsed,
      etaMs: Math.min(etaTrials, Math.max(0, this.deadline - performance.now())),
      task: pick.report,
      tasks: this.states.map((s) => s.report),
      defaultTotalMs: d,
      bestTotalMs: b,
    });
  }

  /** A batch of one task: measured, recorded, told to the search, the best confirmed. Returns whether the incumbent changed. */
  private async runBatch(st: TaskState, cands: Proposal[], label: (i: number) => string): Promise<boolean> {
    const results = await this.evaluate(st, cands);
    const faster: Contender[] = [];
    cands.forEach((c, i) => {
      const r = results[i];
      this.trials++;
      st.report.trials++;
      if (r.error) {
        this.errors++;
        st.report.errors++;
      }
      this.record(st, c.trace, r, label(i), c.decisions, false);
      st.search.observe(c, r.error ? undefined : (r.rel ?? r.ms));
      if (r.rel !== undefined && r.program && !r.error) faster.push({ c, rel: r.rel, program: r.program });
    });
    const changed = this.runner && !this.buildOnly ? await this.confirm(st, faster) : false;
    this.estimate(st);
    return changed;
  }

  /** Builds and measures candidate traces of one task interleaved with its default schedule. */
  private async evaluate(st: TaskState, cands: { trace: TraceStep[] }[]): Promise<Outcome[]> {
    const { runner } = this;
    const needRef = !st.refProgram;
    const built = await this.builder.build(
      st.task.spec,
      [...(needRef ? [null] : []), ...cands.map((c) => c.trace)],
      this.build,
    );
    if (needRef) {
      const b = built.shift()!;
      if (!b.ok)
        throw new KilnError('E_INTERNAL', `the default schedule of task ${st.task.index} no longer builds: ${b.error}`);
      st.refProgram = b.out;
    }
    const results: Outcome[] = [];
    const ok: number[] = [];
    built.forEach((b, i) => {
      if (!b.ok) results[i] = { error: b.error, errorKind: b.kind ?? 'build' };
      else if (!runner)
        results[i] = { costs: [] }; // build-only: it passed the checks
      else ok.push(i);
    });
    if (!runner || !ok.length) return results;
    const m = await this.measureGroup(
      st,
      [st.refProgram!, ...ok.map((i) => (built[i] as { out: BuildOutput }).out)],
      this.measureOpts.repeats,
    );
    const ref = m[0];
    if ('ms' in ref) st.refMs.push(ref.ms);
    const longRun = median(st.refMs);
    ok.forEach((i, j) => {
      const r = m[j + 1];
      if (!('ms' in r)) {
        results[i] = r;
        return;
      }
      if (st.reference) {
        const bad = compareTensors(r.output, st.reference);
        if (bad) {
          results[i] = { error: `wrong result: ${bad.message}`, errorKind: 'wrong' };
          return;
        }
      }
      // without a reference time in this batch (it failed), the candidate's own time against the run's median
      const rel = r.rel ?? (Number.isFinite(longRun) ? r.ms / longRun : undefined);
      results[i] = { ms: r.ms, costs: r.costs, output: r.output, rel, program: (built[i] as { out: BuildOutput }).out };
    });
    return results;
  }

  /**
   * Candidates of a batch that beat the incumbent by their rel are measured again side by side with it (best rel
   * first, at most two per batch; longer rounds than a batch's); one that is faster by more than the margin, and in
   * at least 3 of 4 rounds, becomes the incumbent and is recorded as confirmed. Returns whether the incumbent changed.
   */
  private async confirm(st: TaskState, cands: Contender[]): Promise<boolean> {
    let changed = false,
      tries = 0;
    for (const x of [...cands].sort(
      (a, b) => a.rel - b.rel || (a.c.hash < b.c.hash ? -1 : a.c.hash > b.c.hash ? 1 : 0),
    )) {
      if (tries >= 2 || x.rel >= st.inc.rel) break;
      tries++;
      // an incumbent that no longer builds gives way to the default
      if (!(await this.incumbentProgram(st))) st.inc = defaultIncumbent(st);
      // rounds of 4x the batch's length (20 ms by default): each round's ratio averages more runs
      const [, m] = await this.measureGroup(
        st,
        [st.inc.program!, x.program],
        this.confirmRounds,
        3,
        4 * this.measureOpts.minRepeatMs,
      );
      st.report.confirms = (st.report.confirms ?? 0) + 1;
      if (!('ms' in m) || m.rel === undefined) continue;
      // faster by the margin in the median, and faster in at least 3 of 4 rounds (with 4 rounds or more): a
      // candidate as fast as the incumbent passes the median alone by chance on a noisy machine, and many are tried
      const below = (m.ratios ?? []).filter((r) => r < 1).length,
        n = m.ratios?.length ?? 0;
      const rel = st.inc.rel * m.rel,
        ok = m.rel < 1 - this.confirmMargin && (n < 4 || below >= 0.75 * n);
      this.record(st, x.c.trace, { ms: m.ms, costs: m.costs, rel }, 'confirm', x.c.decisions, ok);
      st.search.observe(x.c, rel);
      if (ok) {
        st.inc = { trace: x.c.trace, hash: x.c.hash, rel, program: x.program, isDefault: false };
        st.report.confirmed = (st.report.confirmed ?? 0) + 1;
        changed = true;
      }
    }
    if (changed) this.estimate(st);
    return changed;
  }

  /** The incumbent built (a resumed one has no program yet); undefined when it no longer builds. */
  private async incumbentProgram(st: TaskState): Promise<BuildOutput | undefined> {
    if (!st.inc.program) {
      const [b] = await this.builder.build(st.task.spec, [st.inc.trace], this.build);
      if (b.ok) st.inc.program = b.out;
    }
    return st.inc.program;
  }

  // ---- 3. the end-of-run check ----

  /**
   * Default and incumbent measured again side by side, for the report and as a last check: confirmations chain
   * (each beat the one before), so small errors can add up to an incumbent no faster than the default. Such an
   * incumbent loses its confirmation, and the next confirmed trace compiling would apply gets the same check (at
   * most MAX_REVOKED per task).
   */
  async finalCheck(): Promise<void> {
    if (!this.runner || this.buildOnly) return;
    for (const st of this.states) await this.finalCheckTask(st);
  }

  private async finalCheckTask(st: TaskState): Promise<void> {
    const { db, target } = this;
    for (let revoked = 0; !st.inc.isDefault && revoked <= MAX_REVOKED; revoked++) {
      const incumbent = await this.incumbentProgram(st);
      if (!incumbent) break;
      const [def, tuned] = await this.measureGroup(
        st,
        [st.refProgram!, incumbent],
        this.confirmRounds,
        3,
        4 * this.measureOpts.minRepeatMs,
      );
      if ('ms' in def) {
        st.refMs.push(def.ms);
        this.record(st, st.defaultTrace, def, 'default', st.task.space.defaults(), true);
      }
      this.estimate(st);
      if (!('ms' in tuned) || tuned.rel === undefined) break;
      this.record(st, st.inc.trace, tuned, 'remeasure', undefined, false);
      if (tuned.rel < 1 || revoked === MAX_REVOKED) {
        st.report.bestMs = st.report.defaultMs! * tuned.rel;
        break;
      }
      db.revokeConfirmation(st.task.workload.key, target.key, st.inc.hash);
      st.report.revoked = (st.report.revoked ?? 0) + 1;
      const [next] = db.best(st.task.workload.key, target.key, 1, [VERSION]);
      const hash = next && traceHash(next.trace);
      st.inc =
        next && hash !== traceHash(st.defaultTrace) && next.rel !== undefined && applies(st.task, next.trace)
          ? { trace: next.trace, hash: hash!, rel: next.rel, isDefault: false }
          : defaultIncumbent(st);
      this.estimate(st);
    }
  }

  // ---- measuring ----

  private async singleMeasure(st: TaskState, prog: BuildOutput): Promise<Measured> {
    const m = await this.runner!.measure(
      { ...measured(prog), seed: st.seed, ...this.measureOpts, ...sizesOf(st) },
      this.timeoutMs,
    );
    if (!m.ok) return { error: m.error, errorKind: m.kind };
    const costs = sizedCosts(st, m.out.costs, m.out.sizeCosts);
    return { ms: median(costs), costs, output: m.out.output };
  }

  /**
   * Measures programs of one task; the first is the reference and each other's rel is relative to it. Interleaved
   * in rounds when the runner can (measureSet); otherwise, or when the set failed (a hang, a crashed worker), one at
   * a time: `passes` passes of reference, program 1, reference, program 2, ..., reference, each program's rel the
   * median over passes of its time over the mean of the two reference times around it.
   */
  private async measureGroup(
    st: TaskState,
    progs: BuildOutput[],
    rounds: number,
    passes = 1,
    minRepeatMs = this.measureOpts.minRepeatMs,
  ): Promise<Measured[]> {
    const runner = this.runner!;
    if (runner.measureSet) {
      const m = await runner.measureSet(
        {
          programs: progs.map(measured),
          seed: st.seed,
          warmup: this.measureOpts.warmup,
          rounds,
          minRepeatMs,
          ...sizesOf(st),
        },
        this.timeoutMs,
      );
      if (m.ok) {
        // (a kernel for run-time sizes: each program's rounds as the weighted times at the sizes, the reference first)
        const out = m.out.map((o) => (o.ok ? { ...o, costs: sizedCosts(st, o.costs, o.sizeCosts) } : o));
        const ref = out[0];
        return out.map((o, i): Measured => {
          if (!o.ok) return { error: o.error, errorKind: 'run' };
          const ratios = ref.ok ? o.costs.map((c, r) => c / ref.costs[r]).filter((x) => Number.isFinite(x)) : [];
          return {
            ms: median(o.costs),
            costs: o.costs,
            output: o.output,
            rel: i === 0 ? 1 : ratios.length ? median(ratios) : undefined,
            ratios,
          };
        });
      }
    }
    if (progs.length === 1) {
      const r = await this.singleMeasure(st, progs[0]);
      return ['ms' in r ? { ...r, rel: 1 } : r];
    }
    return this.measureAlternating(st, progs, passes);
  }

  /** measureGroup one program at a time: reference, program 1, reference, program 2, ..., reference; `passes` times. */
  private async measureAlternating(st: TaskState, progs: BuildOutput[], passes: number): Promise<Measured[]> {
    const refs: Measured[] = [];
    const out: Measured[] = progs.slice(1).map(() => ({ error: 'not measured', errorKind: 'run' }));
    const ratios: number[][] = progs.slice(1).map(() => []);
    for (let pass = 0; pass < passes; pass++) {
      let before = await this.singleMeasure(st, progs[0]);
      refs.push(before);
      for (let i = 1; i < progs.length; i++) {
        if (pass > 0 && !('ms' in out[i - 1])) continue; // failed in an earlier pass
        const m = await this.singleMeasure(st, progs[i]);
        const after = await this.singleMeasure(st, progs[0]);
        refs.push(after);
        if (pass === 0 || !('ms' in m)) out[i - 1] = m;
        else {
          const o = out[i - 1] as MeasuredOk;
          o.costs = [...o.costs, ...m.costs];
          o.ms = median(o.costs);
        }
        const around = [before, after].filter((x): x is MeasuredOk => 'ms' in x).map((x) => x.ms);
        if ('ms' in m && around.length) ratios[i - 1].push(m.ms / (around.reduce((a, b) => a + b, 0) / around.length));
        before = after;
      }
    }
    const refOk = refs.filter((r): r is MeasuredOk => 'ms' in r);
    const first: Measured = refOk.length
      ? { ms: median(refOk.map((r) => r.ms)), costs: refOk.flatMap((r) => r.costs), output: refOk[0].output, rel: 1 }
      : refs[0];
    return [
      first,
      ...out.map(
        (o, i): Measured =>
          'ms' in o ? { ...o, rel: ratios[i].length ? median(ratios[i]) : undefined, ratios: ratios[i] } : o,
      ),
    ];
  }

  // ---- recording and the report ----

  /** One tuning record of a task, in its own transaction. */
  private record(
    st: TaskState,
    trace: TraceStep[],
    res: Outcome,
    search: string,
    decisions?: Candidate['decisions'],
    confirmed?: boolean,
  ): void {
    const { target } = this;
    const rec: TuningRecord = {
      workload: st.task.workload.key,
      target: target.key,
      trace,
      costs: res.costs ?? [],
      ms: res.ms,
      error: res.error,
      errorKind: res.errorKind,
      time: new Date().toISOString(),
      kiln: VERSION,
      search,
      decisions,
      ...(res.rel !== undefined && !res.error ? { rel: res.rel, confirmed: !!confirmed } : {}),
    };
    this.db.addRecord({ ...st.task.workload, ops: st.task.ops, flops: st.task.kernel.flops }, target, rec);
  }

  /** The task's report from its default's long-run time and the incumbent's relative cost. */
  private estimate(st: TaskState): void {
    const d = median(st.refMs);
    if (Number.isFinite(d)) {
      st.report.defaultMs = d;
      st.report.bestMs = d * st.inc.rel;
    }
    st.report.bestTrace = st.inc.isDefault ? undefined : st.inc.trace;
  }

  /** Sum over tasks of calls x latency: d with the default schedules, b with the incumbents. */
  private totals(): { d: number; b: number } {
    let d = 0,
      b = 0;
    for (const s of this.states)
      if (s.report.defaultMs !== undefined) {
        d += s.task.calls * s.report.defaultMs;
        b += s.task.calls * (s.report.bestMs ?? s.report.defaultMs);
      }
    return { d, b };
  }

  report(): TuneReport {
    const { d, b } = this.totals();
    const { symbols, sizes } = this;
    return {
      target: this.target,
      ...(symbols &&
        sizes && {
          sizes: sizes.values.map((v, i) => ({
            values: Object.fromEntries(symbols.names.map((s, k) => [s, v[k]])),
            weight: sizes.weights[i],
            label: sizes.labels[i],
          })),
        }),
      tasks: this.tasks.map(
        (t) =>
          this.states.find((s) => s.task === t)?.report ??
          this.skipped.get(t) ?? {
            index: t.index,
            workload: t.workload.key,
            ops: t.ops,
            calls: t.calls,
            trials: 0,
            errors: 0,
            resumed: 0,
            skipped: 'skipped',
          },
      ),
      trials: this.trials,
      errors: this.errors,
      elapsedMs: performance.now() - this.t0,
      defaultTotalMs: d,
      bestTotalMs: b,
      curve: this.curve,
    };
  }
}

/** The sizes a measurement of a task's programs runs at (none for a static kernel). */
const sizesOf = (st: TaskState): { sizes?: number[][] } => (st.sizes ? { sizes: st.sizes.values } : {});

/**
 * A program's per-round costs: as measured for a static kernel; for a kernel for run-time sizes the weighted sum
 * of its times at the sizes, each scaled (sizes.ts). The task's first measurement (its default schedule, alone)
 * fixes the scales, so every later cost of the task, in any batch, is combined alike.
 */
function sizedCosts(st: TaskState, costs: number[], sizeCosts: number[][] | undefined): number[] {
  if (!st.sizes) return costs;
  if (!sizeCosts || sizeCosts.length !== st.sizes.values.length)
    throw new KilnError('E_INTERNAL', `task ${st.task.index}: the runner measured no times per size`, {
      hint: 'kernels for run-time sizes are measured by the WebAssembly runner (worker.ts measure / measureSet)',
    });
  st.sizes.scales ??= sizeScales(sizeCosts);
  return combineSizeCosts(st.sizes, sizeCosts);
}

/**
 * The program's symbol table where the model has run-time sizes (program.ts symbolTable, so that the tasks' kernels
 * read the symbols as the compiled program's do). Tuning them is for WebAssembly only: E_UNSUPPORTED on another target.
 */
function programSymbols(fused: FuncNode, ranges: DimRanges, target: TuneTarget): SymbolTable | undefined {
  let symbols: SymbolTable | undefined;
  try {
    symbols = symbolTable(fused, ranges);
  } catch (e) {
    // (its hint names `kiln compile --dim`: the same flag tunes)
    if (e instanceof KilnError && e.hint?.includes('kiln compile'))
      throw new KilnError(e.code, e.detail, { hint: e.hint.replace('kiln compile', 'kiln tune') });
    throw e;
  }
  if (symbols && target !== 'wasm')
    throw new KilnError(
      'E_UNSUPPORTED',
      `tuning kernels for run-time sizes (the ranges of ${symbols.names.join(', ')}) is supported for target 'wasm' only, not '${target}': the ${{ webgpu: 'WebGPU', cuda: 'CUDA', native: 'native' }[target]} tuner measures at one size`,
      {
        hint: `tune with --target wasm, or fix the dims to tune the ${target} kernels of one size (${symbols.names.map((s) => `--dim ${s}=N`).join(' ')}; API: dims: { ${symbols.names.map((s) => `${s}: N`).join(', ')} })`,
      },
    );
  return symbols;
}

/** What a runner needs of a built program (not ptxas's resource report). */
const measured = (p: BuildOutput): MeasuredProgram => ({
  header: p.header,
  wasm: p.wasm,
  ...(p.native && { native: p.native }),
});

/** The default schedule as the incumbent (compiling applies it when no candidate is confirmed faster). */
function defaultIncumbent(st: TaskState): Incumbent {
  return { trace: st.defaultTrace, hash: traceHash(st.defaultTrace), rel: 1, program: st.refProgram, isDefault: true };
}

/** Whether a trace applies to a task's kernel (records of another Kiln, given traces of another task). */
function applies(task: TuneTask, trace: readonly TraceStep[]): boolean {
  try {
    const sch = new Schedule([task.kernel.output]);
    for (const s of trace) sch.apply(s);
    return true;
  } catch {
    return false;
  }
}

/** Expected gain of giving a task the next batch: its share of model time, discounted while it stops improving. */
function gain(s: TaskState): number {
  return (s.task.calls * (s.report.bestMs ?? 0)) / (1 + s.stale);
}

export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new KilnError('E_INPUT', `bad duration '${s}'`, { hint: 'write e.g. 90s, 20m, 1h' });
  const k = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Number(m[1]) * k;
}
