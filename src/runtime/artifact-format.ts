// The artifact: one self-contained file.
//   0  "KILN" magic
//   4  u32 format version
//   8  u32 header JSON length (bytes)
//  12  u32 reserved (0)
//  16  32-byte SHA-256 of everything from byte 48 to the end
//  48  header JSON (UTF-8), then sections (WebAssembly module, weights) at 16-byte aligned offsets it names
import type { DType } from './dtype.js';

export const MAGIC = [0x4b, 0x49, 0x4c, 0x4e]; // "KILN"
export const FORMAT_VERSION = 1;
export const PREFIX_BYTES = 48;

export interface Section { offset: number; length: number }

/** A graph input or output: where its bytes live in linear memory. */
export interface IOBinding { name: string; dtype: DType; shape: number[]; offset: number }

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
   * One entry per phase (the kernel is called once per phase, in order, with (phase, task, ntasks) after its
   * buffers): true where the phase's work can be split among threads.
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
  sections: { wasm: Section; weights: Section };
  inputs: IOBinding[];
  outputs: IOBinding[];
  kernels: KernelInfo[];
  calls: KernelCall[];
  /** Memory plan statistics: arena used vs. the sum of all intermediates. */
  plan: { arenaBytes: number; intermediateBytes: number; weightBytes: number };
}
