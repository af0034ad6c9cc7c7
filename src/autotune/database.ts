// The tuning database: SQLite through better-sqlite3, WAL mode so several tuning processes can share one file.
// workloads (canonical tensor-expression key), targets (engine + features key), records (one measured or failed
// candidate trace each). Every write is one transaction: a killed process leaves whole records or none.
import { mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import { requireOptional } from '../node/optional-dependency.js';
import { KilnError } from '../runtime/errors.js';
import type { TraceStep } from '../schedule/schedule.js';
import type { TargetInfo } from './target.js';
import type { Decisions } from './space.js';

export const DEFAULT_DB_PATH = 'tuning-db/kiln.sqlite';
// 2: records.rel and records.confirmed (a version-1 database gets both columns, NULL in its records, when opened)
const SCHEMA_VERSION = 2;
const EXPORT_VERSION = 1;

/** 'resources': a GPU candidate over the per-block register / shared-memory / thread limits (rejected before measuring). */
export type ErrorKind = 'build' | 'resources' | 'run' | 'timeout' | 'wrong';

export interface WorkloadRow {
  key: string;
  format: number;
  text: string;
  ops?: string[];
  flops?: number;
}

export interface TuningRecord {
  workload: string;
  target: string;
  trace: TraceStep[];
  /** Per-repeat latencies in ms (empty when the candidate failed). */
  costs: number[];
  /** Median of costs; undefined on error, and for candidates only built (CUDA --build-only). */
  ms?: number;
  error?: string;
  errorKind?: ErrorKind;
  /** ISO time the record was made. */
  time: string;
  kiln: string;
  /** Who proposed it: 'default', 'evolutionary', 'random', ... */
  search?: string;
  /** The search-space decisions behind the trace (lets a resumed search mutate it). */
  decisions?: Decisions;
  /**
   * Cost relative to the task's default schedule, measured interleaved with it in the same batch (median over
   * rounds of candidate / default), so that machine-load drift between batches cancels out; 1 for the default.
   * For a confirmation ('confirm'), the incumbent's rel times the side-by-side ratio to the incumbent.
   * Undefined in records of a Kiln before relative timing (ranked by ms then).
   */
  rel?: number;
  /**
   * true: a record compiling may apply (the default schedule, or a candidate that beat the incumbent again when
   * re-measured interleaved against it); false: measured (relatively) but not applied; undefined: a record of a
   * Kiln before confirmations.
   */
  confirmed?: boolean;
}

interface RecordRow {
  workload: string;
  target: string;
  trace: string;
  costs: string;
  ms: number | null;
  error: string | null;
  error_kind: string | null;
  created_at: string;
  kiln_version: string;
  search: string | null;
  decisions: string | null;
  rel: number | null;
  confirmed: number | null;
  id: number;
  trace_hash: string;
}

export const traceHash = (trace: readonly TraceStep[]) =>
  createHash('sha256').update(JSON.stringify(trace)).digest('hex').slice(0, 32);

const dbError = (path: string, e: unknown) =>
  new KilnError(
    'E_TUNING_DB',
    `tuning database '${path}' cannot be used: ${typeof e === 'string' ? e : (e as Error).message}`,
    { hint: 'it is not a Kiln tuning database (or it is corrupt): move it away, or pass another path with --db' },
  );

export class TuningDatabase {
  /** `relColumns`: the records table has rel and confirmed (schema 2; a version-1 database opened read-only lacks them). */
  private constructor(
    private readonly db: Database.Database,
    readonly path: string,
    private readonly relColumns = true,
  ) {}

  /** Opens (creating when missing) the database at `path`. A file that is not a SQLite database gives E_TUNING_DB. */
  static open(path: string = DEFAULT_DB_PATH, opts: { readonly?: boolean } = {}): TuningDatabase {
    let db: Database.Database | undefined;
    try {
      if (path !== ':memory:' && !opts.readonly) mkdirSync(dirname(path), { recursive: true });
      const Sqlite = requireOptional<typeof Database>('better-sqlite3');
      db = new Sqlite(path, { readonly: !!opts.readonly, fileMustExist: !!opts.readonly });
      db.pragma('busy_timeout = 10000');
      if (!opts.readonly) db.pragma('journal_mode = WAL');
      db.pragma('foreign_keys = ON');
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new KilnError(
          'E_TUNING_DB',
          `tuning database '${path}' has schema ${version}, this Kiln reads up to ${SCHEMA_VERSION}`,
          { hint: 'use a newer Kiln, or another --db' },
        );
      }
      if (version < SCHEMA_VERSION && opts.readonly && version < 1) throw dbError(path, 'no Kiln tables');
      if (version < SCHEMA_VERSION && !opts.readonly) {
        const d = db;
        d.transaction(() => {
          // another process may have created or migrated it since user_version was read: read it again, inside
          // the write transaction
          const v = d.pragma('user_version', { simple: true }) as number;
          if (v < 1)
            d.exec(`
          CREATE TABLE IF NOT EXISTS workloads (
            id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, format INTEGER NOT NULL, text TEXT NOT NULL,
            ops TEXT, flops REAL);
          CREATE TABLE IF NOT EXISTS targets (
            id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, arch TEXT NOT NULL,
            features TEXT NOT NULL, engine TEXT, cpu TEXT);
          CREATE TABLE IF NOT EXISTS records (
            id INTEGER PRIMARY KEY,
            workload_id INTEGER NOT NULL REFERENCES workloads(id),
            target_id INTEGER NOT NULL REFERENCES targets(id),
            trace TEXT NOT NULL, trace_hash TEXT NOT NULL, costs TEXT NOT NULL, ms REAL,
            error TEXT, error_kind TEXT, created_at TEXT NOT NULL, kiln_version TEXT NOT NULL, search TEXT, decisions TEXT,
            UNIQUE (workload_id, target_id, trace_hash, created_at));
          CREATE INDEX IF NOT EXISTS records_best ON records (workload_id, target_id, ms);`);
          if (v < 2)
            d.exec('ALTER TABLE records ADD COLUMN rel REAL; ALTER TABLE records ADD COLUMN confirmed INTEGER;');
          if (v < SCHEMA_VERSION) d.pragma(`user_version = ${SCHEMA_VERSION}`);
        }).immediate();
      }
      const cols = (db.pragma('table_info(records)') as { name: string }[]).map((c) => c.name);
      return new TuningDatabase(db, path, cols.includes('rel'));
    } catch (e) {
      try {
        if (db?.inTransaction) db.exec('ROLLBACK');
      } catch {
        /* ignore */
      }
      db?.close();
      if (e instanceof KilnError) throw e;
      throw dbError(path, e);
    }
  }

  close(): void {
    this.db.close();
  }

  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof KilnError) throw e;
      throw dbError(this.path, e);
    }
  }

  private workloadId(w: WorkloadRow): number {
    this.db
      .prepare(
        'INSERT INTO workloads (key, format, text, ops, flops) VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING',
      )
      .run(w.key, w.format, w.text, w.ops ? JSON.stringify(w.ops) : null, w.flops ?? null);
    return (this.db.prepare('SELECT id FROM workloads WHERE key = ?').get(w.key) as { id: number }).id;
  }

  private targetId(t: Omit<TargetInfo, 'engine' | 'cpu'> & { engine?: string; cpu?: string }): number {
    this.db
      .prepare(
        'INSERT INTO targets (key, kind, arch, features, engine, cpu) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING',
      )
      .run(t.key, t.kind, t.arch, JSON.stringify(t.features), t.engine ?? null, t.cpu ?? null);
    return (this.db.prepare('SELECT id FROM targets WHERE key = ?').get(t.key) as { id: number }).id;
  }

  /** Adds records (with their workload and target rows) in one transaction; returns how many were new. */
  addRecords(
    items: readonly { workload: WorkloadRow; target: TargetInfo | ExportedTarget; record: TuningRecord }[],
  ): number {
    return this.guard(() =>
      this.db
        .transaction(() => {
          let added = 0;
          const ins = this.db.prepare(`INSERT OR IGNORE INTO records
        (workload_id, target_id, trace, trace_hash, costs, ms, error, error_kind, created_at, kiln_version, search, decisions, rel, confirmed)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
          for (const { workload, target, record: r } of items) {
            if (r.workload !== workload.key || r.target !== target.key)
              throw new KilnError('E_INTERNAL', 'tuning record keys do not match its workload/target');
            const res = ins.run(
              this.workloadId(workload),
              this.targetId(target as TargetInfo),
              JSON.stringify(r.trace),
              traceHash(r.trace),
              JSON.stringify(r.costs),
              r.error ? null : (r.ms ?? null),
              r.error ?? null,
              r.errorKind ?? null,
              r.time,
              r.kiln,
              r.search ?? null,
              r.decisions ? JSON.stringify(r.decisions) : null,
              r.error ? null : (r.rel ?? null),
              r.error || r.confirmed === undefined ? null : r.confirmed ? 1 : 0,
            );
            added += res.changes;
          }
          return added;
        })
        .immediate(),
    );
  }

  addRecord(workload: WorkloadRow, target: TargetInfo, record: TuningRecord): void {
    this.addRecords([{ workload, target, record }]);
  }

  /**
   * Withdraws the confirmation of a trace's records on a workload and target (compiling stops applying it): the
   * tuner does this when a confirmed trace measures no faster than the default schedule side by side. Returns how
   * many records changed.
   */
  revokeConfirmation(workload: string, target: string, hash: string): number {
    if (!this.relColumns) return 0;
    return this.guard(
      () =>
        this.db
          .prepare(`UPDATE records SET confirmed = 0 WHERE confirmed = 1 AND trace_hash = ?
      AND workload_id = (SELECT id FROM workloads WHERE key = ?) AND target_id = (SELECT id FROM targets WHERE key = ?)`)
          .run(hash, workload, target).changes,
    );
  }

  private static toRecord(r: RecordRow): TuningRecord {
    return {
      workload: r.workload,
      target: r.target,
      trace: JSON.parse(r.trace),
      costs: JSON.parse(r.costs),
      ms: r.ms ?? undefined,
      error: r.error ?? undefined,
      errorKind: (r.error_kind ?? undefined) as ErrorKind | undefined,
      time: r.created_at,
      kiln: r.kiln_version,
      search: r.search ?? undefined,
      decisions: r.decisions ? JSON.parse(r.decisions) : undefined,
      ...(r.rel !== null && r.rel !== undefined ? { rel: r.rel } : {}),
      ...(r.confirmed !== null && r.confirmed !== undefined ? { confirmed: !!r.confirmed } : {}),
    };
  }

  private get SELECT(): string {
    return `SELECT r.id, r.trace_hash, w.key AS workload, t.key AS target, r.trace, r.costs, r.ms, r.error, r.error_kind,
    r.created_at, r.kiln_version, r.search, r.decisions, ${this.relColumns ? 'r.rel, r.confirmed' : 'NULL AS rel, NULL AS confirmed'}
    FROM records r JOIN workloads w ON w.id = r.workload_id JOIN targets t ON t.id = r.target_id`;
  }

  /**
   * The k best records of a workload on a target that compiling may apply (one per distinct trace); with `kiln`,
   * only records made by those Kiln versions. Where any of them were timed relative to the default schedule
   * (`confirmed` set), only confirmed ones count, ranked by rel: a candidate whose one fast measurement came from a
   * quiet moment of the machine, and that did not beat the incumbent again side by side, is never applied. Records
   * of an older Kiln (no `confirmed`) alone are ranked by ms, as that Kiln did.
   */
  best(workload: string, target: string, k = 1, kiln?: readonly string[]): TuningRecord[] {
    const v = kiln ? 'AND r.kiln_version IN (SELECT value FROM json_each(@kiln))' : '';
    const rows = this.guard(
      () =>
        this.db
          .prepare(`${this.SELECT} WHERE w.key = @w AND t.key = @t AND r.ms IS NOT NULL ${v} ORDER BY r.id`)
          .all({ w: workload, t: target, ...(kiln ? { kiln: JSON.stringify(kiln) } : {}) }) as RecordRow[],
    );
    const relative = rows.some((r) => r.confirmed !== null);
    const pool = relative ? rows.filter((r) => r.confirmed === 1 && r.rel !== null) : rows;
    const score = (r: RecordRow) => (relative ? r.rel! : r.ms!);
    const perTrace = new Map<string, RecordRow>();
    for (const r of pool) {
      const o = perTrace.get(r.trace_hash);
      if (!o || score(r) < score(o)) perTrace.set(r.trace_hash, r);
    }
    return [...perTrace.values()]
      .sort((a, b) => score(a) - score(b) || a.id - b.id)
      .slice(0, k)
      .map(TuningDatabase.toRecord);
  }

  /** The Kiln versions that made successful records of a workload (any target). */
  kilnVersions(workload: string): string[] {
    return this.guard(() =>
      (
        this.db
          .prepare(`SELECT DISTINCT r.kiln_version AS v FROM records r JOIN workloads w ON w.id = r.workload_id
      WHERE w.key = ? AND r.ms IS NOT NULL ORDER BY v`)
          .all(workload) as { v: string }[]
      ).map((r) => r.v),
    );
  }

  /** Every record of a workload on a target, oldest first. */
  records(workload: string, target: string): TuningRecord[] {
    return this.guard(() =>
      (
        this.db
          .prepare(`${this.SELECT} WHERE w.key = ? AND t.key = ? ORDER BY r.id`)
          .all(workload, target) as RecordRow[]
      ).map(TuningDatabase.toRecord),
    );
  }

  /**
   * The best record for compiling on `target`: measured on exactly that target if any, else on a target of the
   * same kind and architecture whose features the current one has too (a schedule from a SIMD-only engine runs
   * on one that also has relaxed SIMD).
   */
  bestFor(
    workload: string,
    target: Pick<TargetInfo, 'key' | 'kind' | 'arch' | 'features'>,
    kiln?: readonly string[],
  ): TuningRecord | undefined {
    const exact = this.best(workload, target.key, 1, kiln)[0];
    if (exact) return exact;
    const others = this.guard(
      () =>
        this.db
          .prepare('SELECT key, features FROM targets WHERE kind = ? AND arch = ? AND key != ? ORDER BY key')
          .all(target.kind, target.arch, target.key) as { key: string; features: string }[],
    );
    let best: TuningRecord | undefined;
    // relative costs compare across machines better than times do; a relatively timed record wins over one of an
    // older Kiln
    const better = (r: TuningRecord, b: TuningRecord) =>
      (r.rel !== undefined) !== (b.rel !== undefined)
        ? r.rel !== undefined
        : r.rel !== undefined
          ? r.rel < b.rel!
          : r.ms! < b.ms!;
    for (const t of others) {
      const feats = JSON.parse(t.features) as string[];
      if (!feats.every((f) => target.features.includes(f))) continue;
      const r = this.best(workload, t.key, 1, kiln)[0];
      if (r && (!best || better(r, best))) best = r;
    }
    return best;
  }

  counts(): { workloads: number; targets: number; records: number; errors: number } {
    return this.guard(() => {
      const n = (sql: string) => (this.db.prepare(sql).get() as { n: number }).n;
      return {
        workloads: n('SELECT count(*) AS n FROM workloads'),
        targets: n('SELECT count(*) AS n FROM targets'),
        records: n('SELECT count(*) AS n FROM records'),
        errors: n('SELECT count(*) AS n FROM records WHERE error IS NOT NULL'),
      };
    });
  }

  /** Every record as one JSON object per line (self-contained: workload text and target included). */
  exportLines(): string[] {
    return this.guard(() => {
      const rows = this.db
        .prepare(`SELECT w.key AS wkey, w.format, w.text, w.ops, w.flops, t.key AS tkey, t.kind, t.arch,
        t.features, t.engine, t.cpu, r.trace, r.costs, r.ms, r.error, r.error_kind, r.created_at, r.kiln_version, r.search, r.decisions,
        ${this.relColumns ? 'r.rel, r.confirmed' : 'NULL AS rel, NULL AS confirmed'}
        FROM records r JOIN workloads w ON w.id = r.workload_id JOIN targets t ON t.id = r.target_id ORDER BY r.id`)
        .all() as Record<string, unknown>[];
      return rows.map((r) =>
        JSON.stringify({
          v: EXPORT_VERSION,
          workload: {
            key: r.wkey,
            format: r.format,
            text: r.text,
            ops: r.ops ? JSON.parse(r.ops as string) : undefined,
            flops: r.flops ?? undefined,
          },
          target: {
            key: r.tkey,
            kind: r.kind,
            arch: r.arch,
            features: JSON.parse(r.features as string),
            engine: r.engine ?? undefined,
            cpu: r.cpu ?? undefined,
          },
          trace: JSON.parse(r.trace as string),
          costs: JSON.parse(r.costs as string),
          ms: r.ms ?? undefined,
          error: r.error ?? undefined,
          errorKind: r.error_kind ?? undefined,
          time: r.created_at,
          kiln: r.kiln_version,
          search: r.search ?? undefined,
          decisions: r.decisions ? JSON.parse(r.decisions as string) : undefined,
          rel: r.rel ?? undefined,
          confirmed: r.confirmed === null || r.confirmed === undefined ? undefined : !!r.confirmed,
        }),
      );
    });
  }

  exportFile(file: string): number {
    const lines = this.exportLines();
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      writeFileSync(tmp, lines.map((l) => `${l}\n`).join(''));
      renameSync(tmp, file);
    } catch (e) {
      throw new KilnError('E_IO', `cannot write '${file}': ${(e as Error).message}`);
    }
    return lines.length;
  }

  /** Imports JSON lines; all or nothing. Records already present are skipped. */
  importLines(lines: readonly string[], source = 'input'): { added: number; skipped: number } {
    const items = lines
      .map((l, i) => ({ l, i }))
      .filter(({ l }) => l.trim())
      .map(({ l, i }) => parseExportLine(l, `${source}:${i + 1}`));
    const added = this.addRecords(items);
    return { added, skipped: items.length - added };
  }

  importFile(file: string): { added: number; skipped: number } {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new KilnError('E_IO', `cannot read '${file}': ${(e as Error).message}`);
    }
    return this.importLines(text.split('\n'), file);
  }
}

export interface ExportedTarget {
  key: string;
  kind: TargetInfo['kind'];
  arch: string;
  features: string[];
  engine?: string;
  cpu?: string;
}

function parseExportLine(
  line: string,
  where: string,
): { workload: WorkloadRow; target: ExportedTarget; record: TuningRecord } {
  const bad = (why: string) =>
    new KilnError('E_INPUT', `${where}: not a Kiln tuning record (${why})`, {
      hint: 'import files written by `kiln db export`',
    });
  // biome-ignore lint/suspicious/noExplicitAny: parsed JSON, checked field by field below
  let o: Record<string, any>;
  try {
    o = JSON.parse(line);
  } catch {
    throw bad('invalid JSON');
  }
  if (!o || typeof o !== 'object' || o.v !== EXPORT_VERSION)
    throw bad(`export version ${o?.v}, expected ${EXPORT_VERSION}`);
  const w = o.workload,
    t = o.target;
  if (typeof w?.key !== 'string' || typeof w.text !== 'string' || typeof w.format !== 'number') throw bad('workload');
  if (
    typeof t?.key !== 'string' ||
    typeof t.kind !== 'string' ||
    typeof t.arch !== 'string' ||
    !Array.isArray(t.features)
  )
    throw bad('target');
  if (
    !Array.isArray(o.trace) ||
    !o.trace.every(
      (s: { p?: unknown; stage?: unknown } | null) => s && typeof s.p === 'string' && Number.isInteger(s.stage),
    )
  )
    throw bad('trace');
  if (!Array.isArray(o.costs) || !o.costs.every((c: unknown) => typeof c === 'number')) throw bad('costs');
  if (typeof o.time !== 'string' || typeof o.kiln !== 'string') throw bad('time/kiln');
  if (o.ms !== undefined && typeof o.ms !== 'number') throw bad('ms'); // no ms and no error: built only
  if (o.rel !== undefined && typeof o.rel !== 'number') throw bad('rel'); // rel and confirmed: absent in older exports
  if (o.confirmed !== undefined && typeof o.confirmed !== 'boolean') throw bad('confirmed');
  return {
    workload: { key: w.key, format: w.format, text: w.text, ops: w.ops, flops: w.flops },
    target: { key: t.key, kind: t.kind, arch: t.arch, features: t.features, engine: t.engine, cpu: t.cpu },
    record: {
      workload: w.key,
      target: t.key,
      trace: o.trace,
      costs: o.costs,
      ms: o.ms,
      error: o.error,
      errorKind: o.errorKind,
      time: o.time,
      kiln: o.kiln,
      search: o.search,
      decisions: o.decisions && typeof o.decisions === 'object' ? o.decisions : undefined,
      rel: o.rel,
      confirmed: o.confirmed,
    },
  };
}
