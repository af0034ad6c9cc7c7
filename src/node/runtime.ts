// The Kiln runtime on Node: the browser runtime (src/runtime) with worker_threads for its thread pool and, for
// target 'cuda', the CUDA driver through koffi. It imports nothing from the compiler: it is the entry point of the
// runtime-only package (packages/runtime) as well as kiln's own `load`.
import { load as loadRuntime, type LoadOptions, type LoadedModel } from '../runtime/index.js';
import { nodeWorkerFactory, defaultThreads } from './threads.js';

export type {
  LoadOptions,
  LoadedModel,
  RunOptions,
  ArtifactHeader,
  KernelTiming,
  GpuDevice,
  CudaDriver,
  CudaDeviceInfo,
  CudaHandle,
  NativeHost,
  NativeLibrary,
} from '../runtime/index.js';
export { KilnError, type KilnErrorCode } from '../runtime/errors.js';
export type { Tensor } from '../runtime/tensor.js';
export { tensor } from '../runtime/tensor.js';
export type { DType } from '../runtime/dtype.js';

/**
 * Loads an artifact on Node: worker_threads for the thread pool, threads defaulting to the available cores; for
 * target 'cuda', the CUDA driver through koffi (E_NO_DEVICE when libcuda or a GPU is missing); for target 'native', the
 * artifact's shared library through koffi. With `timeoutMs`
 * the model is loaded in a worker thread under a watchdog (see LoadOptions.timeoutMs).
 */
export async function load(artifact: Uint8Array, opts: LoadOptions = {}): Promise<LoadedModel> {
  if (opts.target === 'cuda' && !opts.cudaDriver && opts.timeoutMs === undefined) {
    const { openCudaDriver } = await import('./cuda-driver.js');
    opts = { ...opts, cudaDriver: await openCudaDriver() };
  }
  if (opts.target === 'native' && !opts.nativeHost && opts.timeoutMs === undefined) {
    const { openNativeHost } = await import('./native-library.js');
    opts = { ...opts, nativeHost: await openNativeHost() };
  }
  return loadRuntime(artifact, { threads: defaultThreads(), workerFactory: nodeWorkerFactory, ...opts });
}
