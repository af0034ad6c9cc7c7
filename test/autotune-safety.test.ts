// Safety of the tuning database (issue 4, item 7): `kill -9` during `kiln tune` leaves a database that passes
// SQLite's integrity check, holds only whole records, and that a new run resumes from; two `kiln tune` processes
// sharing one database both finish and all their records are there. Runs the built CLI (dist/cli/kiln.js).
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers/temp.js';
import Database from 'better-sqlite3';
import { matmulModel } from '../src/bench/matmul-model.js';
import { TuningDatabase, traceHash } from '../src/autotune/database.js';
import { tune } from '../src/autotune/tuner.js';

const cli = join(process.cwd(), 'dist/cli/kiln.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Child {
  pid: number;
  done: Promise<{ code: number | null; signal: string | null; out: string }>;
  kill: (sig: NodeJS.Signals) => void;
}
function kiln(args: string[]): Child {
  const p = spawn('node', [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => {
    out += d;
  });
  p.stderr.on('data', (d) => {
    out += d;
  });
  const done = new Promise<{ code: number | null; signal: string | null; out: string }>((res) =>
    p.on('close', (code, signal) => res({ code, signal, out })),
  );
  return { pid: p.pid!, done, kill: (sig) => p.kill(sig) };
}

/** Every record row checked field by field: a record is either whole or absent. */
function checkDb(path: string): { n: number; hashes: Set<string>; trials: number } {
  const raw = new Database(path);
  try {
    expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(raw.pragma('foreign_key_check')).toEqual([]);
    const rows = raw.prepare('SELECT * FROM records ORDER BY id').all() as Record<string, unknown>[];
    const hashes = new Set<string>();
    let trials = 0;
    for (const r of rows) {
      const trace = JSON.parse(r.trace);
      expect(Array.isArray(trace)).toBe(true);
      expect(traceHash(trace)).toBe(r.trace_hash);
      const costs = JSON.parse(r.costs) as number[];
      if (r.error === null) {
        expect(typeof r.ms).toBe('number');
        expect(costs.length).toBeGreaterThan(0);
      } else {
        expect(r.ms).toBeNull();
        expect(typeof r.error_kind).toBe('string');
      }
      expect(Number.isNaN(Date.parse(r.created_at))).toBe(false);
      expect(r.kiln_version).toMatch(/^\d+\.\d+\.\d+/);
      if (!['default', 'remeasure', 'confirm'].includes(r.search ?? '')) trials++;
      hashes.add(r.trace_hash);
    }
    return { n: rows.length, hashes, trials };
  } finally {
    raw.close();
  }
}

describe('tuning database safety', () => {
  it('kill -9 during `kiln tune` leaves whole records, and a new run resumes from them', async () => {
    const dir = tempDir('kiln-safety-');
    const model = join(dir, 'mm.onnx'),
      dbPath = join(dir, 'kiln.sqlite');
    const { bytes } = matmulModel(128, 128, 128);
    writeFileSync(model, bytes);
    const child = kiln(['tune', model, '--trials', '500', '--workers', '1', '--db', dbPath, '--seed', '3']);
    // wait until some records are there (default + a few trials), then kill it mid-run
    const t0 = Date.now();
    let n = 0;
    const watch = TuningDatabase.open(dbPath);
    try {
      while (Date.now() - t0 < 25_000) {
        await sleep(100);
        n = watch.counts().records;
        if (n >= 6) break;
      }
    } finally {
      watch.close();
    }
    expect(n).toBeGreaterThanOrEqual(6);
    child.kill('SIGKILL');
    const res = await child.done;
    expect(res.signal).toBe('SIGKILL');

    const before = checkDb(dbPath);
    expect(before.n).toBeGreaterThanOrEqual(n);
    expect(before.trials).toBeGreaterThan(0);

    // resume: every record read back, none of the measured traces proposed again
    const again = await tune(bytes, {
      trials: 4,
      batch: 4,
      workers: 1,
      db: dbPath,
      seed: 3,
      repeats: 2,
      minRepeatMs: 1,
    });
    expect(again.trials).toBe(4);
    expect(again.tasks[0].resumed).toBe(before.n);
    const db = TuningDatabase.open(dbPath);
    try {
      const recs = db.records(again.tasks[0].workload, again.target.key).slice(before.n);
      const fresh = recs.filter((r) => !['default', 'remeasure', 'confirm'].includes(r.search ?? ''));
      expect(fresh).toHaveLength(4);
      for (const r of fresh) expect(before.hashes.has(traceHash(r.trace))).toBe(false);
    } finally {
      db.close();
    }
    expect(checkDb(dbPath).n).toBeGreaterThanOrEqual(before.n + 5);
  }, 60_000);

  it('two `kiln tune` processes share one database: both finish, all records are there', async () => {
    const dir = tempDir('kiln-safety-');
    const a = join(dir, 'a.onnx'),
      b = join(dir, 'b.onnx'),
      dbPath = join(dir, 'kiln.sqlite');
    writeFileSync(a, matmulModel(96, 96, 96).bytes);
    writeFileSync(b, matmulModel(64, 128, 96).bytes);
    // the same model twice (same workload rows, contending inserts) and another one, all at once
    const runs = [
      kiln(['tune', a, '--trials', '12', '--workers', '1', '--db', dbPath, '--seed', '1']),
      kiln(['tune', a, '--trials', '12', '--workers', '1', '--db', dbPath, '--seed', '2']),
      kiln(['tune', b, '--trials', '12', '--workers', '1', '--db', dbPath, '--seed', '3']),
    ];
    const results = await Promise.all(runs.map((r) => r.done));
    for (const r of results) {
      expect(r.out).not.toMatch(/E_TUNING_DB|SQLITE_BUSY|database is locked/);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/12 trials, \d+ errors/);
    }
    const { trials } = checkDb(dbPath);
    expect(trials).toBe(36);
    const db = TuningDatabase.open(dbPath);
    try {
      expect(db.counts().workloads).toBe(2);
    } finally {
      db.close();
    }
  }, 60_000);
});
