// A pool of worker threads sharing the model's WebAssembly.Memory. A job is (kernel, buffers, phase); its parallel
// loop is cut into chunks that the main thread and the workers claim one by one, then all meet at a barrier.
import { KilnError } from './errors.js';
import { CTRL, CTRL_INTS, SPIN_CHECKS, STOP, runChunks, type WorkerInit } from './worker-loop.js';

/** The little of a Worker the pool needs (Web Worker or a Node worker_threads adapter). */
export interface WorkerLike {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  onMessage(handler: (message: unknown) => void): void;
  onError(handler: (error: unknown) => void): void;
  terminate(): void;
  /** Called when the worker stops by itself (Node: 'exit'), where the platform tells. */
  onExit?(handler: (code: number) => void): void;
  /** Whether the worker keeps the process alive (Node's ref/unref); workers start without. */
  keepAlive?(on: boolean): void;
}
export type WorkerFactory = () => WorkerLike;

/** Web Workers, where the platform has them (module workers). */
export function webWorkerFactory(): WorkerFactory | undefined {
  const W = (globalThis as { Worker?: new (url: URL, opts: { type: string }) => Worker }).Worker;
  if (!W) return undefined;
  return () => {
    const w = new W(new URL('./wasm-worker-web.js', import.meta.url), { type: 'module' });
    return {
      postMessage: (m, transfer) => w.postMessage(m, transfer ?? []),
      onMessage: (h) => {
        w.onmessage = (e) => h(e.data);
      },
      onError: (h) => {
        w.onerror = (e) => h(e);
      },
      terminate: () => w.terminate(),
    };
  };
}

const canBlock = (() => {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
})();

/**
 * Most chunks a parallel phase is cut into: kernels whose schedules stage data in chunk-private buffers (cacheRead
 * on the CPU) reserve one copy per possible chunk in their scratch area.
 */
export const MAX_CHUNKS = 64;
/** Most threads a model runs on: each needs a chunk to claim. */
export const MAX_THREADS = MAX_CHUNKS;
/**
 * Chunks per thread in a parallel phase: enough that a thread on a core running at 2/3 speed costs little at the
 * barrier, few enough that claiming one (an atomic add and a call into WebAssembly) stays far below its work.
 */
export const CHUNKS_PER_THREAD = 8;

export class ThreadPool {
  private readonly ctrl: Int32Array;
  private constructor(
    private readonly workers: WorkerLike[],
    control: SharedArrayBuffer,
  ) {
    this.ctrl = new Int32Array(control);
  }

  get size(): number {
    return this.workers.length + 1;
  }

  static async create(
    threads: number,
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    kernels: string[],
    factory: WorkerFactory,
  ): Promise<ThreadPool> {
    const control = new SharedArrayBuffer(CTRL_INTS * 4);
    const workers: WorkerLike[] = [];
    try {
      await Promise.all(
        Array.from(
          { length: threads - 1 },
          () =>
            new Promise<void>((resolve, reject) => {
              const w = factory();
              workers.push(w);
              w.onMessage((m) => (m === 'ready' ? resolve() : reject(new Error(String(m)))));
              w.onError(reject);
              const init: WorkerInit = { module, memory, control, kernels };
              w.postMessage(init);
            }),
        ),
      );
    } catch (e) {
      workers.forEach((w) => w.terminate());
      throw new KilnError('E_INPUT', `could not start ${threads - 1} worker threads: ${(e as Error).message ?? e}`, {
        hint: 'load with { threads: 1 }, or serve the page cross-origin isolated (COOP/COEP) so SharedArrayBuffer exists',
      });
    }
    return new ThreadPool(workers, control);
  }

  /** Runs phase `phase` of `kernel` on every thread; `runLocal` runs one chunk on the main thread. */
  run(
    kernel: number,
    args: readonly number[],
    phase: number,
    runLocal: (chunk: number, nchunks: number) => void,
  ): void {
    const c = this.ctrl,
      n = this.size;
    if (args.length > CTRL_INTS - CTRL.ARGS)
      throw new KilnError('E_INTERNAL', `kernel has ${args.length} buffers, more than the pool passes`);
    c[CTRL.KERNEL] = kernel;
    c[CTRL.PHASE] = phase;
    c[CTRL.NARGS] = args.length;
    c[CTRL.NCHUNKS] = Math.min(MAX_CHUNKS, n * CHUNKS_PER_THREAD);
    c.set(args, CTRL.ARGS);
    Atomics.store(c, CTRL.NEXT, 0);
    Atomics.store(c, CTRL.DONE, 0);
    Atomics.store(c, CTRL.FAULT, 0);
    Atomics.add(c, CTRL.SEQ, 1);
    Atomics.notify(c, CTRL.SEQ);
    let trap: unknown;
    try {
      runChunks(c, runLocal);
    } catch (e) {
      // leave the remaining chunks unclaimed-by-anyone and still wait for the workers: the next phase must not
      // start while they run this one
      trap = e ?? new Error('trap');
      Atomics.store(c, CTRL.NEXT, c[CTRL.NCHUNKS]);
    }
    let done = Atomics.load(c, CTRL.DONE);
    for (let i = 0; done < n - 1 && i < SPIN_CHECKS; i++) done = Atomics.load(c, CTRL.DONE); // see runWorker
    for (; done < n - 1; done = Atomics.load(c, CTRL.DONE)) {
      if (canBlock) Atomics.wait(c, CTRL.DONE, done, 1000);
    }
    if (trap !== undefined) throw trap;
    if (Atomics.load(c, CTRL.FAULT)) throw new Error('a worker thread trapped running its chunk');
  }

  /** While a model runs, workers keep spinning between phases (serial kernels in between last longer than a spin). */
  running(on: boolean): void {
    Atomics.store(this.ctrl, CTRL.RUNNING, on ? 1 : 0);
  }

  terminate(): void {
    Atomics.store(this.ctrl, CTRL.KERNEL, STOP);
    Atomics.add(this.ctrl, CTRL.SEQ, 1);
    Atomics.notify(this.ctrl, CTRL.SEQ);
    this.workers.forEach((w) => w.terminate());
  }
}
