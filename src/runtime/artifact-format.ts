// The artifact: one self-contained file.
//   0  "KILN" magic
//   4  u32 format version
//   8  u32 header JSON length (bytes)
//  12  u32 reserved (0)
//  16  32-byte SHA-256 of everything from byte 48 to the end
//  48  header JSON (UTF-8), then sections (WebAssembly module, weights) at 16-byte aligned offsets it names
import type { DType } from './dtype.js';
import type { WebGpuLimits } from './webgpu-limits.js';

export const MAGIC = [0x4b, 0x49, 0x4c, 0x4e]; // "KILN"
export const FORMAT_VERSION = 1;
export const PREFIX_BYTES = 48;

export interface Section {
  offset: number;
  length: number;
}

/** A graph input or output: where its bytes live in linear memory. */
export interface IOBinding {
  name: string;
  dtype: DType;
  /** The shape; with run-time sizes (`dims`), the shape at the symbols' upper bounds, which the layout uses. */
  shape: number[];
  offset: number;
  /**
   * Present when a dim is a run-time size: per dim its number, or the text of its expression over the header's
   * `symbols` (`batch`, `past + sequence`), whose tree is in the header's `dimExprs`.
   */
  dims?: (number | string)[];
}

/** A dim's expression over the symbols: a number, a symbol's name, or [operator, operands...]. */
export type DimExpr = number | string | ['+' | '*' | 'min' | 'max', DimExpr, DimExpr] | ['floordiv', DimExpr, number];

/** A size the model takes at run time, with the range it was compiled for. */
export interface SymbolInfo {
  name: string;
  min: number;
  max: number;
  /** Counted from the data by a kernel while the model runs (NonZero's count), not given by an input's shape. */
  counted?: boolean;
  /**
   * For a counted size whose bound the user declared (a Range over data: --dim range_0=LO..HI): that range. `max`
   * is HI + 1, so a run whose data asks for more stays in bounds and fails with E_INPUT instead of truncating.
   */
  declared?: [number, number];
}

export interface KernelInfo {
  /** Export name in the WebAssembly module. */
  name: string;
  /** Graph-level operators fused into it. */
  ops: string[];
  /** Floating-point operations per call (multiply-add = 2), for the profiler. */
  flops: number;
  /** Bytes read and written per call. */
  bytes: number;
  /**
   * One entry per phase (the kernel is called per phase, in order, with (phase, chunk, nchunks) after its
   * buffers): true where the phase's work can be cut into chunks that threads share.
   */
  phases: boolean[];
}

export interface KernelCall {
  kernel: number;
  /** Byte offsets of the argument buffers (inputs, then outputs, then scratch if any). */
  args: number[];
  /** ONNX nodes this call computes. */
  origin: string[];
}

export interface ArtifactHeader {
  kiln: string;
  target: 'wasm';
  /** Linear memory the model needs, in bytes. */
  memoryBytes: number;
  /** Where the weights section is copied in linear memory. */
  weightsAt: number;
  /** wasmRelaxed: the kernels with relaxed-SIMD multiply-adds, used where the engine validates it. */
  sections: { wasm: Section; weights: Section; wasmRelaxed?: Section; native?: Section };
  inputs: IOBinding[];
  outputs: IOBinding[];
  kernels: KernelInfo[];
  calls: KernelCall[];
  /**
   * Run-time sizes: the symbols in the order of the int32 region at `symbolsAt` that run() fills before the
   * kernels run (each kernel with symbolic dims takes its address as the last buffer argument), and the expression
   * of every symbolic dim of the inputs and outputs by its text.
   */
  symbols?: SymbolInfo[];
  symbolsAt?: number;
  dimExprs?: Record<string, DimExpr>;
  /** Memory plan statistics: arena used vs. the sum of all intermediates. */
  plan: { arenaBytes: number; intermediateBytes: number; weightBytes: number };
  /**
   * The control program of a model with If / Loop / Scan (src/runtime/control.ts runs it): the order in which
   * `calls` run, with branches, loops and copies between buffers. Absent: every call once, in order.
   */
  control?: ControlStep[];
  /** WGSL kernels and their calls, present when compiled for target 'webgpu' (the WebAssembly part stays usable). */
  webgpu?: WebGpuSection;
  /** PTX kernels and launch metadata, present when compiled for target 'cuda' (the WebAssembly part stays usable). */
  cuda?: CudaSection;
  /** A native shared library (sections.native), present when compiled for target 'native' (WebAssembly stays usable). */
  native?: NativeSection;
}

