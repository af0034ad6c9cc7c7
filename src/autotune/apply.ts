// Compiling with the tuning database: a ProgramOptions.traceFor hook that returns the best record's trace for a
// kernel's workload on this target (or a compatible one), after checking that the trace still applies.
import type { FuncNode } from '../relay-ir/expr.js';
import type { BuiltKernel } from '../compiler/kernel.js';
import { Schedule, type TraceStep } from '../schedule/schedule.js';
import type { TuningDatabase } from './database.js';
import { type TargetInfo, detectTarget } from './target.js';
import { workloadOf } from './workload.js';

export interface TunedLookup {
  traceFor: (fn: FuncNode, def: BuiltKernel) => TraceStep[] | undefined;
  /** Kernels (by name) that got a tuned trace, and records that no longer apply. */
  used: { kernel: string; workload: string; ms: number }[];
  stale: { kernel: string; workload: string; error: string }[];
}

export function tunedTraces(db: TuningDatabase, target: TargetInfo = detectTarget()): TunedLookup {
  const used: TunedLookup['used'] = [], stale: TunedLookup['stale'] = [];
  const traceFor = (_fn: FuncNode, def: BuiltKernel): TraceStep[] | undefined => {
    const w = workloadOf(def);
    const rec = db.bestFor(w.key, target);
    if (!rec) return undefined;
    try {
      const sch = new Schedule([def.output]);
      for (const s of rec.trace) sch.apply(s);
    } catch (e) {
      stale.push({ kernel: def.prim.name, workload: w.key, error: (e as Error).message });
      return undefined;
    }
    used.push({ kernel: def.prim.name, workload: w.key, ms: rec.ms! });
    return rec.trace;
  };
  return { traceFor, used, stale };
}
