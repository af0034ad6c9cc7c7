// What each target can do, as data: the lowering, the schedules, the tuner and the verifier read limits and
// capabilities from here instead of keeping their own constants. GPU limits are the guaranteed minimums a kernel
// may assume without asking the device (WebGPU's spec defaults; CUDA's for every sm_80+ GPU).
import { type DType, FLOAT8 } from '../../runtime/dtype.js';
import { UNARY_MATH, type UnaryMathFn } from '../../runtime/math.js';
import { WEBGPU_SPEC_DEFAULTS } from '../../runtime/webgpu-limits.js';

export type TargetName = 'wasm' | 'webgpu' | 'cuda' | 'native';

/** How a target computes a 64-bit integer. */
export type Int64Support = 'native' | 'u32-pairs';
/** How a target computes float64: natively, in float32 (intermediates only; float64 tensors rejected). */
export type Float64Support = 'native' | 'float32';
/**
 * Where exp, log, sin, tanh, erf... come from: functions imported from the host (inline float32 forms for the
 * common ones), the shading language's builtins (helpers for the ones it lacks), or approximate instructions
 * (ex2, lg2, sin, cos) with range reduction and polynomials around them.
 */
export type TranscendentalSupport = 'host-import' | 'shader-builtins' | 'approx-instructions' | 'libm';
/**
 * What a target may evaluate that the program did not ask for (a select's other arm, a value bound before the
 * statement): 'any' where nothing traps (WebGPU: out-of-bounds reads are clamped or zero, integer division by zero
 * is defined), 'pure' where a stray load or division can fault (see common/pure.ts).
 */
export type Speculation = 'any' | 'pure';

export interface GpuLimits {
  /** Threads (invocations) of one block (workgroup). */
  readonly maxThreadsPerBlock: number;
  /** Threads along x, y, z of one block. */
  readonly maxBlockDim: readonly [number, number, number];
  /** Blocks (workgroups) along x, y, z of one launch (dispatch). */
  readonly maxGrid: readonly [number, number, number];
  /** Shared (workgroup) memory of one block, in bytes. */
  readonly maxSharedBytes: number;
  /** Storage buffers one shader stage may bind (WebGPU), else undefined. */
  readonly maxStorageBuffers?: number;
}

export interface TargetCaps {
  readonly name: TargetName;
  /** Tensor dtypes its kernels read and write (others are rejected with E_UNSUPPORTED). */
  readonly tensorDtypes: readonly DType[];
  readonly int64: Int64Support;
  readonly float64: Float64Support;
  readonly transcendentals: TranscendentalSupport;
  /** float32 lanes of its vector operations (1: scalar only). */
  readonly f32VectorLanes: number;
  /** Thread binding and launch limits (GPU targets). */
  readonly gpu?: GpuLimits;
  /**
   * Signed integer dtypes whose floordiv/floormod the shared lowering rewrites into truncating div/mod and a
   * correction (src/codegen/common/legalize.ts); the emitter computes the others (unsigned ones are plain div/mod).
   * Narrow integers are not listed: narrowing runs first and computes them in int32.
   */
  readonly floorDivLowered: readonly DType[];
  /**
   * Unary math functions the emitter computes itself (builtins, approximate instructions, host imports); the
   * shared lowering expands the others into the polynomial library (src/codegen/common/math-expand.ts).
   */
  readonly nativeMath: readonly UnaryMathFn[];
  /** Whether float64 math is computed in float32 (cast down, the float32 forms, cast back) before emission. */
  readonly float64MathInFloat32: boolean;
  readonly speculation: Speculation;
  /**
   * Narrow integer dtypes the target computes in 32-bit registers (int8/int16 as int32, uint8/uint16 as uint32):
   * the shared lowering widens their arithmetic and wraps values back to their width where they may leave it
   * (src/codegen/common/narrow.ts); only loads and stores keep the narrow memory dtype.
   */
  readonly narrowInRegisters: readonly DType[];
  /**
   * 16-bit float dtypes the target stores as their bits and computes in float32: the shared lowering converts at
   * each load and store, rounding to nearest even (src/codegen/common/half-float.ts).
   */
  readonly halfInFloat32: readonly DType[];
}

/** Every unary math function (WebAssembly imports them all from the host). */
const ALL_MATH = Object.keys(UNARY_MATH) as UnaryMathFn[];
/** The integers narrower than 32 bits (bool is not one: a compare gives it, it stays 0 or 1). */
const NARROW: readonly DType[] = ['int8', 'int16', 'uint8', 'uint16'];

