// A watchdog over a model: the caller's thread cannot interrupt a synchronous WebAssembly call (a damaged kernel
// can loop forever), so a model loaded with timeoutMs lives in a dedicated worker (model-host.ts) and every load or
// run is a message answered within its time limit. On expiry the worker is terminated (its thread-pool workers,
// which it started, go with it), the call rejects with E_TIMEOUT and the model is disposed.
import type { ArtifactHeader, IOBinding } from './artifact-format.js';
import { checkArtifactBytes } from './artifact.js';
import { KilnError } from './errors.js';
import { type HostInit, type HostReply, fromWire } from './host-protocol.js';
import { checkInputs } from './inputs.js';
import type { Tensor } from './tensor.js';
import type { WorkerFactory, WorkerLike } from './thread-pool.js';

/** Longest delay setTimeout honours (a longer one fires at once); limits past it mean no limit. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Checks a timeoutMs option: a positive number of milliseconds (Infinity: no limit). */
export function checkTimeout(ms: unknown, where: string): number {
  if (typeof ms !== 'number' || Number.isNaN(ms) || ms <= 0) {
    throw new KilnError(
      'E_INPUT',
      `${where}: timeoutMs is ${typeof ms === 'number' ? ms : typeof ms}, not a positive number of milliseconds`,
      { hint: 'pass e.g. { timeoutMs: 5000 }, or Infinity for no limit' },
    );
  }
  return ms;
}

export interface SupervisedOptions {
  threads: number;
  simd?: 'auto' | 'relaxed' | 'baseline';
  minParallelWork?: number;
  /** Limit of the load, and of every run that does not pass its own. */
  timeoutMs: number;
  /** Run the artifact's native code where it can run (target 'native'). */
  native?: boolean;
}

export interface SupervisedModel {
  readonly header: ArtifactHeader;
  readonly inputs: readonly IOBinding[];
  readonly outputs: readonly IOBinding[];
  readonly threads: number;
  readonly simd?: 'relaxed' | 'baseline';
  readonly runsOn?: 'native' | 'wasm';
  readonly nativeFallback?: string;
  run(feeds: Record<string, Tensor>, timeoutMs?: number, transfer?: boolean): Promise<Record<string, Tensor>>;
  dispose(): void;
}

class Supervisor {
  private worker: WorkerLike | undefined;
  /** Why the model can no longer run (disposed, timed out, worker lost). */
  private stopped: string | undefined;
  private pending: { resolve(r: HostReply): void; reject(e: KilnError): void } | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(factory: WorkerFactory) {
    const w = (this.worker = factory());
    w.onMessage((m) => this.settle((p) => p.resolve(m as HostReply)));
    w.onError((e) => this.fail(`its worker failed: ${(e as Error)?.message ?? e}`));
    w.onExit?.((code) => this.fail(`its worker exited (code ${code})`));
  }

  private settle(f: (p: NonNullable<Supervisor['pending']>) => void): void {
    const p = this.pending;
    this.pending = undefined;
    this.worker?.keepAlive?.(false);
    if (p) f(p);
  }

  /** The worker is gone or must go: stop it and reject what waits with a KilnError. */
  private fail(reason: string, error?: KilnError): void {
    if (this.stopped === undefined) this.stopped = reason;
    this.worker?.terminate();
    this.worker = undefined;
    this.settle((p) =>
      p.reject(
        error ??
          new KilnError('E_INTERNAL', `the model stopped: ${reason}`, {
            hint: 'load the model again; if this recurs, please report it with the model',
          }),
      ),
    );
  }

