// The WebGPU limits an artifact was compiled to (its profile), and the load-time check of a device against them.
// The names are GPUSupportedLimits' own, so a profile compares key by key with `device.limits`.
import { KilnError } from './errors.js';

export interface WebGpuLimits {
  /** Storage buffers one compute shader binds (each window of a windowed value counts). */
  readonly maxStorageBuffersPerShaderStage: number;
  /** Bytes one storage binding may view: larger values are bound as several windows. */
  readonly maxStorageBufferBindingSize: number;
  /** Bytes of one GPUBuffer: larger values live in several buffers, one per window. */
  readonly maxBufferSize: number;
  /** Workgroup (shared) memory of one workgroup, in bytes. */
  readonly maxComputeWorkgroupStorageSize: number;
  /** Invocations (threads) of one workgroup. */
  readonly maxComputeInvocationsPerWorkgroup: number;
  readonly maxComputeWorkgroupSizeX: number;
  readonly maxComputeWorkgroupSizeY: number;
  readonly maxComputeWorkgroupSizeZ: number;
  /** Workgroups of one dispatch along each dimension. */
  readonly maxComputeWorkgroupsPerDimension: number;
  /** Bytes of the uniform binding that holds a shared shader's constants. */
  readonly maxUniformBufferBindingSize: number;
}

export const WEBGPU_LIMIT_NAMES: readonly (keyof WebGpuLimits)[] = [
  'maxStorageBuffersPerShaderStage',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxUniformBufferBindingSize',
];

/** The limits every WebGPU device has unless the page asks for more (the spec's defaults). */
export const WEBGPU_SPEC_DEFAULTS: WebGpuLimits = {
  maxStorageBuffersPerShaderStage: 8,
  maxStorageBufferBindingSize: 134217728,
  maxBufferSize: 268435456,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupSizeY: 256,
  maxComputeWorkgroupSizeZ: 64,
  maxComputeWorkgroupsPerDimension: 65535,
  maxUniformBufferBindingSize: 65536,
};

/**
 * Throws E_UNSUPPORTED naming the first limit of `profile` that the device's limits fall short of. A device that
 * does not report a limit is taken to have the spec's default for it.
 */
export function checkDeviceLimits(profile: WebGpuLimits, device: { readonly [k: string]: unknown }): void {
  for (const name of WEBGPU_LIMIT_NAMES) {
    const has = typeof device[name] === 'number' ? (device[name] as number) : WEBGPU_SPEC_DEFAULTS[name];
    if (has < profile[name])
      throw new KilnError(
        'E_UNSUPPORTED',
        `the artifact was compiled for WebGPU devices with ${name} >= ${profile[name]}; this device has ${has}`,
        {
          hint: `request the device with requiredLimits: { ${name}: ${profile[name]} } if the adapter allows it, or recompile with --webgpu-limits default (API: webgpuLimits: 'default')`,
        },
      );
  }
}