/** float16 and bfloat16: computed in float32 by every target for now (no f16 arithmetic, no f16x2). */
const HALF: readonly DType[] = ['float16', 'bfloat16', ...FLOAT8];

const ALL: readonly DType[] = [
  'float32',
  'float64',
  'float16',
  'bfloat16',
  ...FLOAT8,
  'int8',
  'int16',
  'int32',
  'int64',
  'uint8',
  'uint16',
  'uint32',
  'uint64',
  'bool',
];

export const TARGET_CAPS: Readonly<Record<TargetName, TargetCaps>> = {
  wasm: {
    name: 'wasm',
    tensorDtypes: ALL,
    int64: 'native',
    float64: 'native',
    transcendentals: 'host-import',
    f32VectorLanes: 4,
    floorDivLowered: ['int32', 'int64'],
    nativeMath: ALL_MATH,
    float64MathInFloat32: false,
    speculation: 'pure',
    narrowInRegisters: NARROW,
    halfInFloat32: HALF,
  },
  webgpu: {
    name: 'webgpu',
    tensorDtypes: ALL.filter((t) => t !== 'float64'),
    int64: 'u32-pairs',
    float64: 'float32',
    transcendentals: 'shader-builtins',
    f32VectorLanes: 4,
    // int64 floor division is legalized to div/mod like int32's, then split into u32 words (common/int64-pairs.ts).
    // WGSL's tanh overflows to NaN for large |x| on some drivers and it has no erf.
    floorDivLowered: ['int32', 'int64'],
    nativeMath: ALL_MATH.filter((m) => m !== 'tanh' && m !== 'erf'),
    float64MathInFloat32: false,
    speculation: 'any',
    narrowInRegisters: NARROW,
    halfInFloat32: HALF,
    // the spec's defaults (src/runtime/webgpu-limits.ts): every limits profile reaches them, so the GPU schedules'
    // tiles and workgroups fit whichever profile an artifact is compiled to
    gpu: {
      maxThreadsPerBlock: WEBGPU_SPEC_DEFAULTS.maxComputeInvocationsPerWorkgroup,
      maxBlockDim: [
        WEBGPU_SPEC_DEFAULTS.maxComputeWorkgroupSizeX,
        WEBGPU_SPEC_DEFAULTS.maxComputeWorkgroupSizeY,
        WEBGPU_SPEC_DEFAULTS.maxComputeWorkgroupSizeZ,
      ],
      maxGrid: [
        WEBGPU_SPEC_DEFAULTS.maxComputeWorkgroupsPerDimension,
        WEBGPU_SPEC_DEFAULTS.maxComputeWorkgroupsPerDimension,
        WEBGPU_SPEC_DEFAULTS.maxComputeWorkgroupsPerDimension,
      ],
      maxSharedBytes: WEBGPU_SPEC_DEFAULTS.maxComputeWorkgroupStorageSize,
      maxStorageBuffers: WEBGPU_SPEC_DEFAULTS.maxStorageBuffersPerShaderStage,
    },
  },
  cuda: {
    name: 'cuda',
    tensorDtypes: ALL,
    int64: 'native',
    float64: 'native',
    transcendentals: 'approx-instructions',
    f32VectorLanes: 4,
    // ex2.approx / lg2.approx / sin.approx / cos.approx (with range reduction) are the emitter's; float64 math goes
    // through them in float32 (~1e-6 relative)
    floorDivLowered: ['int32', 'int64'],
    nativeMath: ['exp', 'log', 'sin', 'cos'],
    float64MathInFloat32: true,
    speculation: 'pure',
    narrowInRegisters: NARROW,
    halfInFloat32: HALF,
    gpu: {
      maxThreadsPerBlock: 1024,
      maxBlockDim: [1024, 1024, 64],
      maxGrid: [2 ** 31 - 1, 65535, 65535],
      maxSharedBytes: 48 * 1024,
    },
  },
  // x86-64 through LLVM (codegen/native): every dtype in registers of its width, transcendentals from libm
  native: {
    name: 'native',
    tensorDtypes: ALL,
    int64: 'native',
    float64: 'native',
    transcendentals: 'libm',
    f32VectorLanes: 8,
    floorDivLowered: ['int32', 'int64'],
    nativeMath: ALL_MATH,
    float64MathInFloat32: false,
    speculation: 'pure',
    narrowInRegisters: NARROW,
    halfInFloat32: HALF,
  },
};
