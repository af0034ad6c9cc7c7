// The measurement target: its key names what changes generated code or its speed, never host names or paths.
//  - wasm: engine kind, CPU architecture, WebAssembly features (SIMD128, relaxed SIMD, threads);
//  - webgpu: the adapter as GPUAdapterInfo describes it (vendor, architecture, device or description) and the
//    adapter features that change generated code or how it is timed (shader-f16, subgroups, timestamp-query; the
//    many texture/format features would only make the key change with the Dawn version);
//  - cuda: the SM the PTX targets and the device's name when a driver reports one (the driver version is kept as
//    information only: a driver update should not orphan records);
//  - native: the x86-64 level the code is compiled for (its vector width and registers shape the schedules) and
//    the CPU model it is measured on, with the level's CPU flags as the features (records of another CPU model
//    of the same level are the fallback when compiling).
import os from 'node:os';
import type { CpuTarget } from '../codegen/native/cpu.js';

export type TargetKind = 'wasm' | 'webgpu' | 'cuda' | 'native';

export interface TargetInfo {
  key: string;
  kind: TargetKind;
  arch: string;
  features: string[];
  /** Informational only (not in the key): engine and CPU. */
  engine: string;
  cpu: string;
}

const SIMD = [
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11,
];
const RELAXED_SIMD = [
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2, 253, 15,
  253, 128, 2, 11,
];

function validates(bytes: number[]): boolean {
  try {
    return WebAssembly.validate(new Uint8Array(bytes));
  } catch {
    return false;
  }
}

function threads(): boolean {
  try {
    if (typeof SharedArrayBuffer === 'undefined') return false;
    return new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
  } catch {
    return false;
  }
}

export function wasmFeatures(): string[] {
  const f: string[] = [];
  if (validates(SIMD)) f.push('simd128');
  if (validates(RELAXED_SIMD)) f.push('relaxed-simd');
  if (threads()) f.push('threads');
  return f;
}

export function detectTarget(): TargetInfo {
  const features = wasmFeatures();
  const arch = process.arch;
  return {
    key: targetKey('wasm', arch, features),
    kind: 'wasm',
    arch,
    features,
    engine: `node ${process.versions.node} (v8 ${process.versions.v8})`,
    cpu: cpuModel(),
  };
}

/** This machine's CPU model as the OS names it. */
export const cpuModel = (): string => os.cpus()[0]?.model?.trim() ?? 'unknown';

/** A native target: code for `cpu`'s level, measured on a CPU named `model` (default: this machine's). */
export function nativeTarget(cpu: CpuTarget, model = cpuModel(), llvm?: string): TargetInfo {
  const features = [...cpu.flags].sort();
  return {
    key: targetKey('native', `${cpu.level}/${slug(model) || 'unknown-cpu'}`, features),
    kind: 'native',
    arch: cpu.level,
    features,
    engine: llvm ? `LLVM ${llvm}` : 'LLVM',
    cpu: model,
  };
}

export const targetKey = (kind: string, arch: string, features: readonly string[]) =>
  `${kind}/${arch}/${[...features].sort().join('+') || 'none'}`;

/** A GPU target: the TargetInfo plus the limits the GPU search space needs. */
export interface GpuTargetInfo extends TargetInfo {
  kind: 'webgpu' | 'cuda';
  /** Most threads (invocations) per workgroup / block. */
  maxThreads: number;
  /** Most shared (workgroup) memory per workgroup / block, bytes. */
  maxSharedBytes: number;
}

/** Lower-case, [a-z0-9.-] only: a key part that reads the same everywhere. */
const slug = (s: string) =>
  s
    .toLowerCase()
    .replace(/[^a-z0-9.]+/g, '-')
    .replace(/^-+|-+$/g, '');

/** Adapter features that go into the WebGPU target key. */
export const WEBGPU_KEY_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query'] as const;

export interface WebGpuAdapterDescription {
  info: { vendor: string; architecture: string; device: string; description: string };
  features: readonly string[];
  limits: Readonly<Record<string, number>>;
}

export function webgpuTarget(a: WebGpuAdapterDescription, engine = 'WebGPU'): GpuTargetInfo {
  const arch = [slug(a.info.vendor) || 'unknown-vendor', slug(a.info.architecture) || 'unknown-arch'].join('.');
  const device = slug(a.info.device) || slug(a.info.description) || 'unknown-device';
  const features = a.features.filter((f) => (WEBGPU_KEY_FEATURES as readonly string[]).includes(f)).sort();
  const maxThreads = Math.min(
    a.limits.maxComputeInvocationsPerWorkgroup ?? 256,
    a.limits.maxComputeWorkgroupSizeX ?? 256,
  );
  return {
    key: targetKey('webgpu', `${arch}/${device}`, features),
    kind: 'webgpu',
    arch,
    features,
    engine,
    cpu: a.info.description || a.info.device,
    maxThreads,
    maxSharedBytes: a.limits.maxComputeWorkgroupStorageSize ?? 16384,
  };
}

/** `device`: the name and compute capability the CUDA driver reports, when there is one. */
export function cudaTarget(sm: number, device?: { name: string; driver?: string }): GpuTargetInfo {
  const arch = `sm_${sm}`;
  const name = device ? slug(device.name) || 'unknown-device' : 'no-device';
  return {
    key: targetKey('cuda', `${arch}/${name}`, []),
    kind: 'cuda',
    arch,
    features: [],
    engine: device?.driver ? `CUDA driver ${device.driver}` : 'ptxas only (no CUDA driver)',
    cpu: device?.name ?? '',
    maxThreads: 1024,
    maxSharedBytes: 48 * 1024,
  };
}
