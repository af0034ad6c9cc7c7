// Kiln's public API: compile ONNX models ahead of time, load artifacts with the runtime.
export { compile, importAndOptimize, type CompileOptions, type CompileResult } from './compiler/compile.js';
export { type LoadOptions, type LoadedModel } from './runtime/index.js';
import { load as loadRuntime, type LoadOptions, type LoadedModel } from './runtime/index.js';
import { nodeWorkerFactory, defaultThreads } from './node/threads.js';

/** Loads an artifact on Node: worker_threads for the thread pool, threads defaulting to the available cores. */
export function load(artifact: Uint8Array, opts: LoadOptions = {}): Promise<LoadedModel> {
  return loadRuntime(artifact, { threads: defaultThreads(), workerFactory: nodeWorkerFactory, ...opts });
}
export { KilnError, type KilnErrorCode } from './runtime/errors.js';
export type { Tensor } from './runtime/tensor.js';
export { tensor } from './runtime/tensor.js';
export type { DType } from './runtime/dtype.js';
export { decodeTensorProto, encodeTensorProto } from './frontend/onnx/tensor-proto.js';
