// Kiln's public API: compile ONNX models ahead of time, load artifacts with the runtime.
export {
  compile,
  compileGraph,
  importAndOptimize,
  specializeGraph,
  type CompileOptions,
  type CompileResult,
  type OptimizedGraph,
} from './compiler/compile.js';
export { load, type LoadOptions, type LoadedModel } from './node/runtime.js';
export { KilnError, type KilnErrorCode } from './runtime/errors.js';
export type { Tensor } from './runtime/tensor.js';
export { tensor } from './runtime/tensor.js';
export type { DType } from './runtime/dtype.js';
export { decodeTensorProto, encodeTensorProto } from './frontend/onnx/tensor-proto.js';
export { printWebGpuSection } from './compiler/wgsl-text.js';
