// Web Worker entry: a thread of the WebAssembly thread pool, or (first message { kiln: 'host' }) the worker hosting
// a model loaded with timeoutMs (model-host.ts), which starts its own pool (nested workers) from here.
import { runWorker, type WorkerInit } from './worker-loop.js';
import { isHostInit } from './host-protocol.js';

const scope = globalThis as unknown as {
  onmessage: ((e: { data: unknown }) => void) | null;
  postMessage(m: unknown, transfer?: Transferable[]): void;
};
scope.onmessage = (e) => {
  scope.onmessage = null;
  const init = e.data;
  if (!isHostInit(init)) {
    runWorker(init as WorkerInit, () => scope.postMessage('ready'));
    return;
  }
  void Promise.all([import('./model-host.js'), import('./thread-pool.js')]).then(
    ([{ hostModel }, { webWorkerFactory }]) =>
      hostModel(
        init,
        {
          post: (reply, transfer) => scope.postMessage(reply, transfer ?? []),
          onMessage: (h) => {
            scope.onmessage = (ev) => h(ev.data as never);
          },
        },
        webWorkerFactory(),
      ),
  );
};
