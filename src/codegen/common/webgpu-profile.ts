// The WebGPU limits profile a 'webgpu' artifact is compiled to. An artifact compiled ahead of time does not know the
// adapter it will meet, so by default it assumes only what WebGPU guarantees (the spec's defaults); 'desktop' assumes
// what desktop GPUs' adapters offer when a page asks for their maxima. The runtime checks the device against the
// profile the artifact records (src/runtime/webgpu-limits.ts).
import { KilnError } from '../../runtime/errors.js';
import { WEBGPU_LIMIT_NAMES, WEBGPU_SPEC_DEFAULTS, type WebGpuLimits } from '../../runtime/webgpu-limits.js';

export type { WebGpuLimits } from '../../runtime/webgpu-limits.js';

export const WEBGPU_PROFILES = {
  default: WEBGPU_SPEC_DEFAULTS,
  // what Chrome's adapters report on current NVIDIA, AMD and Intel desktop GPUs (D3D12, Vulkan, Metal), rounded
  // down to what all of them reach
  desktop: {
    maxStorageBuffersPerShaderStage: 10,
    maxStorageBufferBindingSize: 1073741824,
    maxBufferSize: 2147483648,
    maxComputeWorkgroupStorageSize: 32768,
    maxComputeInvocationsPerWorkgroup: 1024,
    maxComputeWorkgroupSizeX: 1024,
    maxComputeWorkgroupSizeY: 1024,
    maxComputeWorkgroupSizeZ: 64,
    maxComputeWorkgroupsPerDimension: 65535,
    maxUniformBufferBindingSize: 65536,
  },
} as const satisfies Record<string, WebGpuLimits>;
export type WebGpuProfileName = keyof typeof WEBGPU_PROFILES;

/**
 * Limits below which the compiler cannot build kernels: the GPU schedules' tiles take up to 256 invocations and
 * 16 KiB of workgroup memory (the spec's defaults), and one kernel binds up to 4 storage buffers (a 3-input
 * operator and its output; wider groups and concatenations are split to fit).
 */
const FLOOR: Partial<WebGpuLimits> = {
  maxStorageBuffersPerShaderStage: 4,
  maxStorageBufferBindingSize: 1 << 20,
  maxBufferSize: 1 << 20,
  maxComputeWorkgroupStorageSize: WEBGPU_SPEC_DEFAULTS.maxComputeWorkgroupStorageSize,
  maxComputeInvocationsPerWorkgroup: WEBGPU_SPEC_DEFAULTS.maxComputeInvocationsPerWorkgroup,
  maxComputeWorkgroupSizeX: WEBGPU_SPEC_DEFAULTS.maxComputeWorkgroupSizeX,
  maxComputeWorkgroupSizeY: WEBGPU_SPEC_DEFAULTS.maxComputeWorkgroupSizeY,
  maxComputeWorkgroupSizeZ: WEBGPU_SPEC_DEFAULTS.maxComputeWorkgroupSizeZ,
  maxComputeWorkgroupsPerDimension: WEBGPU_SPEC_DEFAULTS.maxComputeWorkgroupsPerDimension,
  maxUniformBufferBindingSize: 4096,
};

const NAMES_HINT = `use 'default' (the WebGPU spec's limits), 'desktop', or an object / JSON file with any of ${WEBGPU_LIMIT_NAMES.join(', ')}`;

/**
 * The profile of a `webgpuLimits` option: a profile name, or limits by GPUSupportedLimits name (the ones left out
 * are the spec's defaults). `what` names the option's source in errors (a file name, 'webgpuLimits').
 */
export function resolveWebGpuLimits(
  spec: WebGpuProfileName | Partial<WebGpuLimits> | undefined,
  what = 'webgpuLimits',
): WebGpuLimits {
  if (spec === undefined) return WEBGPU_PROFILES.default;
  if (typeof spec === 'string') {
    if (!Object.hasOwn(WEBGPU_PROFILES, spec))
      throw new KilnError('E_INPUT', `${what}: no WebGPU limits profile named '${spec}'`, { hint: NAMES_HINT });
    return WEBGPU_PROFILES[spec as WebGpuProfileName];
  }
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec))
    throw new KilnError('E_INPUT', `${what} is ${spec === null ? 'null' : typeof spec}, not a profile`, {
      hint: NAMES_HINT,
    });
  const out: Record<string, number> = { ...WEBGPU_SPEC_DEFAULTS };
  for (const [k, v] of Object.entries(spec)) {
    if (!(WEBGPU_LIMIT_NAMES as readonly string[]).includes(k))
      throw new KilnError('E_INPUT', `${what}: '${k}' is not a WebGPU limit Kiln compiles to`, { hint: NAMES_HINT });
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0)
      throw new KilnError('E_INPUT', `${what}: ${k} is ${JSON.stringify(v)}, not a positive integer`, {
        hint: 'give each limit as a number, as GPUSupportedLimits does',
      });
    const floor = FLOOR[k as keyof WebGpuLimits];
    if (floor !== undefined && v < floor)
      throw new KilnError('E_UNSUPPORTED', `${what}: ${k} ${v} is below the ${floor} Kiln's GPU kernels need`, {
        hint: `raise ${k} to at least ${floor}, or compile for target 'wasm'`,
      });
    out[k] = v;
  }
  if (out.maxStorageBufferBindingSize % 4 !== 0)
    throw new KilnError('E_INPUT', `${what}: maxStorageBufferBindingSize must be a multiple of 4`, {
      hint: 'WebGPU requires it',
    });
  return out as unknown as WebGpuLimits;
}

/** The name of a profile equal to `limits`, if one is. */
export function profileName(limits: WebGpuLimits): WebGpuProfileName | undefined {
  return (Object.keys(WEBGPU_PROFILES) as WebGpuProfileName[]).find((n) =>
    WEBGPU_LIMIT_NAMES.every((k) => WEBGPU_PROFILES[n][k] === limits[k]),
  );
}

/**
 * Words (4 bytes) of one binding window: a value larger than the profile's binding (or buffer) size is bound as
 * windows of this many words, each its own GPUBuffer. A multiple of 64 words keeps every window's start 256-byte
 * aligned and a multiple of 4 elements.
 */
export function windowWords(limits: WebGpuLimits): number {
  const bytes = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  return Math.floor(bytes / 256) * 64;
}
