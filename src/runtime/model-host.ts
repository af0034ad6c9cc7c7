// The worker side of a supervised model: loads the artifact in this worker (its thread pool, if any, is started
// from here, so stopping this worker stops it too) and answers run requests one at a time.
import { readArtifact } from './artifact.js';
import { KilnError } from './errors.js';
import { WasmExecutor } from './executor.js';
import { type HostInit, type HostReply, type HostRequest, toWire } from './host-protocol.js';
import { type NativeExecutor, type NativeHost, openNative } from './native.js';
import type { WorkerFactory } from './thread-pool.js';

export interface HostPort {
  post(reply: HostReply, transfer?: Transferable[]): void;
  onMessage(handler: (request: HostRequest) => void): void;
}

/** `openNativeHost`: how this platform runs native code (Node's worker entry passes koffi's; browsers have none). */
export async function hostModel(
  init: HostInit,
  port: HostPort,
  workerFactory: WorkerFactory | undefined,
  openNativeHost?: () => Promise<NativeHost>,
): Promise<void> {
  let ex: WasmExecutor | NativeExecutor;
  let loaded: HostReply;
  try {
    ({ ex, loaded } = await openExecutor(init, workerFactory, openNativeHost));
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
  port.post(loaded);
}

async function openExecutor(
  init: HostInit,
  workerFactory: WorkerFactory | undefined,
  openNativeHost: (() => Promise<NativeHost>) | undefined,
): Promise<{ ex: WasmExecutor | NativeExecutor; loaded: HostReply }> {
  const parts = await readArtifact(init.artifact);
  let nativeFallback: string | undefined;
  if (init.native) {
    if (!openNativeHost)
      throw new KilnError('E_UNSUPPORTED', "target 'native' needs a native host binding", {
        hint: "use load of kiln's Node entry point, which opens the library through koffi; in a browser use target 'wasm'",
      });
    const native = openNative(parts, await openNativeHost(), init.threads);
    if ('executor' in native)
      return {
        ex: native.executor,
        loaded: { kiln: 'loaded', header: parts.header, threads: native.executor.threads, runsOn: 'native' },
      };
    nativeFallback = native.why;
  }
  const ex = await WasmExecutor.create(parts, {
    threads: init.threads,
    workerFactory,
    simd: init.simd,
    minParallelWork: init.minParallelWork,
  });
  const loaded: HostReply = { kiln: 'loaded', header: ex.header, threads: ex.threads, simd: ex.simd };
  return { ex, loaded: init.native ? { ...loaded, runsOn: 'wasm', nativeFallback } : loaded };
}
