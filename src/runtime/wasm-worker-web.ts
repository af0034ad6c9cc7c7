// Web Worker entry for the WebAssembly thread pool (browsers).
import { runWorker, type WorkerInit } from './worker-loop.js';

const scope = globalThis as unknown as { onmessage: ((e: { data: WorkerInit }) => void) | null; postMessage(m: unknown): void };
scope.onmessage = (e) => {
  scope.onmessage = null;
  runWorker(e.data, () => scope.postMessage('ready'));
};
