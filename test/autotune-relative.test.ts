// Relative timing in the tuner: candidates timed interleaved with the default schedule, and re-measured side by
// side against the incumbent before compiling may apply them. A runner whose timings drift with a fake machine
// load (a square wave: 2x slower, then normal, ...) fools ranking by raw milliseconds into storing a slower
// candidate as the best; the relative scheme applies only a candidate that is really faster. Also: a database of
// the first schema (before relative timing) still loads, migrates, and keeps ranking its own records by ms.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { tempDir } from './helpers/temp.js';
import Database from 'better-sqlite3';
import { compile } from '../src/index.js';
import { importAndOptimize } from '../src/compiler/compile.js';
import { fuseOps } from '../src/relay-ir/passes/fuse-ops.js';
import { matmulModel } from '../src/bench/matmul-model.js';
import { TuningDatabase, type TuningRecord, traceHash } from '../src/autotune/database.js';
import { detectTarget } from '../src/autotune/target.js';
import { extractTasks, kernelSpec } from '../src/autotune/tasks.js';
import { type TuneProgress, tune } from '../src/autotune/tuner.js';
import { tunedTraces } from '../src/autotune/apply.js';
import { Rng } from '../src/autotune/rng.js';
import type { MeasureSetResult, MeasureResult, Runner } from '../src/autotune/measure.js';
import { type MeasureSetTask, type MeasureTask, build } from '../src/autotune/worker.js';
import type { BuiltHeader } from '../src/autotune/tasks.js';
import { ARRAY } from '../src/runtime/dtype.js';

const tmp = () => tempDir('kiln-rel-');

/**
 * A runner on a fake machine: each program (told apart by its WebAssembly bytes, numbered in order of first
 * appearance, 0 = the default schedule) has a true cost, `cost(id)`; a virtual clock advances by what each run
 * costs; the load doubles every other `period` virtual ms. No code runs: every program "computes" zeros.
 */