/**
 * The native program: an ELF shared library (sections.native) exporting `entry(void *memory, int threads)`, which
 * runs every call of `calls` in order on a memory of `memoryBytes` laid out as the WebAssembly module's (weights at
 * weightsAt, inputs and outputs at their offsets; `perCall`: one call at a time). The caller owns the memory.
 */
export interface NativeSection {
  /** Operating system and CPU architecture of the library (LLVM target triple). */
  triple: string;
  /** CPU level the code was compiled for (x86-64, x86-64-v3, x86-64-v4). */
  cpu: string;
  /** CPU features (as /proc/cpuinfo names them) the code needs. */
  features: string[];
  /** Exported function that runs the model. */
  entry: string;
  /**
   * Whether the entry is `entry(void *memory, int threads)`, running the parallel phases on that many threads (a
   * libgomp team); artifacts from before had `entry(void *memory)`, one thread.
   */
  threads?: boolean;
  /**
   * Whether the entry runs one call, `entry(void *memory, int call, int threads)`: a program with control flow,
   * whose control program the runtime runs, making each call through it.
   */
  perCall?: boolean;
  /**
   * A second export, `callEntry(void *memory, int call, int threads)`, that runs one call of a whole-run library:
   * per-kernel timings time each call through it. (Older artifacts lack it; a per-call entry is one itself.)
   */
  callEntry?: string;
  /** LLVM major version that compiled it. */
  llvm: number;
}

/**
 * The CUDA program: one PTX module; per kernel of `kernels` (same index), the entries to launch in order for one
 * call. Every entry takes one `.param .u64` global pointer per kernel buffer: inputs and outputs at the offsets of
 * KernelCall.args (same order), the scratch parameter (role 'scratch') at `scratchAt`, a region the GPU kernels'
 * temporaries share (calls run one after another). A runtime allocates `memoryBytes` of device memory and passes
 * base + offset for each.
 */
export interface CudaSection {
  /** Device memory the program needs: the memory plan's bytes, then the GPU scratch region. */
  memoryBytes: number;
  /** Offset of the GPU scratch region. */
  scratchAt: number;
  /** Compute capability the PTX targets (80, 86, 90). */
  sm: number;
  /** PTX ISA version of the module. */
  ptxVersion: string;
  ptx: string;
  kernels: CudaKernel[];
}

export interface CudaParam {
  name: string;
  role: 'input' | 'output' | 'scratch';
  dtype?: DType;
  /** Bytes the buffer spans. */
  bytes: number;
}

export interface CudaLaunch {
  /** Entry name in the PTX module. */
  entry: string;
  /** Blocks; [0, 0, 0] for a stage over an empty tensor, which is not launched. */
  grid: [number, number, number];
  block: [number, number, number];
  /** Static shared memory the entry declares (bytes); no dynamic shared memory is used. */
  sharedBytes: number;
  /** Run-time sizes: the blocks a run launches (`launchGrid`, src/runtime/run-sizes.ts). */
  runIds?: DimExpr[];
  /** blockIdx.x folded into grid y (it reads x + y * grid x): the run's x blocks go over y too. */
  foldedX?: true;
}

export interface CudaKernel {
  name: string;
  params: CudaParam[];
  launches: CudaLaunch[];
}

/**
 * The WebGPU program. Values are GPU buffers: graph inputs and outputs, intermediates (the runtime reuses their
 * buffers by lifetime) and weights (a byte range of the weights section). Narrow integers and bool occupy one
 * 32-bit word per element on the GPU (i32 for signed, u32 otherwise); the runtime converts on upload/download.
 * int64/uint64 occupy two words (lo, hi), the host's bytes unchanged.
 */
