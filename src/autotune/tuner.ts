// The tuning job over a model: its distinct kernels become tasks; the default schedule of each is measured first
// (the reference latency and the reference output); then batches of candidates go to the task where the expected
// end-to-end gain is largest (calls x best latency, discounted while a task stops improving), are built in the
// pool, measured one at a time, checked against the reference output and recorded, each in its own transaction.
// Records already in the database for this target are loaded first, so a stopped job resumes where it was.
// Targets: 'wasm' (Node's WebAssembly engine), 'webgpu' (the candidates' WGSL dispatches on the process's WebGPU
// device: Dawn in Node), 'cuda' (PTX assembled by ptxas and resource-checked before it is measured on a GPU;
// `buildOnly` records the checks without a GPU). GPU tasks search GpuScheduleOptions (gpu-space.ts).
import { KilnError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { compareTensors } from '../conformance/compare.js';
import { type CompileOptions, importAndOptimize } from '../compiler/compile.js';
import { fuseOps } from '../relay-ir/passes/fuse-ops.js';
import { VERSION } from '../compiler/version.js';
import { DEFAULT_DB_PATH, type ErrorKind, type TuningRecord, TuningDatabase, traceHash } from './database.js';
import { type GpuTargetInfo, type TargetInfo, cudaTarget, detectTarget, webgpuTarget } from './target.js';
import { type TuneTask, extractTasks } from './tasks.js';
import { GpuSearchSpace } from './gpu-space.js';
import type { GpuBuildTarget } from './gpu-build.js';
import { ChildWebGpuRunner, CudaRunner, noCudaDevice } from './gpu-runner.js';
import { CUDA_SCHEDULE_OPTIONS } from '../compiler/cuda-program.js';
import type { SmTarget } from '../codegen/ptx/codegen.js';
import type { GpuScheduleOptions } from '../schedule/gpu-schedule.js';
import { Schedule } from '../schedule/schedule.js';
import { type Candidate, type Strategy, TaskSearch } from './search.js';
import { type Builder, type Runner, LocalBuilder, PoolBuilder, PoolRunner } from './measure.js';
import type { TraceStep } from '../schedule/schedule.js';

export type TuneTarget = 'wasm' | 'webgpu' | 'cuda';

export interface TuneOptions {
  /** Where candidates are measured (default 'wasm'). */
  target?: TuneTarget;
  /** For target 'cuda': the SM the PTX is assembled for (default 80). */
  sm?: SmTarget;
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
  repeats?: number;
  minRepeatMs?: number;
  /** Per-candidate measurement timeout (ms). */
  timeoutMs?: number;
  compile?: Pick<CompileOptions, 'inputShapes' | 'specialize' | 'modelPath'>;
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
  defaultMs?: number;
  bestMs?: number;
  bestTrace?: TraceStep[];
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
export const gpuBaseOptions = (target: 'webgpu' | 'cuda'): GpuScheduleOptions => (target === 'cuda' ? CUDA_SCHEDULE_OPTIONS : {});

const median = (xs: readonly number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN; };

interface TaskState { task: TuneTask; search: TaskSearch; report: TaskReport; reference?: Tensor; stale: number; exhausted: boolean; seed: number; defaultTrace: TraceStep[] }

/** The target's description, runner and GPU build target; E_NO_DEVICE for CUDA without a driver unless buildOnly. */
async function openTarget(opts: TuneOptions): Promise<{ target: TargetInfo; limits?: GpuTargetInfo; gpu?: GpuBuildTarget; runner?: Runner }> {
  const kind = opts.target ?? 'wasm';
  if (kind === 'wasm') return { target: detectTarget() };
  if (kind === 'webgpu') {
    // the key from this process's adapter; candidates run on the same adapter in a child process
    const { nodeGpuAdapter } = await import('../conformance/node-webgpu.js');
    const target = webgpuTarget(await nodeGpuAdapter(), 'Dawn (npm webgpu)');
    return { target, limits: target, gpu: { kind: 'webgpu' }, runner: opts.runner ?? new ChildWebGpuRunner() };
  }
  if (kind !== 'cuda') throw new KilnError('E_INPUT', `unknown tuning target '${kind}'`, { hint: 'use wasm, webgpu or cuda' });
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
  return { target, limits: target, gpu: { kind: 'cuda', sm }, runner: opts.buildOnly ? undefined : opts.runner ?? runner };
}

export async function tune(modelBytes: Uint8Array, opts: TuneOptions): Promise<TuneReport> {
  const t0 = performance.now();
  const seed = opts.seed ?? 0;
  const strategy = opts.strategy ?? 'evolutionary';
  const { graph } = importAndOptimize(modelBytes, opts.compile ?? {});
  const kind = opts.target ?? 'wasm';
  const buildOnly = kind === 'cuda' && !!opts.buildOnly;
  const { target, limits, gpu, runner: gpuRunner } = await openTarget(opts);
  const base = gpu ? gpuBaseOptions(gpu.kind) : {};
  let tasks = extractTasks(fuseOps(graph), gpu && limits && ((k) => new GpuSearchSpace(() => new Schedule([k.output]),
    { maxThreads: limits.maxThreads, maxSharedBytes: limits.maxSharedBytes, base })));
  if (opts.onlyTasks) tasks = tasks.filter((t) => opts.onlyTasks!.includes(t.index));
  const ownDb = !(opts.db instanceof TuningDatabase);
  const db = opts.db instanceof TuningDatabase ? opts.db : TuningDatabase.open(opts.db ?? DEFAULT_DB_PATH);
  const workers = opts.workers ?? 2;
  const builder = opts.builder ?? (workers > 0 ? new PoolBuilder(workers) : new LocalBuilder());
  const runner = opts.runner ?? gpuRunner ?? (buildOnly ? undefined : new PoolRunner());
  const batch = Math.max(1, opts.batch ?? Math.max(4, 2 * workers));
  const measureOpts = { warmup: opts.warmup ?? 2, repeats: opts.repeats ?? 5, minRepeatMs: opts.minRepeatMs ?? 5 };
  // WebGPU's time includes compiling the candidate's pipeline (SwiftShader: seconds for large unrolled tiles)
  const timeoutMs = opts.timeoutMs ?? (kind === 'webgpu' ? 60_000 : 20_000);
  const deadline = opts.timeBudgetMs !== undefined ? t0 + opts.timeBudgetMs : Infinity;
  let trials = 0, errors = 0;
  const curve: TuneReport['curve'] = [];

  const record = (st: TaskState, trace: TraceStep[], res: { ms?: number; costs?: number[]; error?: string; errorKind?: ErrorKind }, search: string, decisions?: Candidate['decisions']) => {
    const rec: TuningRecord = {
      workload: st.task.workload.key, target: target.key, trace, costs: res.costs ?? [], ms: res.ms, error: res.error,
      errorKind: res.errorKind, time: new Date().toISOString(), kiln: VERSION, search, decisions,
    };
    db.addRecord({ ...st.task.workload, ops: st.task.ops, flops: st.task.kernel.flops }, target, rec);
  };

  /** Builds and measures traces of one task; null = the default schedule. */
  const evaluate = async (st: TaskState, cands: { trace: TraceStep[] | null }[]) => {
    const built = await builder.build(st.task.spec, cands.map((c) => c.trace), gpu);
    const results: { ms?: number; costs?: number[]; output?: Tensor; error?: string; errorKind?: ErrorKind }[] = [];
    for (const b of built) {
      if (!b.ok) { results.push({ error: b.error, errorKind: b.kind ?? 'build' }); continue; }
      if (!runner) { results.push({ costs: [] }); continue; } // build-only: it passed the checks
      const m = await runner.measure({ header: b.out.header, wasm: b.out.wasm, seed: st.seed, ...measureOpts }, timeoutMs);
      if (!m.ok) { results.push({ error: m.error, errorKind: m.kind }); continue; }
      const output = m.out.output;
      if (st.reference) {
        const bad = compareTensors(output, st.reference);
        if (bad) { results.push({ error: `wrong result: ${bad.message}`, errorKind: 'wrong' }); continue; }
      }
      results.push({ ms: median(m.out.costs), costs: m.out.costs, output });
    }
    return results;
  };

  const states: TaskState[] = [];
  const totals = () => {
    let d = 0, b = 0;
    for (const s of states) if (s.report.defaultMs !== undefined) { d += s.task.calls * s.report.defaultMs; b += s.task.calls * (s.report.bestMs ?? s.report.defaultMs); }
    return { d, b };
  };
  try {
    // 1. resume + reference measurement of each task's default schedule
    for (const task of tasks) {
      const report: TaskReport = { index: task.index, workload: task.workload.key, ops: task.ops, calls: task.calls, trials: 0, errors: 0, resumed: 0 };
      const search = new TaskSearch(task.space, task.kernel, task.workload.key, { strategy, seed });
      const defaults = task.space.defaults();
      const defaultTrace = gpu && defaults ? task.space.trace(defaults) : task.kernel.trace;
      const st: TaskState = { task, search, report, stale: 0, exhausted: false, seed: (seed * 7919 + task.index + 1) >>> 0, defaultTrace };
      if (!task.space.tunable) { report.skipped = 'no schedule decisions'; continue; }
      if (task.kernel.output.dtype !== 'float32') { report.skipped = `output ${task.kernel.output.dtype}`; continue; }
      for (const r of db.records(task.workload.key, target.key)) {
        search.observe({ hash: traceHash(r.trace), trace: r.trace, decisions: r.decisions }, r.error ? undefined : r.ms);
        report.resumed++;
      }
      const [def] = await evaluate(st, [{ trace: null }]);
      if (def.error) { report.skipped = `default schedule failed: ${def.error}`; record(st, defaultTrace, def, 'default'); continue; }
      st.reference = def.output;
      report.defaultMs = def.ms;
      record(st, defaultTrace, def, buildOnly ? 'default/build-only' : 'default', defaults);
      search.observe({ hash: traceHash(defaultTrace), trace: defaultTrace, decisions: defaults }, def.ms);
      const best = search.best();
      if (def.ms !== undefined) report.bestMs = Math.min(best?.ms ?? Infinity, def.ms);
      states.push(st);
    }
    // given traces first, each recorded like a candidate
    for (const trace of opts.seedTraces ?? []) {
      for (const st of states) {
        if (trials >= opts.trials) break;
        try { const sch = new Schedule([st.task.kernel.output]); for (const s of trace) sch.apply(s); } catch { continue; } // not this task's
        const [r] = await evaluate(st, [{ trace }]);
        trials++;
        st.report.trials++;
        if (r.error) { errors++; st.report.errors++; }
        record(st, trace, r, buildOnly ? 'given/build-only' : 'given');
        st.search.observe({ hash: traceHash(trace), trace }, r.error ? undefined : r.ms);
        if (r.ms !== undefined && r.ms < (st.report.bestMs ?? Infinity)) { st.report.bestMs = r.ms; st.report.bestTrace = trace; }
      }
    }
    curve.push({ trial: 0, elapsedMs: performance.now() - t0, bestTotalMs: totals().b });

    // 2. batches where the expected gain is largest
    const firstPass = new Set(states.map((s) => s.task.index));
    while (trials < opts.trials && performance.now() < deadline) {
      const live = states.filter((s) => !s.exhausted);
      if (!live.length) break;
      // build-only has no latencies to weigh: tasks take turns
      const pick = live.find((s) => firstPass.has(s.task.index))
        ?? live.reduce((a, b) => (buildOnly ? (b.report.trials < a.report.trials ? b : a) : gain(b) > gain(a) ? b : a));
      firstPass.delete(pick.task.index);
      const n = Math.min(batch, opts.trials - trials);
      const cands = pick.search.propose(n);
      if (!cands.length) { pick.exhausted = true; continue; }
      const results = await evaluate(pick, cands);
      let improved = false;
      cands.forEach((c, i) => {
        const r = results[i];
        trials++;
        pick.report.trials++;
        if (r.error) { errors++; pick.report.errors++; }
        record(pick, c.trace, r, `${strategy === 'random' ? 'random' : `evolutionary/${c.origin}`}${buildOnly ? '/build-only' : ''}`, c.decisions);
        pick.search.observe(c, r.error ? undefined : r.ms);
        if (r.ms !== undefined && r.ms < (pick.report.bestMs ?? Infinity)) { pick.report.bestMs = r.ms; pick.report.bestTrace = c.trace; improved = true; }
        curve.push({ trial: trials, elapsedMs: performance.now() - t0, bestTotalMs: totals().b });
      });
      pick.stale = improved ? 0 : pick.stale + 1;
      const elapsed = performance.now() - t0;
      const { d, b } = totals();
      const etaTrials = (elapsed / Math.max(trials, 1)) * (opts.trials - trials);
      opts.progress?.({
        trials, totalTrials: opts.trials, errors, elapsedMs: elapsed, etaMs: Math.min(etaTrials, Math.max(0, deadline - performance.now())),
        task: pick.report, tasks: states.map((s) => s.report), defaultTotalMs: d, bestTotalMs: b,
      });
    }
    // 3. default and best measured again side by side, under the same conditions (early measurements of a run
    //    are noisier: the pools are still starting)
    for (const st of states) {
      const best = st.search.best();
      if (!best || !st.report.bestTrace) continue;
      const [def, tuned] = await evaluate(st, [{ trace: null }, { trace: st.report.bestTrace }]);
      if (def.ms !== undefined) { st.report.defaultMs = def.ms; record(st, st.defaultTrace, def, 'default', st.task.space.defaults()); }
      if (tuned.ms !== undefined) { st.report.bestMs = Math.min(tuned.ms, st.report.defaultMs!); record(st, st.report.bestTrace, tuned, 'remeasure'); }
    }
  } finally {
    if (!opts.builder) await builder.close();
    if (!opts.runner) await runner?.close();
    if (ownDb) db.close();
  }
  const { d, b } = totals();
  return {
    target, tasks: tasks.map((t) => states.find((s) => s.task === t)?.report ?? { index: t.index, workload: t.workload.key, ops: t.ops, calls: t.calls, trials: 0, errors: 0, resumed: 0, skipped: 'skipped' }),
    trials, errors, elapsedMs: performance.now() - t0, defaultTotalMs: d, bestTotalMs: b, curve,
  };
}

/** Expected gain of giving a task the next batch: its share of model time, discounted while it stops improving. */
function gain(s: TaskState): number {
  return s.task.calls * (s.report.bestMs ?? 0) / (1 + s.stale);
}

export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new KilnError('E_INPUT', `bad duration '${s}'`, { hint: 'write e.g. 90s, 20m, 1h' });
  const k = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Number(m[1]) * k;
}