class DriftingRunner implements Runner {
  clock = 0;
  readonly ids = new Map<string, number>();
  /** Per program id, the true cost, and the raw times it was given. */
  readonly seen: { id: number; ms: number }[] = [];
  constructor(
    private readonly cost: (id: number) => number,
    private readonly period = 100,
    private readonly perRound = 5,
  ) {}
  id(wasm: Uint8Array): number {
    const k = createHash('sha256').update(wasm).digest('hex');
    if (!this.ids.has(k)) this.ids.set(k, this.ids.size);
    return this.ids.get(k)!;
  }
  load(): number {
    return Math.floor(this.clock / this.period) % 2 === 0 ? 2 : 1;
  }
  /** One round of one program: perRound runs at the current load. */
  round(id: number): number {
    const ms = this.cost(id) * this.load();
    this.clock += ms * this.perRound;
    this.seen.push({ id, ms });
    return ms;
  }
  output(h: BuiltHeader) {
    const o = h.outputs[0];
    return { dtype: o.dtype, shape: [...o.shape], data: new ARRAY[o.dtype](o.shape.reduce((a, b) => a * b, 1)) };
  }
  async measure(task: MeasureTask): Promise<MeasureResult> {
    const id = this.id(task.wasm);
    const costs = Array.from({ length: task.repeats }, () => this.round(id));
    return { ok: true, out: { costs, output: this.output(task.header) } };
  }
  async measureSet(task: MeasureSetTask): Promise<MeasureSetResult> {
    const ids = task.programs.map((p) => this.id(p.wasm));
    const costs: number[][] = ids.map(() => []);
    for (let r = 0; r < task.rounds; r++) {
      for (let j = 0; j < ids.length; j++) {
        const i = (j + r) % ids.length;
        costs[i].push(this.round(ids[i]));
      }
    }
    return {
      ok: true,
      out: task.programs.map((p, i) => ({ ok: true as const, costs: costs[i], output: this.output(p.header) })),
    };
  }
  async close(): Promise<void> {
    /* nothing */
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[(s.length - 1) >> 1];
};

describe('relative timing under machine-load drift', () => {
  const { bytes } = matmulModel(64, 64, 64);
  const run = async (
    cost: (id: number) => number,
    opts: { measureSet?: boolean; progress?: (p: TuneProgress) => void } = {},
  ) => {
    const db = TuningDatabase.open(join(tmp(), 'kiln.sqlite'));
    const fake = new DriftingRunner(cost);
    const runner: Runner =
      opts.measureSet === false ? { measure: (t) => fake.measure(t), close: () => fake.close() } : fake;
    const report = await tune(bytes, {
      trials: 16,
      batch: 4,
      workers: 0,
      db,
      seed: 3,
      repeats: 3,
      runner,
      progress: opts.progress,
    });
    const task = report.tasks[0];
    const recs = db.records(task.workload, report.target.key);
    return { db, fake, report, task, recs };
  };
  /** A record's true cost: its trace built again gives the bytes the runner numbered. */
  const trueCostOf = (fake: DriftingRunner, cost: (id: number) => number) => {
    const spec = kernelSpec(extractTasks(fuseOps(importAndOptimize(bytes).graph))[0].fn);
    return (r: TuningRecord) => {
      const id = fake.ids.get(
        createHash('sha256')
          .update(build({ spec, trace: r.trace }).wasm)
          .digest('hex'),
      );
      expect(id).toBeDefined();
      return cost(id!);
    };
  };

  for (const measureSet of [true, false]) {
    it(`every candidate slower than the default: raw ms would store one as best, relative timing applies none (${measureSet ? 'interleaved rounds' : 'alternating single measurements'})`, async () => {
      const cost = (id: number) => (id === 0 ? 1 : 1.1 + (id % 4) * 0.1);
      const { db, fake, report, task, recs } = await run(cost, { measureSet });
      try {
        expect(report.trials).toBe(16);
        const trueCost = trueCostOf(fake, cost);
        const def = recs[0];
        expect(def.search).toBe('default');
        expect(def.confirmed).toBe(true);
        // the old scheme: the default timed alone at one moment, each candidate at another, ranked by raw ms.
        // Its best would be a candidate that is really slower (the drift made it look faster).
        const byMs = recs
          .filter((r) => r.ms !== undefined && !['default', 'confirm', 'remeasure'].includes(r.search!))
          .sort((a, b) => a.ms! - b.ms!)[0];
        expect(byMs.ms!).toBeLessThan(def.ms!);
        expect(trueCost(byMs)).toBeGreaterThan(1);
        // relative timing, interleaved: every candidate's rel says it is slower (single measurements alternating
        // with the default can still be caught by a load step between two of them: then the confirmation refuses it)
        if (measureSet)
          for (const r of recs) if (r.rel !== undefined && r.search !== 'default') expect(r.rel).toBeGreaterThan(1);
        // candidates measured faster than the default in their batch were measured again side by side; none passed
        if (!measureSet) expect(recs.filter((r) => r.search === 'confirm').length).toBeGreaterThan(0);
        // nothing confirmed: the record compiling applies is the default schedule's
        expect(recs.filter((r) => r.confirmed && r.search !== 'default')).toEqual([]);
        const best = db.best(task.workload, report.target.key, 5);
        expect(best.map((r) => r.search)).toEqual(['default']);
        expect(task.bestTrace).toBeUndefined();
        expect(task.bestMs).toBe(task.defaultMs);
        const lookup = tunedTraces(db, report.target);
        const r = await compile(bytes, { traceFor: lookup.traceFor });
        expect(lookup.used).toHaveLength(1);
        expect(lookup.used[0].isDefault).toBe(true); // `kiln compile` reports it as kept, not tuned
        expect(traceHash(r.program.kernels[0].trace ?? [])).toBe(traceHash(def.trace));
      } finally {
        db.close();
      }
    });
  }

  it('a candidate really faster than the default is confirmed side by side and applied', async () => {
    const cost = (id: number) => (id === 0 ? 1 : id === 3 ? 0.7 : 1.2);
    const { db, fake, report, task, recs } = await run(cost);
    try {
      const trueCost = trueCostOf(fake, cost);
      const confirms = recs.filter((r) => r.search === 'confirm');
      expect(confirms.length).toBeGreaterThanOrEqual(1);
      // only the really faster one passes its re-measure; its rel is the side-by-side ratio to the default
      expect(confirms.filter((r) => r.confirmed).map(trueCost)).toEqual([0.7]);
      const [best] = db.best(task.workload, report.target.key);
      expect(trueCost(best)).toBe(0.7);
      expect(best.rel!).toBeCloseTo(0.7, 5);
      expect(traceHash(task.bestTrace!)).toBe(traceHash(best.trace));
      expect(task.bestMs! / task.defaultMs!).toBeCloseTo(0.7, 5);
      // the default's long-run time is the median over the batches, between the quiet and the busy time
      expect(task.defaultMs!).toBeGreaterThanOrEqual(1);
      expect(task.defaultMs!).toBeLessThanOrEqual(2);
      const lookup = tunedTraces(db, report.target);
      await compile(bytes, { traceFor: lookup.traceFor });
      expect(lookup.used.map((u) => u.workload)).toEqual([task.workload]);
      expect(lookup.used[0].isDefault).toBe(false);
      expect(median(fake.seen.filter((s) => s.id === 0).map((s) => s.ms))).toBeGreaterThanOrEqual(1);
    } finally {
      db.close();
    }
  });

  it('a confirmed candidate that measures no faster than the default at the end of the run loses its confirmation', async () => {
    // program 3 is really faster while the search runs, then (the machine changed, or the confirmations were
    // lucky) slower than the default in the end-of-run check
    let late = false;
    const cost = (id: number) => (id === 0 ? 1 : id === 3 ? (late ? 1.3 : 0.7) : 1.2);
    const { db, fake, report, task, recs } = await run(cost, {
      progress: (p) => {
        late = p.trials >= 16;
      },
    });
    try {
      const trueCost = trueCostOf(fake, cost);
      late = false; // trueCost below: program 3's cost while it was confirmed
      const confirmed3 = recs.filter((r) => r.search === 'confirm' && trueCost(r) === 0.7);
      expect(confirmed3.length).toBeGreaterThanOrEqual(1);
      // its confirmation is gone (the records stay), the end-of-run check is on record
      expect(confirmed3.every((r) => r.confirmed === false)).toBe(true);
      const remeasured = recs.filter((r) => r.search === 'remeasure');
      expect(remeasured.map(trueCost)).toEqual([0.7]);
      expect(remeasured[0].rel!).toBeCloseTo(1.3, 5);
      expect(task.revoked).toBe(1);
      expect(task.bestTrace).toBeUndefined();
      expect(task.bestMs).toBe(task.defaultMs);
      expect(db.best(task.workload, report.target.key, 5).map((r) => r.search)).toEqual(['default']);
      const lookup = tunedTraces(db, report.target);
      await compile(bytes, { traceFor: lookup.traceFor });
      expect(lookup.used.map((u) => u.isDefault)).toEqual([true]);
    } finally {
      db.close();
    }
  });

  it('the same seed and the same measurements propose the same candidates', async () => {
    const cost = (id: number) => (id === 0 ? 1 : id % 5 === 2 ? 0.8 : 1 + (id % 3) * 0.1);
    const hashes = async () => {
      const { db, recs } = await run(cost);
      db.close();
      return recs.map((r) => `${r.search}:${traceHash(r.trace)}:${r.rel?.toFixed(6)}:${r.confirmed}`);
    };
    const a = await hashes();
    expect(a.some((x) => x.startsWith('confirm:'))).toBe(true);
    expect(await hashes()).toEqual(a);
  });
});

describe('tuning databases of the first schema (before relative timing)', () => {
  const V1 = `
    CREATE TABLE workloads (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, format INTEGER NOT NULL, text TEXT NOT NULL, ops TEXT, flops REAL);
    CREATE TABLE targets (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, arch TEXT NOT NULL, features TEXT NOT NULL, engine TEXT, cpu TEXT);
    CREATE TABLE records (id INTEGER PRIMARY KEY, workload_id INTEGER NOT NULL REFERENCES workloads(id), target_id INTEGER NOT NULL REFERENCES targets(id),
      trace TEXT NOT NULL, trace_hash TEXT NOT NULL, costs TEXT NOT NULL, ms REAL, error TEXT, error_kind TEXT, created_at TEXT NOT NULL,
      kiln_version TEXT NOT NULL, search TEXT, decisions TEXT, UNIQUE (workload_id, target_id, trace_hash, created_at));
    CREATE INDEX records_best ON records (workload_id, target_id, ms);
    PRAGMA user_version = 1;`;

  it('load, migrate, rank their records by ms; once relatively timed records exist, only confirmed ones apply', async () => {
    const { bytes } = matmulModel(64, 64, 64);
    const task = extractTasks(fuseOps(importAndOptimize(bytes).graph))[0];
    const target = detectTarget();
    const rng = new Rng(5);
    const traces = [task.kernel.trace, ...Array.from({ length: 3 }, () => task.space.trace(task.space.sample(rng)))];
    const path = join(tmp(), 'old.sqlite');
    const raw = new Database(path);
    raw.exec(V1);
    raw
      .prepare('INSERT INTO workloads (key, format, text) VALUES (?, ?, ?)')
      .run(task.workload.key, task.workload.format, task.workload.text);
    raw
      .prepare('INSERT INTO targets (key, kind, arch, features) VALUES (?, ?, ?, ?)')
      .run(target.key, target.kind, target.arch, JSON.stringify(target.features));
    const ins =
      raw.prepare(`INSERT INTO records (workload_id, target_id, trace, trace_hash, costs, ms, created_at, kiln_version, search)
      VALUES (1, 1, ?, ?, ?, ?, ?, '0.1.0', ?)`);
    [
      [0, 2.0, 'default'],
      [1, 1.5, 'evolutionary/mutation'],
      [2, 3.0, 'random'],
    ].forEach(([i, ms, search], k) =>
      ins.run(
        JSON.stringify(traces[i as number]),
        traceHash(traces[i as number]),
        JSON.stringify([ms]),
        ms,
        `2026-01-01T00:00:0${k}Z`,
        search,
      ),
    );
    raw.close();

    // read-only, unmigrated: readable
    const ro = TuningDatabase.open(path, { readonly: true });
    expect(ro.best(task.workload.key, target.key, 5).map((r) => r.ms)).toEqual([1.5, 2.0, 3.0]);
    ro.close();

    const db = TuningDatabase.open(path);
    try {
      const recs = db.records(task.workload.key, target.key);
      expect(recs.map((r) => r.ms)).toEqual([2.0, 1.5, 3.0]);
      expect(recs.every((r) => r.rel === undefined && r.confirmed === undefined)).toBe(true);
      // the old ranking for old records: by ms
      expect(db.best(task.workload.key, target.key)[0].ms).toBe(1.5);
      const lookup = tunedTraces(db, target, { kiln: '0.1.0' });
      await compile(bytes, { traceFor: lookup.traceFor });
      expect(lookup.used.map((u) => u.ms)).toEqual([1.5]);
      expect(db.exportLines()[0]).not.toMatch(/"rel"|"confirmed"/);

      // a new run's records: the default confirmed (rel 1), a candidate measured faster but not confirmed
      const rec = (
        i: number,
        ms: number,
        rel: number,
        confirmed: boolean,
        search: string,
        s: number,
      ): TuningRecord => ({
        workload: task.workload.key,
        target: target.key,
        trace: traces[i],
        costs: [ms],
        ms,
        rel,
        confirmed,
        time: `2026-02-01T00:00:0${s}Z`,
        kiln: '0.1.0',
        search,
      });
      const w = { ...task.workload, ops: task.ops };
      db.addRecord(w, target, rec(0, 2.0, 1, true, 'default', 0));
      db.addRecord(w, target, rec(3, 0.9, 0.45, false, 'random', 1));
      expect(db.best(task.workload.key, target.key, 5).map((r) => r.search)).toEqual(['default']);
      // ... then one confirmed
      db.addRecord(w, target, rec(2, 1.8, 0.9, true, 'confirm', 2));
      expect(db.best(task.workload.key, target.key, 5).map((r) => r.rel)).toEqual([0.9, 1]);
      // export / import carry rel and confirmed
      const lines = db.exportLines();
      const db2 = TuningDatabase.open(':memory:');
      db2.importLines(lines);
      expect(db2.best(task.workload.key, target.key, 5).map((r) => [r.rel, r.confirmed])).toEqual([
        [0.9, true],
        [1, true],
      ]);
      db2.close();
    } finally {
      db.close();
    }
    // migrated in place: the next open finds schema 2
    const again = new Database(path);
    expect(again.pragma('user_version', { simple: true })).toBe(2);
    again.close();
  });
});
