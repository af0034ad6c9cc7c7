// Worker threads for the runtime's thread pool on Node (worker_threads); unref'd so they never keep a
// process alive.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MAX_THREADS, type WorkerFactory } from '../runtime/thread-pool.js';

// Running from the TypeScript sources (vitest), the worker entry comes from the build in dist/.
const built = new URL('./wasm-worker.js', import.meta.url);
const workerUrl = existsSync(fileURLToPath(built)) ? built : new URL('../../dist/node/wasm-worker.js', import.meta.url);

export const nodeWorkerFactory: WorkerFactory = () => {
  const w = new Worker(workerUrl);
  w.unref();
  return {
    postMessage: (m, transfer) => w.postMessage(m, transfer as never),
    onMessage: (h) => w.on('message', h),
    onError: (h) => w.on('error', h),
    terminate: () => {
      void w.terminate();
    },
    onExit: (h) => w.on('exit', h),
    keepAlive: (on) => {
      if (on) w.ref();
      else w.unref();
    },
  };
};

export const defaultThreads = (): number => Math.min(availableParallelism(), MAX_THREADS);