  /** Posts a message and waits for the worker's reply, at most `timeoutMs`; calls are answered one at a time. */
  request(what: 'load' | 'run', message: unknown, transfer: Transferable[], timeoutMs: number): Promise<HostReply> {
    const r = this.queue.then(
      () =>
        new Promise<HostReply>((resolve, reject) => {
          if (this.stopped !== undefined || !this.worker) {
            reject(
              new KilnError('E_INPUT', `the model was disposed: ${this.stopped ?? 'dispose() was called'}`, {
                hint: 'load the model again',
              }),
            );
            return;
          }
          const timer =
            timeoutMs <= MAX_TIMER_MS
              ? setTimeout(() => {
                  const reason = `a ${what} took longer than ${timeoutMs} ms and its worker was stopped`;
                  this.fail(
                    reason,
                    new KilnError(
                      'E_TIMEOUT',
                      `${what} took longer than ${timeoutMs} ms; the worker was stopped; the model must be loaded again`,
                      {
                        hint:
                          what === 'run'
                            ? 'load the model again; if a fresh artifact also hangs, recompile it or raise timeoutMs'
                            : 'raise timeoutMs, or recompile the model if its artifact is damaged',
                      },
                    ),
                  );
                }, timeoutMs)
              : undefined;
          this.pending = {
            resolve: (m) => {
              clearTimeout(timer);
              resolve(m);
            },
            reject: (e) => {
              clearTimeout(timer);
              reject(e);
            },
          };
          this.worker.keepAlive?.(true);
          try {
            this.worker.postMessage(message, transfer);
          } catch (e) {
            this.settle((p) =>
              p.reject(
                new KilnError(
                  'E_INPUT',
                  `the ${what} request cannot be sent to the model's worker: ${(e as Error)?.message ?? e}`,
                ),
              ),
            );
          }
        }),
    );
    this.queue = r.catch(() => undefined);
    return r;
  }

  dispose(): void {
    if (this.stopped === undefined) this.stopped = 'dispose() was called';
    this.worker?.terminate();
    this.worker = undefined;
    this.settle((p) =>
      p.reject(new KilnError('E_INPUT', 'the model was disposed while it ran', { hint: 'load the model again' })),
    );
  }
}

function unexpected(m: HostReply, wanted: string): KilnError {
  return new KilnError(
    'E_INTERNAL',
    `the model's worker answered '${(m as { kiln?: unknown })?.kiln}' to a ${wanted} request`,
    { hint: 'please report this' },
  );
}

/** Loads the artifact in a worker started by `factory`; the load itself is bounded by opts.timeoutMs. */
export async function loadSupervised(
  artifact: Uint8Array,
  factory: WorkerFactory,
  opts: SupervisedOptions,
): Promise<SupervisedModel> {
  checkArtifactBytes(artifact);
  // the worker gets its own copy of the bytes (transferred: one copy in all); the caller keeps theirs
  const bytes = new Uint8Array(artifact.byteLength);
  bytes.set(artifact);
  const init: HostInit = {
    kiln: 'host',
    artifact: bytes,
    threads: opts.threads,
    simd: opts.simd,
    minParallelWork: opts.minParallelWork,
    ...(opts.native ? { native: true } : {}),
  };
  let sup: Supervisor;
  try {
    sup = new Supervisor(factory);
  } catch (e) {
    throw new KilnError('E_INPUT', `cannot start a worker to supervise the model: ${(e as Error)?.message ?? e}`, {
      hint: 'load without timeoutMs on a platform without workers',
    });
  }
  const loaded = await sup.request('load', init, [bytes.buffer], opts.timeoutMs);
  if (loaded.kiln !== 'loaded') {
    sup.dispose();
    throw loaded.kiln === 'error' ? fromWire(loaded.error) : unexpected(loaded, 'load');
  }
  const { header } = loaded;
  return {
    header,
    inputs: header.inputs,
    outputs: header.outputs,
    threads: loaded.threads,
    simd: loaded.simd,
    runsOn: loaded.runsOn,
    nativeFallback: loaded.nativeFallback,
    async run(feeds, timeoutMs = opts.timeoutMs, transfer = false) {
      // checked here first: a clear error without a round trip, and only plain tensors are posted
      const checked = checkInputs(header.inputs, feeds);
      // each data copied once, compactly (a view's whole underlying buffer would be cloned), and the copy
      // transferred; with `transfer`, a data that is its whole buffer moves as it is
      const clean: Record<string, Tensor> = {};
      const moved = new Set<ArrayBufferLike>();
      for (const [k, t] of Object.entries(checked)) {
        const { buffer, byteOffset, byteLength } = t.data;
        const whole =
          transfer &&
          buffer instanceof ArrayBuffer &&
          byteOffset === 0 &&
          byteLength === buffer.byteLength &&
          !moved.has(buffer);
        if (whole) moved.add(buffer);
        clean[k] = { dtype: t.dtype, shape: [...t.shape], data: whole ? t.data : t.data.slice() };
      }
      const r = await sup.request(
        'run',
        { kiln: 'run', feeds: clean },
        Object.values(clean).map((t) => t.data.buffer as ArrayBuffer),
        timeoutMs,
      );
      if (r.kiln === 'result') return r.outputs;
      throw r.kiln === 'error' ? fromWire(r.error) : unexpected(r, 'run');
    },
    dispose: () => sup.dispose(),
  };
}
