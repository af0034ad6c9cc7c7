// The auto-tuner: tuning database, workload keys, search-space determinism, an end-to-end tune of a MatMul whose
// compiled output still matches ONNX Runtime, and candidates that compute wrong numbers / hang being rejected.
import { describe, expect, it } from 'vitest';
import { existsSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers/temp.js';
import { compile, load } from '../src/index.js';
import { KilnError } from '../src/runtime/errors.js';
import { compareTensors } from '../src/conformance/compare.js';
import { importAndOptimize } from '../src/compiler/compile.js';
import { fuseOps } from '../src/relay-ir/passes/fuse-ops.js';
import { freshVar } from '../src/tensor-expr/expr.js';
import { Schedule } from '../src/schedule/schedule.js';
import { lower } from '../src/schedule/lower.js';
import { printPrimFunc } from '../src/schedule/loop-ir.js';
import { matmulModel } from '../src/bench/matmul-model.js';
import { TuningDatabase, type TuningRecord } from '../src/autotune/database.js';
import { detectTarget } from '../src/autotune/target.js';
import { extractTasks } from '../src/autotune/tasks.js';
import { Rng } from '../src/autotune/rng.js';
import { TaskSearch } from '../src/autotune/search.js';
import { tune } from '../src/autotune/tuner.js';
import { tunedTraces } from '../src/autotune/apply.js';
import { type Runner, PoolRunner } from '../src/autotune/measure.js';
import type { MeasureSetTask, MeasureTask } from '../src/autotune/worker.js';
import type { Tensor } from '../src/runtime/tensor.js';
import { runOrt } from './helpers/ort.js';

const tmp = () => tempDir('kiln-tune-');
const tasksOf = (bytes: Uint8Array) => extractTasks(fuseOps(importAndOptimize(bytes).graph));
const lowered = (t: ReturnType<typeof tasksOf>[number], trace: readonly object[]) => {
  const sch = new Schedule([t.kernel.output]);
  for (const s of trace) sch.apply(s as never);
  const names = new Map<string, string>(); // identifiers renumbered in order of appearance
  return printPrimFunc(lower('k', t.kernel.inputs, sch)).replace(/\b[A-Za-z_][A-Za-z0-9_]*\b/g, (id) => {
    if (!names.has(id)) names.set(id, `v${names.size}`);
    return names.get(id)!;
  });
};

describe('tuning database', () => {
  const target = detectTarget();
  const wl = { key: 'w1', format: 1, text: 'in0: float32[4]\n' };
  const rec = (ms: number | undefined, factor: number, time: string): TuningRecord => ({
    workload: 'w1',
    target: target.key,
    trace: [{ p: 'split', stage: 0, axis: 'i0', factor }],
    costs: ms === undefined ? [] : [ms, ms],
    ms,
    error: ms === undefined ? 'boom' : undefined,
    errorKind: ms === undefined ? 'run' : undefined,
    time,
    kiln: '0.1.0',
    search: 'random',
  });

  it('round-trips records, keeps best-k, exports and imports JSON lines', () => {
    const dir = tmp();
    const db = TuningDatabase.open(join(dir, 'a', 'kiln.sqlite'));
    db.addRecord(wl, target, rec(3, 2, '2026-01-01T00:00:00Z'));
    db.addRecord(wl, target, rec(1, 4, '2026-01-01T00:00:01Z'));
    db.addRecord(wl, target, rec(undefined, 8, '2026-01-01T00:00:02Z'));
    db.addRecord(wl, target, rec(2, 4, '2026-01-01T00:00:03Z')); // same trace again, slower
    const best = db.best('w1', target.key, 5);
    expect(best.map((r) => r.ms)).toEqual([1, 3]); // one per trace, errors excluded
    expect(best[0].trace).toEqual([{ p: 'split', stage: 0, axis: 'i0', factor: 4 }]);
    expect(db.records('w1', target.key)).toHaveLength(4);
    expect(db.bestFor('w1', { ...target, key: 'other', features: [...target.features, 'relaxed-simd'] })?.ms).toBe(1);
    const file = join(dir, 'out.jsonl');
    expect(db.exportFile(file)).toBe(4);
    db.close();

    const db2 = TuningDatabase.open(join(dir, 'b.sqlite'));
    expect(db2.importFile(file)).toEqual({ added: 4, skipped: 0 });
    expect(db2.importFile(file)).toEqual({ added: 0, skipped: 4 });
    expect(`${db2.exportLines().join('\n')}\n`).toBe(readFileSync(file, 'utf8'));
    // a bad line rejects the whole import: no partial records
    writeFileSync(join(dir, 'bad.jsonl'), readFileSync(file, 'utf8').replace(/\n$/, '\n{"v":1,"broken":true}\n'));
    const db3 = TuningDatabase.open(join(dir, 'c.sqlite'));
    expect(() => db3.importFile(join(dir, 'bad.jsonl'))).toThrow(/line|not a Kiln tuning record/);
    expect(db3.counts().records).toBe(0);
    db2.close();
    db3.close();
  });

  it('a file that is not a SQLite database gives E_TUNING_DB', () => {
    const p = join(tmp(), 'kiln.sqlite');
    writeFileSync(p, 'this is not a database, just some text that is long enough to look like a header'.repeat(20));
    let err: unknown;
    try {
      TuningDatabase.open(p);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KilnError);
    expect((err as KilnError).code).toBe('E_TUNING_DB');
  });
});

describe('workloads and search space', () => {
  it('gives the same key to the same kernel built twice, another to another shape', () => {
    const a = tasksOf(matmulModel(64, 32, 48).bytes)[0];
    for (let i = 0; i < 100; i++) freshVar('x'); // variable counters move on: the key must not
    const b = tasksOf(matmulModel(64, 32, 48).bytes)[0];
    const c = tasksOf(matmulModel(64, 32, 64).bytes)[0];
    expect(b.workload.key).toBe(a.workload.key);
    expect(b.workload.text).toBe(a.workload.text);
    expect(c.workload.key).not.toBe(a.workload.key);
    expect(a.workload.key).toMatch(/^[0-9a-f]{64}$/);
  });

  it('samples valid traces deterministically per seed; the default schedule is inside the space', () => {
    const t = tasksOf(matmulModel(64, 64, 64).bytes)[0];
    expect(t.space.tunable).toBe(true);
    const d = t.space.defaults()!;
    expect(lowered(t, t.space.trace(d))).toBe(lowered(t, t.kernel.trace));
    const draw = (seed: number) => {
      const r = new Rng(seed);
      return Array.from({ length: 20 }, () => t.space.trace(t.space.sample(r)));
    };
    expect(JSON.stringify(draw(7))).toBe(JSON.stringify(draw(7)));
    expect(JSON.stringify(draw(7))).not.toBe(JSON.stringify(draw(8)));
    for (const tr of draw(7)) expect(() => lowered(t, tr)).not.toThrow();
    const r = new Rng(3);
    for (let i = 0; i < 20; i++) expect(t.space.valid(t.space.mutate(d, r))).toBe(true);
  });

  it.skipIf(!existsSync('.cache/models/mobilenet_v2/model.onnx'))(
    "holds the default schedule of the real models' register-tiled and lane-reduction kernels",
    () => {
      let tiled = 0,
        reproduced = 0,
        searched = 0;
      for (const name of ['mobilenet_v2', 'squeezenet1_1', 'bert']) {
        for (const t of tasksOf(readFileSync(`.cache/models/${name}/model.onnx`))) {
          if (!t.kernel.trace.some((s) => s.p === 'cacheWrite')) continue;
          tiled++;
          const d = t.space.defaults();
          if (!d) continue;
          // epilogue fusion, partial row tiles, shifted lane tiles, fused rows (pointwise convolutions) and lane
          // reductions included
          expect(lowered(t, t.space.trace(d))).toBe(lowered(t, t.kernel.trace));
          reproduced++;
          // every stage that accumulates in registers by default is searched (not kept fixed at its default)
          const cw = new Set(t.kernel.trace.filter((s) => s.p === 'cacheWrite').map((s) => s.stage));
          expect(
            t.space.stages
              .filter((s) => cw.has(s.stage as number))
              .every((s) => s.kind === 'reduce' || s.kind === 'lane'),
          ).toBe(true);
          searched++;
        }
      }
      expect(tiled).toBeGreaterThan(40);
      expect(reproduced).toBe(tiled);
      expect(searched).toBe(tiled);
    },
  );

  it.skipIf(!existsSync('.cache/models/bert/model.onnx'))(
    'samples candidates that build for every kernel of the real models (0-d constants included)',
    () => {
      const r = new Rng(11);
      let built = 0;
      for (const name of ['bert', 'squeezenet1_1']) {
        for (const t of tasksOf(readFileSync(`.cache/models/${name}/model.onnx`))) {
          if (!t.space.tunable) continue;
          for (let i = 0; i < 2; i++) {
            expect(() => lowered(t, t.space.trace(t.space.sample(r)))).not.toThrow();
            built++;
          }
        }
      }
      expect(built).toBeGreaterThan(20);
    },
  );

  it('proposes the same candidates given the same seed and measurements', () => {
    const t = tasksOf(matmulModel(64, 64, 64).bytes)[0];
    const run = (seed: number) => {
      const s = new TaskSearch(t.space, t.kernel, t.workload.key, { strategy: 'evolutionary', seed });
      const out: string[] = [];
      s.observe({ hash: 'default', trace: t.kernel.trace, decisions: t.space.defaults() }, 1.0);
      for (let round = 0; round < 3; round++) {
        const cands = s.propose(4);
        cands.forEach((c, i) => {
          out.push(c.hash);
          s.observe(c, 1 + ((c.features[0] * 7 + i) % 3) / 10);
        }); // fake, deterministic
      }
      return out;
    };
    expect(run(1)).toEqual(run(1));
    expect(run(1)).not.toEqual(run(2));
  });
});

describe('tuning end to end', () => {
  it('tunes a MatMul 256^3, records results, and the tuned compile matches ONNX Runtime', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'kiln.sqlite');
    const { bytes, input } = matmulModel(256, 256, 256);
    const report = await tune(bytes, {
      trials: 6,
      batch: 3,
      workers: 2,
      db: dbPath,
      seed: 1,
      repeats: 3,
      minRepeatMs: 2,
    });
    expect(report.trials).toBe(6);
    const task = report.tasks[0];
    expect(task.defaultMs).toBeGreaterThan(0);
    // the end's side-by-side re-measure of a confirmed candidate (at least 2% faster when confirmed) may come out a
    // little either way
    expect(task.bestMs).toBeLessThanOrEqual(task.defaultMs! * 1.05);
    console.log(
      `matmul 256^3: default ${task.defaultMs!.toFixed(3)} ms, best after ${report.trials} trials ${task.bestMs!.toFixed(3)} ms, ${report.errors} errors`,
    );

    const db = TuningDatabase.open(dbPath);
    const nRecords = db.records(task.workload, report.target.key).length;
    try {
      // default + 6 trials (+ default and best measured again at the end when a candidate was confirmed faster than
      // the default), plus the side-by-side confirmations of candidates that beat the incumbent in their batch
      const recs = db.records(task.workload, report.target.key);
      expect([7, 9]).toContain(recs.filter((r) => r.search !== 'confirm').length);
      expect(recs.filter((r) => !r.error).every((r) => r.rel !== undefined && r.confirmed !== undefined)).toBe(true);
      const lookup = tunedTraces(db);
      const r = await compile(bytes, { traceFor: lookup.traceFor });
      expect(r.program.kernels.filter((k) => k.tuned)).toHaveLength(1);
      expect(lookup.used).toHaveLength(1);
      const model = await load(r.artifact);
      const got = model.runSync({ A: input }).Y;
      const want = (await runOrt(bytes, { A: input })).Y;
      expect(compareTensors(got, want)?.message).toBeUndefined();
    } finally {
      db.close();
    }

    // resume: a second run reads the records back and does not re-propose them
    const again = await tune(bytes, {
      trials: 3,
      batch: 3,
      workers: 1,
      db: dbPath,
      seed: 1,
      repeats: 2,
      minRepeatMs: 1,
    });
    expect(again.tasks[0].resumed).toBe(nRecords);
  });

  for (const interleaved of [true, false]) {
    it(`records a candidate with wrong numbers, one that traps, or one that hangs, as an error and goes on (${interleaved ? 'measured interleaved' : 'a runner measuring one at a time'})`, async () => {
      const dbPath = join(tmp(), 'kiln.sqlite');
      const inner = new PoolRunner();
      // programs numbered in order of first appearance (0: the default schedule, measured again in every batch)
      const ids = new Map<string, number>();
      const idOf = (wasm: Uint8Array) => {
        const k = Buffer.from(wasm).toString('base64');
        if (!ids.has(k)) ids.set(k, ids.size);
        return ids.get(k)!;
      };
      const corrupt = (t: Tensor) => {
        (t.data as Float32Array)[17] += 1;
      }; // a schedule that computes a wrong value
      const faulty: Runner = {
        async measure(task: MeasureTask, timeoutMs: number) {
          const id = idOf(task.wasm);
          if (id === 2) return inner.measure({ ...task, fault: 'hang' }, 1500);
          if (id === 6) return inner.measure({ ...task, fault: 'trap' }, timeoutMs);
          const r = await inner.measure(task, timeoutMs);
          if (id === 1 && r.ok) corrupt(r.out.output);
          return r;
        },
        ...(interleaved
          ? {
              // a set with the hanging candidate times out; the tuner then measures its programs one at a time
              async measureSet(task: MeasureSetTask, timeoutMs: number) {
                const pid = task.programs.map((p) => idOf(p.wasm));
                const r = await inner.measureSet(
                  {
                    ...task,
                    programs: task.programs.map((p, i) =>
                      pid[i] === 6
                        ? { ...p, fault: 'trap' as const }
                        : pid[i] === 2
                          ? { ...p, fault: 'hang' as const }
                          : p,
                    ),
                  },
                  pid.includes(2) ? 300 : timeoutMs,
                );
                if (r.ok)
                  r.out.forEach((o, i) => {
                    if (pid[i] === 1 && o.ok) corrupt(o.output);
                  });
                if (r.ok && pid.includes(2)) throw new Error('the set with a hanging candidate should have timed out');
                return r;
              },
            }
          : {}),
        close: () => inner.close(),
      };
      const { bytes } = matmulModel(64, 64, 64);
      try {
        // two batches of 4: the hang in the first (interleaved: its set times out), the trap in the second
        const report = await tune(bytes, {
          trials: 8,
          batch: 4,
          workers: 1,
          db: dbPath,
          seed: 5,
          repeats: 2,
          minRepeatMs: 1,
          runner: faulty,
        });
        expect(report.trials).toBe(8);
        expect(report.errors).toBe(3);
        const db = TuningDatabase.open(dbPath);
        const recs = db.records(report.tasks[0].workload, report.target.key);
        expect(
          recs
            .filter((r) => r.errorKind)
            .map((r) => r.errorKind)
            .sort(),
        ).toEqual(['run', 'timeout', 'wrong']);
        const wrong = recs.find((r) => r.errorKind === 'wrong')!;
        expect(wrong.error).toMatch(/wrong result/);
        expect(
          db
            .best(report.tasks[0].workload, report.target.key, 10)
            .some((r) => JSON.stringify(r.trace) === JSON.stringify(wrong.trace)),
        ).toBe(false);
        db.close();
      } finally {
        await inner.close();
      }
    });
  }
});
