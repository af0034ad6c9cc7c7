// Kiln's public API: compile ONNX models ahead of time, load artifacts with the runtime.
export { compile, importAndOptimize, type CompileOptions, type CompileResult } from './compiler/compile.js';
export { type LoadOptions, type LoadedModel } from './runtime/index.js';
import { load as loadRuntime, type LoadOptions, type LoadedModel } from './runtime/index.js';
import { nodeWorkerFactory, defaultThreads } from './node/threads.js';

/**
 * Loads an artifact on Node: worker_threads for the thread pool, threads defaulting to the available cores; for
 * target 'cuda', the CUDA driver through koffi (E_NO_DEVICE when libcuda or a GPU is missing).
 */
export async function load(artifact: Uint8Array, opts: LoadOptions = {}): Promise<LoadedModel> {
  if (opts.target === 'cuda' && !opts.cudaDriver) {
    const { openCudaDriver } = await import('./node/cuda-driver.js');
    opts = { ...opts, cudaDriver: await openCudaDriver() };
  }
  return loadRuntime(artifact, { threads: defaultThreads(), workerFactory: nodeWorkerFactory, ...opts });
}
export { KilnError, type KilnErrorCode } from './runtime/errors.js';
export type { Tensor } from './runtime/tensor.js';
export { tensor } from './runtime/tensor.js';
export type { DType } from './runtime/dtype.js';
export { decodeTensorProto, encodeTensorProto } from './frontend/onnx/tensor-proto.js';
export { printWebGpuSection } from './compiler/wgsl-text.js';
