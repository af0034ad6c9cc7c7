// The tuning job over a model: its distinct kernels become tasks; the default schedule of each is measured first
// (the reference latency and the reference output); then batches of candidates go to the task where the expected
// end-to-end gain is largest (calls x best latency, discounted while a task stops improving), are built in the
// pool, measured one at a time, checked against the reference output and recorded, each in its own transaction.
// Records already in the database for this target are loaded first, so a stopped job resumes where it was.
import { KilnError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { compareTensors } from '../conformance/compare.js';
import { type CompileOptions, importAndOptimize } from '../compiler/compile.js';
import { fuseOps } from '../relay-ir/passes/fuse-ops.js';
import { VERSION } from '../compiler/version.js';
import { DEFAULT_DB_PATH, type ErrorKind, type TuningRecord, TuningDatabase, traceHash } from './database.js';
import { type TargetInfo, detectTarget } from './target.js';
import { type TuneTask, extractTasks } from './tasks.js';
import { type Candidate, type Strategy, TaskSearch } from './search.js';
import { type Builder, type Runner, LocalBuilder, PoolBuilder, PoolRunner } from './measure.js';
import type { TraceStep } from '../schedule/schedule.js';

export interface TuneOptions {
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

const median = (xs: readonly number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN; };

interface TaskState { task: TuneTask; search: TaskSearch; report: TaskReport; reference?: Tensor; stale: number; exhausted: boolean; seed: number }

export async function tune(modelBytes: Uint8Array, opts: TuneOptions): Promise<TuneReport> {
  const t0 = performance.now();
  const seed = opts.seed ?? 0;
  const strategy = opts.strategy ?? 'evolutionary';
  const { graph } = importAndOptimize(modelBytes, opts.compile ?? {});
  let tasks = extractTasks(fuseOps(graph));
  if (opts.onlyTasks) tasks = tasks.filter((t) => opts.onlyTasks!.includes(t.index));
  const target = detectTarget();
  const ownDb = !(opts.db instanceof TuningDatabase);
  const db = opts.db instanceof TuningDatabase ? opts.db : TuningDatabase.open(opts.db ?? DEFAULT_DB_PATH);
  const workers = opts.workers ?? 2;
  const builder = opts.builder ?? (workers > 0 ? new PoolBuilder(workers) : new LocalBuilder());
  const runner = opts.runner ?? new PoolRunner();
  const batch = Math.max(1, opts.batch ?? Math.max(4, 2 * workers));
  const measureOpts = { warmup: opts.warmup ?? 2, repeats: opts.repeats ?? 5, minRepeatMs: opts.minRepeatMs ?? 5 };
  const timeoutMs = opts.timeoutMs ?? 20_000;
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
    const built = await builder.build(st.task.spec, cands.map((c) => c.trace));
    const results: { ms?: number; costs?: number[]; output?: Tensor; error?: string; errorKind?: ErrorKind }[] = [];
    for (const b of built) {
      if (!b.ok) { results.push({ error: b.error, errorKind: 'build' }); continue; }
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
      const st: TaskState = { task, search, report, stale: 0, exhausted: false, seed: (seed * 7919 + task.index + 1) >>> 0 };
      if (!task.space.tunable) { report.skipped = 'no schedule decisions'; continue; }
      if (task.kernel.output.dtype !== 'float32') { report.skipped = `output ${task.kernel.output.dtype}`; continue; }
      for (const r of db.records(task.workload.key, target.key)) {
        search.observe({ hash: traceHash(r.trace), trace: r.trace, decisions: r.decisions }, r.error ? undefined : r.ms);
        report.resumed++;
      }
      const [def] = await evaluate(st, [{ trace: null }]);
      if (def.error) { report.skipped = `default schedule failed: ${def.error}`; record(st, task.kernel.trace, def, 'default'); continue; }
      st.reference = def.output;
      report.defaultMs = def.ms;
      const decisions = task.space.defaults();
      record(st, task.kernel.trace, def, 'default', decisions);
      search.observe({ hash: traceHash(task.kernel.trace), trace: task.kernel.trace, decisions }, def.ms);
      const best = search.best();
      report.bestMs = Math.min(best?.ms ?? Infinity, def.ms!);
      states.push(st);
    }
    curve.push({ trial: 0, elapsedMs: performance.now() - t0, bestTotalMs: totals().b });

    // 2. batches where the expected gain is largest
    const firstPass = new Set(states.map((s) => s.task.index));
    while (trials < opts.trials && performance.now() < deadline) {
      const live = states.filter((s) => !s.exhausted);
      if (!live.length) break;
      const pick = live.find((s) => firstPass.has(s.task.index))
        ?? live.reduce((a, b) => (gain(b) > gain(a) ? b : a));
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
        record(pick, c.trace, r, strategy === 'random' ? 'random' : `evolutionary/${c.origin}`, c.decisions);
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
      if (def.ms !== undefined) { st.report.defaultMs = def.ms; record(st, st.task.kernel.trace, def, 'default', st.task.space.defaults()); }
      if (tuned.ms !== undefined) { st.report.bestMs = Math.min(tuned.ms, st.report.defaultMs!); record(st, st.report.bestTrace, tuned, 'remeasure'); }
    }
  } finally {
    if (!opts.builder) await builder.close();
    if (!opts.runner) await runner.close();
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
