// The Kiln runtime: loads an artifact and runs it. It imports nothing from the compiler, so it can ship alone
// to a browser.
import { readArtifact } from './artifact.js';
import type { ArtifactHeader, IOBinding } from './artifact-format.js';
import { KilnError } from './errors.js';
import { WasmExecutor, type KernelTiming } from './executor.js';
import { type WorkerFactory, webWorkerFactory } from './thread-pool.js';
export type { WorkerFactory, WorkerLike } from './thread-pool.js';
import type { Tensor } from './tensor.js';

export { KilnError } from './errors.js';
export type { Tensor } from './tensor.js';
export type { DType } from './dtype.js';
export type { ArtifactHeader, KernelTiming };

export interface LoadOptions {
  target?: 'wasm';
  /**
   * Threads for parallel kernel phases (worker threads sharing one WebAssembly.Memory). Default: the available
   * cores where workers and SharedArrayBuffer exist (Node; cross-origin isolated pages), else 1.
   */
  threads?: number;
  /** How to start a worker; defaults to Web Workers. The Node entry point passes worker_threads. */
  workerFactory?: WorkerFactory;
}

export interface LoadedModel {
  readonly inputs: readonly IOBinding[];
  readonly outputs: readonly IOBinding[];
  readonly header: ArtifactHeader;
  run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  /** Synchronous run on the WebAssembly target, optionally recording per-kernel times. */
  runSync(feeds: Record<string, Tensor>, timings?: KernelTiming[]): Record<string, Tensor>;
  /** Threads the model runs on. */
  readonly threads: number;
  /** Stops worker threads. */
  dispose(): void;
}

export async function load(artifact: Uint8Array, opts: LoadOptions = {}): Promise<LoadedModel> {
  const target = opts.target ?? 'wasm';
  if (target !== 'wasm') throw new KilnError('E_INPUT', `target '${target}' is not available in this runtime`, { hint: "use target 'wasm'" });
  const parts = await readArtifact(artifact);
  const workerFactory = opts.workerFactory ?? webWorkerFactory();
  const isolated = typeof SharedArrayBuffer !== 'undefined' && (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated !== false;
  const cores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
  const threads = opts.threads ?? (workerFactory && isolated ? cores : 1);
  return fromParts(parts.header, await WasmExecutor.create(parts, { threads, workerFactory }));
}

export function fromParts(header: ArtifactHeader, ex: WasmExecutor): LoadedModel {
  return {
    inputs: header.inputs,
    outputs: header.outputs,
    header,
    run: async (feeds) => ex.run(feeds),
    runSync: (feeds, timings) => ex.run(feeds, timings),
    threads: ex.threads,
    dispose: () => ex.dispose(),
  };
}
