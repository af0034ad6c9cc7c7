// Node worker_threads entry: a thread of the WebAssembly thread pool, or (first message { kiln: 'host' }) the
// worker hosting a model loaded with timeoutMs (src/runtime/model-host.ts), which starts its own pool from here.
import { parentPort } from 'node:worker_threads';
import { runWorker, type WorkerInit } from '../runtime/worker-loop.js';
import { isHostInit } from '../runtime/host-protocol.js';

const port = parentPort!;
port.once('message', (init: unknown) => {
  if (!isHostInit(init)) {
    runWorker(init as WorkerInit, () => port.postMessage('ready'));
    return;
  }
  void Promise.all([import('../runtime/model-host.js'), import('./threads.js')]).then(
    ([{ hostModel }, { nodeWorkerFactory }]) =>
      hostModel(
        init,
        {
          post: (reply, transfer) => port.postMessage(reply, transfer as never),
          onMessage: (h) => port.on('message', h),
        },
        nodeWorkerFactory,
        async () => (await import('./native-library.js')).openNativeHost(),
      ),
  );
});
