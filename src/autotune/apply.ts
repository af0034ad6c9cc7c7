// Compiling with the tuning database: a ProgramOptions.traceFor hook that returns the best record's trace for a
// kernel's workload on this target (or a compatible one), after checking that the trace still applies. The best
// record is database.ts best()'s: among relatively timed records only confirmed ones (the default schedule, or a
// candidate that beat the incumbent again side by side), lowest rel first; records of an older Kiln alone by ms.
// Records are filtered by the Kiln version that made them: records of this version are preferred; when there are
// none, records of older versions are used (their traces are re-checked against this Kiln's schedule primitives);
// records of a newer Kiln are never used (they may rely on primitives or lowering this one lacks). The workload key
// carries the workload format version, so records of another format never match at all.
import type { FuncNode } from '../relay-ir/expr.js';
import type { BuiltKernel } from '../compiler/kernel.js';
import { Schedule, type TraceStep } from '../schedule/schedule.js';
import { KilnError } from '../runtime/errors.js';
import type { TuningDatabase } from './database.js';
import { type TargetInfo, detectTarget } from './target.js';
import { workloadOf } from './workload.js';
import { VERSION } from '../compiler/version.js';

export interface TunedLookup {
  /** `fn` is not needed (the workload comes from `def`): GPU sections, which have no FuncNode at hand, pass none. */
  traceFor: (fn: FuncNode | undefined, def: BuiltKernel) => TraceStep[] | undefined;
  /**
   * Kernels (by name) that got a tuned trace (`isDefault`: the best record is the default schedule itself, which
   * tuning confirmed), and records that no longer apply.
   */
  used: { kernel: string; workload: string; ms: number; rel?: number; isDefault: boolean }[];
  stale: { kernel: string; workload: string; error: string }[];
  /** Kernels whose only records came from a newer Kiln (ignored). */
  newer: { kernel: string; workload: string; versions: string[] }[];
}

/** Compares dotted versions numerically (1.10.0 > 1.9.3); a pre-release suffix sorts before its release. */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string) => {
    const [core, pre] = v.split('-', 2);
    return { n: core.split('.').map((x) => Number.parseInt(x, 10) || 0), pre };
  };
  const x = parse(a),
    y = parse(b);
  for (let i = 0; i < Math.max(x.n.length, y.n.length); i++) {
    const d = (x.n[i] ?? 0) - (y.n[i] ?? 0);
    if (d) return Math.sign(d);
  }
  if (x.pre === y.pre) return 0;
  if (x.pre === undefined) return 1;
  if (y.pre === undefined) return -1;
  return x.pre < y.pre ? -1 : 1;
}

/**
 * `defaultTraceOf`: the schedule a kernel gets on this target without a record (default: its WebAssembly one,
 * `def.trace`), which tells a record that confirmed the default apart from a tuned one.
 */
export function tunedTraces(
  db: TuningDatabase,
  target: TargetInfo = detectTarget(),
  opts: { kiln?: string; defaultTraceOf?: (def: BuiltKernel) => readonly TraceStep[] } = {},
): TunedLookup {
  const current = opts.kiln ?? VERSION;
  const used: TunedLookup['used'] = [],
    stale: TunedLookup['stale'] = [],
    newer: TunedLookup['newer'] = [];
  const traceFor = (_fn: FuncNode | undefined, def: BuiltKernel): TraceStep[] | undefined => {
    const w = workloadOf(def);
    const versions = db.kilnVersions(w.key);
    const same = versions.filter((v) => compareVersions(v, current) === 0);
    const older = versions.filter((v) => compareVersions(v, current) < 0);
    const rec =
      (same.length ? db.bestFor(w.key, target, same) : undefined) ??
      (older.length ? db.bestFor(w.key, target, older) : undefined);
    if (!rec) {
      const nv = versions.filter((v) => compareVersions(v, current) > 0);
      if (nv.length) newer.push({ kernel: def.prim.name, workload: w.key, versions: nv });
      return undefined;
    }
    try {
      const sch = new Schedule([def.output]);
      for (const s of rec.trace) sch.apply(s);
    } catch (e) {
      stale.push({
        kernel: def.prim.name,
        workload: w.key,
        error: e instanceof KilnError ? e.detail : (e as Error).message,
      });
      return undefined;
    }
    const isDefault = JSON.stringify(rec.trace) === JSON.stringify(opts.defaultTraceOf?.(def) ?? def.trace);
    used.push({
      kernel: def.prim.name,
      workload: w.key,
      ms: rec.ms!,
      ...(rec.rel !== undefined ? { rel: rec.rel } : {}),
      isDefault,
    });
    return rec.trace;
  };
  return { traceFor, used, stale, newer };
}