export interface WebGpuSection {
  values: GpuValue[];
  inputs: { name: string; value: number }[];
  outputs: { name: string; value: number }[];
  kernels: GpuKernel[];
  calls: GpuCall[];
  /** How int64/uint64 live on the GPU: 'u32x2', two words per element (lo, hi) as in a BigInt64Array. Older artifacts kept them as one i32. */
  int64?: 'u32x2';
  /**
   * The WebGPU limits the kernels were compiled to fit; load() checks the device against them. Absent in artifacts
   * of older Kilns (their kernels are checked one by one against the device).
   */
  limits?: WebGpuLimits;
  /**
   * With run-time sizes: the int32 value each run writes the symbols' values into (header.symbols' order), the last
   * input of the kernels that read them. Values are laid out at the symbols' upper bounds.
   */
  symbols?: number;
}

export interface GpuValue {
  dtype: DType;
  /** Element count. */
  size: number;
  kind: 'input' | 'output' | 'intermediate' | 'weight' | 'symbols';
  /** For weights: the bytes inside the weights section. */
  weight?: Section;
  /**
   * Words (4 bytes) per GPU buffer where the value is larger than one binding may view: it lives in
   * ceil(words / window) buffers, bound as windows (GpuStage.windows). Absent: one buffer.
   */
  window?: number;
}

export interface GpuKernel {
  name: string;
  ops: string[];
  /** Global temporaries (between stages), one buffer each (several where `window` is set, as for values). */
  temps: { dtype: DType; size: number; window?: number }[];
  /** One compute dispatch each, in order. */
  stages: GpuStage[];
}

export interface GpuStage {
  /** WGSL source; entry point `main`. */
  code: string;
  workgroupSize: number;
  /** Workgroups to dispatch in x, y, z. */
  grid: [number, number, number];
  /** Kernel parameter per binding (inputs, then outputs, then temps). */
  bindings: number[];
  /** Window (buffer) of the parameter per binding, where a parameter is windowed; absent: all 0. */
  windows?: number[];
  /** The shader's uniforms (binding `bindings.length`), as u32 words: the constants it shares with stages of other shapes. */
  uniforms?: number[];
  /**
   * Run-time sizes: per block index (x, y, z) the workgroup ids a run needs, as dims of the symbols (a number: all
   * of them); the grid of a run is computed from them (`launchGrid`, src/runtime/run-sizes.ts). Absent: `grid`.
   */
  runIds?: DimExpr[];
  /** Workgroup x folded into y (the shader reads x + y * num_workgroups.x): the run's x ids go over y too. */
  foldedX?: true;
}

export interface GpuCall {
  kernel: number;
  /** Value ids: inputs, then outputs. */
  args: number[];
  /**
   * A size counted while the model runs (value_dim): after the call its int32 output is copied into the symbols
   * value at this index, where the later kernels read it.
   */
  symbol?: number;
  /** ONNX nodes this call computes. */
  origin: string[];
}

/**
 * One step of a control program. Addresses are byte offsets in linear memory. A copy's `fromStride` / `toStride`
 * (bytes, may be negative) advance its addresses by the iteration number of the innermost loop around it (a scan
 * input's slice, a scan output's slot).
 */
export type ControlStep = ControlCall | ControlCopy | ControlIf | ControlLoop;
export interface ControlCall {
  op: 'call';
  /** Index into `calls`. */
  call: number;
}
export interface ControlCopy {
  op: 'copy';
  from: number;
  to: number;
  bytes: number;
  fromStride?: number;
  toStride?: number;
}
/** Runs `then` where the bool at `cond` is not 0, else `else`. */
export interface ControlIf {
  op: 'if';
  cond: number;
  then: ControlStep[];
  else: ControlStep[];
}
/**
 * Runs `body` for iterations 0, 1, ... while the iteration is below the trip count (a number, -1 for none, or the
 * int64 at `trip.at`) and the bool at `cond` (when given) is not 0. Before the first iteration the bool at `cond` is
 * set from the bool at `condFrom` (true without it); before each, the int64 at `iter` receives the iteration number.
 * `fullTrip`: the loop has scan outputs sized for the whole trip count, so stopping early is an error.
 */
export interface ControlLoop {
  op: 'loop';
  trip: number | { at: number };
  cond?: number;
  condFrom?: number;
  iter?: number;
  fullTrip?: boolean;
  /** The ONNX node, for errors. */
  name: string;
  body: ControlStep[];
}
