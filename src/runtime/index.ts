// The Kiln runtime: loads an artifact and runs it. It imports nothing from the compiler, so it can ship alone
// to a browser.
import { readArtifact } from './artifact.js';
import type { ArtifactHeader, IOBinding } from './artifact-format.js';
import { KilnError } from './errors.js';
import { WasmExecutor, type KernelTiming } from './executor.js';
import { MAX_THREADS, type WorkerFactory, webWorkerFactory } from './thread-pool.js';
export type { WorkerFactory, WorkerLike } from './thread-pool.js';
import type { Tensor } from './tensor.js';
import { checkTimeout, loadSupervised } from './supervisor.js';
import { type GpuDevice, WebGpuExecutor } from './webgpu.js';
import { type CudaDriver, CudaExecutor } from './cuda.js';
export type { CudaDriver, CudaDeviceInfo, CudaHandle } from './cuda.js';
import { type NativeHost, type NativeExecutor, openNative } from './native.js';
export type { NativeHost, NativeLibrary } from './native.js';

export { KilnError } from './errors.js';
export type { Tensor } from './tensor.js';
export type { DType } from './dtype.js';
export type { ArtifactHeader, KernelTiming, GpuDevice };

export interface LoadOptions {
  target?: 'wasm' | 'webgpu' | 'cuda' | 'native';
  /**
   * How to run native code (target 'native'); the Node entry point supplies one over koffi. Where the artifact's
   * native code cannot run here (another CPU level or platform), the model runs its WebAssembly instead and
   * `nativeFallback` says why (also passed to `log`).
   */
  nativeHost?: NativeHost;
  /** Receives notices such as a native-to-WebAssembly fallback (default console.warn). */
  log?: (message: string) => void;
  /** The CUDA driver API binding (target 'cuda'); the Node entry point supplies one over libcuda (koffi). */
  cudaDriver?: CudaDriver;
  /** CUDA device ordinal (target 'cuda'); default 0. */
  cudaDevice?: number;
  /** The GPUDevice to run on (target 'webgpu'): a browser's `navigator.gpu` device, or npm `webgpu`'s in Node. */
  device?: GpuDevice;
  /**
   * Threads for parallel kernel phases (worker threads sharing one WebAssembly.Memory). Default: the available
   * cores where workers and SharedArrayBuffer exist (Node; cross-origin isolated pages), else 1.
   */
  threads?: number;
  /** How to start a worker; defaults to Web Workers. The Node entry point passes worker_threads. */
  workerFactory?: WorkerFactory;
  /** Kernel variant: 'auto' picks relaxed-SIMD multiply-adds where the engine supports them. */
  simd?: 'auto' | 'relaxed' | 'baseline';
  /**
   * Kernel calls with less work than this (flops + elements read and written) run on one thread even with several:
   * splitting them costs more than it saves. Default 2e5; 0 splits every parallel phase.
   */
  minParallelWork?: number;
  /**
   * Run the model under a watchdog (targets 'wasm' and 'native'): it is loaded in a dedicated worker (worker_threads
   * on Node, a Web Worker in browsers) and a load or run that takes longer than this many milliseconds stops that
   * worker and rejects with E_TIMEOUT (the model is then disposed; a native call already under way finishes on that
   * thread before it exits). Bounds the load, and is every run's default limit (run(feeds, { timeoutMs }) overrides
   * it; Infinity: no limit: the worker then only keeps runs off the calling thread). runSync is not available on
   * such a model. Without it the model runs on the calling thread, as fast as it can, and cannot be interrupted.
   */
  timeoutMs?: number;
}

export interface RunOptions {
  /** Limit of this run in milliseconds, for a model loaded with timeoutMs (overrides the load's default). */
  timeoutMs?: number;
  /**
   * For a model loaded with timeoutMs: hand the feeds' buffers to the model's worker instead of copying them (a
   * feed whose data is the whole of its ArrayBuffer moves and is detached, unusable, after the call; others are
   * copied as usual). Ignored by models that run on the calling thread.
   */
  transferInputs?: boolean;
}

