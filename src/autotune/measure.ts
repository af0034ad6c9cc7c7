// Builder and runner, separated: the builder turns candidate traces into WebAssembly in a pool of worker
// threads (piscina); the runner measures one candidate at a time in its own worker, so a candidate that hangs is
// cut off by a timeout (the worker is terminated) and one that traps only fails its own measurement.
import type { Piscina } from 'piscina';
import { requireOptional } from '../node/optional-dependency.js';
import type { TraceStep } from '../schedule/schedule.js';
import type { KernelSpec } from './tasks.js';
import type { BuildOutput } from './tasks.js';
import {
  type BuildTarget,
  type MeasureOutput,
  type MeasureSetOutput,
  type MeasureSetTask,
  type MeasureTask,
  build,
  measure,
  measureSet,
} from './worker.js';
import { ChildProcessRunner, compiledModule } from './child-runner.js';

/** A piscina pool (piscina is an optional dependency: loaded when tuning starts). */
const newPool = (opts: ConstructorParameters<typeof Piscina>[0]): Piscina =>
  new (requireOptional<typeof import('piscina')>('piscina').Piscina)(opts);

/** `kind` 'resources': a GPU candidate over the device's per-block limits (E_RESOURCES), found before measuring. */
export type BuildResult =
  | { ok: true; out: BuildOutput; ms: number }
  | { ok: false; error: string; kind?: 'build' | 'resources' };
export type MeasureResult = { ok: true; out: MeasureOutput } | { ok: false; kind: 'run' | 'timeout'; error: string };
export type MeasureSetResult =
  | { ok: true; out: MeasureSetOutput }
  | { ok: false; kind: 'run' | 'timeout'; error: string };

export interface Builder {
  /** `target`: build GPU programs or native libraries for that target instead of WebAssembly. */
  build(spec: KernelSpec, traces: readonly (TraceStep[] | null)[], target?: BuildTarget): Promise<BuildResult[]>;
  close(): Promise<void>;
}
export interface Runner {
  measure(task: MeasureTask, timeoutMs: number): Promise<MeasureResult>;
  /** Several programs measured interleaved in rounds (worker.ts measureSet). Optional: without it the tuner
   *  alternates single measurements of the reference and the candidates. `timeoutMs` is per program. A failed set
   *  (a hang, a crashed worker) is measured again one program at a time. */
  measureSet?(task: MeasureSetTask, timeoutMs: number): Promise<MeasureSetResult>;
  close(): Promise<void>;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 500);
// errors cross the worker boundary as messages: the KilnError code leads them
const buildFailure = (e: unknown): BuildResult => {
  const error = message(e);
  return { ok: false, error, kind: error.startsWith('[E_RESOURCES]') ? 'resources' : 'build' };
};

/** The compiled worker module: next to this file when running from dist, else dist/autotune/worker.js. */
export function workerFile(): string {
  return process.env.KILN_AUTOTUNE_WORKER ?? compiledModule('worker.js');
}

export class PoolBuilder implements Builder {
  private readonly pool: Piscina;
  constructor(workers: number) {
    this.pool = newPool({
      filename: workerFile(),
      minThreads: 1,
      maxThreads: Math.max(1, workers),
      idleTimeout: 60_000,
    });
  }
  async build(spec: KernelSpec, traces: readonly (TraceStep[] | null)[], target?: BuildTarget): Promise<BuildResult[]> {
    return Promise.all(
      traces.map(async (trace): Promise<BuildResult> => {
        const t0 = performance.now();
        try {
          const out = (await this.pool.run({ spec, trace, target }, { name: 'build' })) as BuildOutput;
          return { ok: true, out, ms: performance.now() - t0 };
        } catch (e) {
          return buildFailure(e);
        }
      }),
    );
  }
  async close(): Promise<void> {
    await this.pool.close({ force: true });
  }
}

/** Builds in this thread (no pool): for debugging and for runs with --workers 0. */
export class LocalBuilder implements Builder {
  async build(spec: KernelSpec, traces: readonly (TraceStep[] | null)[], target?: BuildTarget): Promise<BuildResult[]> {
    return traces.map((trace) => {
      const t0 = performance.now();
      try {
        return { ok: true, out: build({ spec, trace, target }), ms: performance.now() - t0 };
      } catch (e) {
        return buildFailure(e);
      }
    });
  }
  async close(): Promise<void> {
    /* nothing */
  }
}

export class PoolRunner implements Runner {
  private readonly pool: Piscina;
  constructor() {
    this.pool = newPool({ filename: workerFile(), minThreads: 1, maxThreads: 1, idleTimeout: 60_000 });
  }
  measure(task: MeasureTask, timeoutMs: number): Promise<MeasureResult> {
    return this.run<MeasureOutput>('measure', task, timeoutMs);
  }
  measureSet(task: MeasureSetTask, timeoutMs: number): Promise<MeasureSetResult> {
    return this.run<MeasureSetOutput>('measureSet', task, timeoutMs * Math.max(1, task.programs.length));
  }
  private async run<T>(
    name: string,
    task: unknown,
    timeoutMs: number,
  ): Promise<{ ok: true; out: T } | { ok: false; kind: 'run' | 'timeout'; error: string }> {
    const ac = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, timeoutMs);
    try {
      const out = (await this.pool.run(task, { name, signal: ac.signal })) as T;
      return { ok: true, out };
    } catch (e) {
      if (timedOut) return { ok: false, kind: 'timeout', error: `no result within ${timeoutMs} ms` };
      return { ok: false, kind: 'run', error: message(e) };
    } finally {
      clearTimeout(timer);
    }
  }
  async close(): Promise<void> {
    await this.pool.close({ force: true });
  }
}

/** Measures in this thread: no timeout protection (a hanging candidate hangs the tuner). For debugging. */
export class LocalRunner implements Runner {
  async measure(task: MeasureTask): Promise<MeasureResult> {
    try {
      return { ok: true, out: measure(task) };
    } catch (e) {
      return { ok: false, kind: 'run', error: message(e) };
    }
  }
  async measureSet(task: MeasureSetTask): Promise<MeasureSetResult> {
    try {
      return { ok: true, out: measureSet(task) };
    } catch (e) {
      return { ok: false, kind: 'run', error: message(e) };
    }
  }
  async close(): Promise<void> {
    /* nothing */
  }
}

/** Measures native candidates in a child process (native-child.ts): one that crashes or hangs costs a restart. */
export class ChildNativeRunner extends ChildProcessRunner implements Runner {
  constructor() {
    super('native-child.js', 'native measuring process');
  }
  measure(task: MeasureTask, timeoutMs: number): Promise<MeasureResult> {
    return this.request<MeasureOutput>({ name: 'measure', task }, timeoutMs);
  }
  measureSet(task: MeasureSetTask, timeoutMs: number): Promise<MeasureSetResult> {
    return this.request<MeasureSetOutput>({ name: 'measureSet', task }, timeoutMs * Math.max(1, task.programs.length));
  }
}
