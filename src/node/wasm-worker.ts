// Node worker_threads entry for the WebAssembly thread pool.
import { parentPort } from 'node:worker_threads';
import { runWorker, type WorkerInit } from '../runtime/worker-loop.js';

parentPort!.once('message', (init: WorkerInit) => runWorker(init, () => parentPort!.postMessage('ready')));