export interface LoadedModel {
  readonly inputs: readonly IOBinding[];
  readonly outputs: readonly IOBinding[];
  readonly header: ArtifactHeader;
  run(feeds: Record<string, Tensor>, options?: RunOptions): Promise<Record<string, Tensor>>;
  /** Synchronous run on the WebAssembly target, optionally recording per-kernel times. */
  runSync(feeds: Record<string, Tensor>, timings?: KernelTiming[]): Record<string, Tensor>;
  /** Threads the model runs on. */
  readonly threads: number;
  /** Loaded with target 'native': whether the native code runs ('native') or the WebAssembly fallback ('wasm'). */
  readonly runsOn?: 'native' | 'wasm';
  /** Why a model loaded with target 'native' runs its WebAssembly instead. */
  readonly nativeFallback?: string;
  /** WebAssembly kernel variant in use (absent on other targets). */
  readonly simd?: 'relaxed' | 'baseline';
  /** Stops worker threads. */
  dispose(): void;
}

export async function load(artifact: Uint8Array, opts: LoadOptions = {}): Promise<LoadedModel> {
  if (opts === null || typeof opts !== 'object')
    throw new KilnError('E_INPUT', `load options are ${opts === null ? 'null' : typeof opts}, not an object`, {
      hint: 'pass e.g. { threads: 1 } or { timeoutMs: 5000 }',
    });
  const target = opts.target ?? 'wasm';
  if (target !== 'wasm' && target !== 'webgpu' && target !== 'cuda' && target !== 'native')
    throw new KilnError('E_INPUT', `target '${target}' is not available in this runtime`, {
      hint: "use target 'wasm', 'webgpu', 'cuda' or 'native'",
    });
  const timeoutMs = opts.timeoutMs === undefined ? undefined : checkTimeout(opts.timeoutMs, 'load');
  // a supervised model's worker opens its own native host
  if (target === 'native' && !opts.nativeHost && timeoutMs === undefined)
    throw new KilnError('E_UNSUPPORTED', "target 'native' needs a native host binding", {
      hint: "use load of kiln's Node entry point, which opens the library through koffi; in a browser use target 'wasm'",
    });
  if (timeoutMs !== undefined && target !== 'wasm' && target !== 'native')
    throw new KilnError('E_UNSUPPORTED', `timeoutMs is available on the 'wasm' and 'native' targets, not '${target}'`, {
      hint: 'load without timeoutMs',
    });
  if (target === 'cuda' && !opts.cudaDriver)
    throw new KilnError('E_NO_DEVICE', "target 'cuda' needs a CUDA driver binding", {
      hint: "use load of kiln's Node entry point, which binds libcuda through koffi, or pass load(artifact, { target: 'cuda', cudaDriver })",
    });
  if (target === 'webgpu' && !opts.device)
    throw new KilnError('E_INPUT', "target 'webgpu' needs a GPUDevice", {
      hint: "pass load(artifact, { target: 'webgpu', device }) with a device from navigator.gpu (or npm webgpu in Node)",
    });
  const workerFactory = opts.workerFactory ?? webWorkerFactory();
  const isolated =
    typeof SharedArrayBuffer !== 'undefined' &&
    (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated !== false;
  const cores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
  const threads = opts.threads ?? (workerFactory && isolated ? Math.min(cores, MAX_THREADS) : 1);
  if (timeoutMs !== undefined) {
    if (!workerFactory)
      throw new KilnError('E_UNSUPPORTED', 'timeoutMs needs workers, which this platform lacks', {
        hint: 'load without timeoutMs',
      });
    const model = await loadSupervised(artifact, workerFactory, {
      threads,
      simd: opts.simd,
      minParallelWork: opts.minParallelWork,
      timeoutMs,
      native: target === 'native',
    });
    if (model.nativeFallback !== undefined) logFallback(opts, model.nativeFallback);
    return supervised(model);
  }
  const parts = await readArtifact(artifact);
  if (target === 'cuda')
    return asyncOnly(
      parts.header,
      'CUDA',
      await CudaExecutor.create(parts.header, parts.weights, opts.cudaDriver!, opts.cudaDevice),
    );
  if (target === 'native') {
    const native = openNative(parts, opts.nativeHost!, threads);
    if ('executor' in native) return fromNative(native.executor);
    const { why } = native;
    logFallback(opts, why);
    const model = fromParts(
      parts.header,
      await WasmExecutor.create(parts, {
        threads,
        workerFactory,
        simd: opts.simd,
        minParallelWork: opts.minParallelWork,
      }),
    );
    return { ...model, runsOn: 'wasm', nativeFallback: why };
  }
  if (target === 'webgpu')
    return asyncOnly(parts.header, 'WebGPU', await WebGpuExecutor.create(parts.header, parts.weights, opts.device!));
  return fromParts(
    parts.header,
    await WasmExecutor.create(parts, {
      threads,
      workerFactory,
      simd: opts.simd,
      minParallelWork: opts.minParallelWork,
    }),
  );
}

/** run(feeds, { timeoutMs }) on a model that runs on the calling thread: it could not be stopped, so say so. */
function noWatchdog(options: RunOptions | undefined): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object')
    throw new KilnError('E_INPUT', `run options are ${options === null ? 'null' : typeof options}, not an object`, {
      hint: 'pass e.g. { timeoutMs: 5000 }',
    });
  if (options.timeoutMs !== undefined) {
    throw new KilnError(
      'E_UNSUPPORTED',
      'run(feeds, { timeoutMs }) needs a model loaded with load(artifact, { timeoutMs }): this one runs on the calling thread, which cannot interrupt it',
      { hint: 'load with { timeoutMs } (Infinity: no default limit) to run under a watchdog' },
    );
  }
}

