// The worker side of a supervised model: loads the artifact in this worker (its thread pool, if any, is started
// from here, so stopping this worker stops it too) and answers run requests one at a time.
import { readArtifact } from './artifact.js';
import { WasmExecutor } from './executor.js';
import { type HostInit, type HostReply, type HostRequest, toWire } from './host-protocol.js';
import type { WorkerFactory } from './thread-pool.js';

export interface HostPort {
  post(reply: HostReply, transfer?: Transferable[]): void;
  onMessage(handler: (request: HostRequest) => void): void;
}

export async function hostModel(
  init: HostInit,
  port: HostPort,
  workerFactory: WorkerFactory | undefined,
): Promise<void> {
  let ex: WasmExecutor;
  try {
    const parts = await readArtifact(init.artifact);
    ex = await WasmExecutor.create(parts, {
      threads: init.threads,
      workerFactory,
      simd: init.simd,
      minParallelWork: init.minParallelWork,
    });
  } catch (e) {
    port.post({ kiln: 'error', error: toWire(e) });
    return;
  }
  port.onMessage((req) => {
    try {
      const outputs = ex.run(req.feeds);
      // every output has its own fresh buffer: hand them over without a copy
      port.post(
        { kiln: 'result', outputs },
        Object.values(outputs).map((t) => t.data.buffer as ArrayBuffer),
      );
    } catch (e) {
      port.post({ kiln: 'error', error: toWire(e) });
    }
  });
  port.post({ kiln: 'loaded', header: ex.header, threads: ex.threads, simd: ex.simd });
}