/** A model hosted by a worker under a watchdog (supervisor.ts). */
function supervised(m: Awaited<ReturnType<typeof loadSupervised>>): LoadedModel {
  return {
    inputs: m.inputs,
    outputs: m.outputs,
    header: m.header,
    run: (feeds, options) => {
      if (options !== undefined && (options === null || typeof options !== 'object'))
        return Promise.reject(
          new KilnError('E_INPUT', `run options are ${options === null ? 'null' : typeof options}, not an object`, {
            hint: 'pass e.g. { timeoutMs: 5000 }',
          }),
        );
      try {
        return m.run(
          feeds,
          options?.timeoutMs === undefined ? undefined : checkTimeout(options.timeoutMs, 'run'),
          options?.transferInputs === true,
        );
      } catch (e) {
        return Promise.reject(e);
      }
    },
    runSync: () => {
      throw new KilnError(
        'E_UNSUPPORTED',
        'runSync is not available on a model loaded with timeoutMs: it runs in a worker',
        { hint: 'use await model.run(feeds), or load without timeoutMs' },
      );
    },
    threads: m.threads,
    simd: m.simd,
    ...(m.runsOn ? { runsOn: m.runsOn } : {}),
    ...(m.nativeFallback !== undefined ? { nativeFallback: m.nativeFallback } : {}),
    dispose: () => m.dispose(),
  };
}

function logFallback(opts: LoadOptions, why: string): void {
  (opts.log ?? console.warn)(`kiln: running the WebAssembly code instead of the native code: ${why}`);
}

/** A model on a device target: results come back asynchronously only. */
function asyncOnly(
  header: ArtifactHeader,
  what: string,
  ex: { run(f: Record<string, Tensor>): Promise<Record<string, Tensor>>; dispose(): void },
): LoadedModel {
  return {
    inputs: header.inputs,
    outputs: header.outputs,
    header,
    run: async (feeds, options) => {
      noWatchdog(options);
      return ex.run(feeds);
    },
    runSync: () => {
      throw new KilnError('E_UNSUPPORTED', `runSync is not available on the ${what} target`, {
        hint: 'use await model.run(feeds)',
      });
    },
    threads: 1,
    dispose: () => ex.dispose(),
  };
}

/** A model running native code on the calling thread. */
function fromNative(ex: NativeExecutor): LoadedModel {
  return {
    inputs: ex.header.inputs,
    outputs: ex.header.outputs,
    header: ex.header,
    run: async (feeds, options) => {
      noWatchdog(options);
      return ex.run(feeds);
    },
    runSync: (feeds, timings) => ex.run(feeds, timings),
    threads: ex.threads,
    runsOn: 'native',
    dispose: () => ex.dispose(),
  };
}

export function fromParts(header: ArtifactHeader, ex: WasmExecutor): LoadedModel {
  return {
    inputs: header.inputs,
    outputs: header.outputs,
    header,
    run: async (feeds, options) => {
      noWatchdog(options);
      return ex.run(feeds);
    },
    runSync: (feeds, timings) => ex.run(feeds, timings),
    threads: ex.threads,
    simd: ex.simd,
    dispose: () => ex.dispose(),
  };
}
