// A GPUDevice in Node through npm `webgpu` (Dawn). On a machine without a GPU, Debian's chromium package ships
// SwiftShader's Vulkan driver: when VK_ICD_FILENAMES is unset and that driver exists, it is selected here (the
// Vulkan loader reads the variable when Dawn creates its instance; libvulkan1 provides the loader).
import { existsSync } from 'node:fs';
import { importOptional } from '../node/optional-dependency.js';
import { KilnError } from '../runtime/errors.js';
import type { GpuDevice } from '../runtime/webgpu.js';

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/** What the adapter says about itself (GPUAdapterInfo), its features and limits: the tuner's WebGPU target key. */
export interface NodeGpuAdapter {
  info: { vendor: string; architecture: string; device: string; description: string };
  features: string[];
  limits: Record<string, number>;
}

/**
 * Which limits a device is requested with: 'default', the WebGPU spec's (what a page gets without requiredLimits,
 * and what artifacts compiled with the default profile need); 'adapter', the adapter's maxima of the limits Kiln's
 * kernels use (for artifacts compiled with a larger profile, and the tuner).
 */
export type NodeGpuLimits = 'default' | 'adapter';

const cached = new Map<NodeGpuLimits, Promise<GpuDevice>>();
let adapterSeen: NodeGpuAdapter | undefined;
/** Dawn's instance and adapter must outlive the device: collecting them while it runs crashes the process. */
const keepAlive: unknown[] = [];

/** One device per process and kind of limits (default: the WebGPU spec's limits). */
export function nodeGpuDevice(limits: NodeGpuLimits = 'default'): Promise<GpuDevice> {
  let d = cached.get(limits);
  if (!d) {
    d = create(limits);
    cached.set(limits, d);
  }
  return d;
}

/** The adapter behind nodeGpuDevice() (creating a device if needed), with its maxima of the limits Kiln uses. */
export async function nodeGpuAdapter(): Promise<NodeGpuAdapter> {
  if (!adapterSeen) await nodeGpuDevice();
  return adapterSeen!;
}

async function create(limits: NodeGpuLimits): Promise<GpuDevice> {
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  type WebGpuModule = { create(opts: string[]): { requestAdapter(o?: object): Promise<unknown> }; globals: object };
  const mod = await importOptional<WebGpuModule>('webgpu');
  Object.assign(globalThis, mod.globals);
  const backend = process.env.KILN_WEBGPU_BACKEND ?? 'vulkan';
  const gpu = mod.create([`backend=${backend}`]);
  type Adapter = {
    limits: Record<string, number>;
    features?: Iterable<string>;
    info?: Partial<NodeGpuAdapter['info']>;
    requestDevice(d: object): Promise<GpuDevice>;
  };
  const adapter = (await gpu.requestAdapter()) as Adapter | null;
  keepAlive.push(gpu, adapter);
  if (!adapter) {
    throw new KilnError('E_UNSUPPORTED', `no WebGPU adapter (Dawn backend '${backend}')`, {
      hint: `install a Vulkan driver: on Debian, apt-get install chromium libvulkan1 gives SwiftShader at ${SWIFTSHADER_ICD}`,
    });
  }
  const want = [
    'maxStorageBuffersPerShaderStage',
    'maxStorageBufferBindingSize',
    'maxBufferSize',
    'maxComputeWorkgroupsPerDimension',
    'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupSizeX',
    'maxComputeWorkgroupSizeY',
    'maxComputeWorkgroupSizeZ',
    'maxComputeWorkgroupStorageSize',
    'maxUniformBufferBindingSize',
  ];
  const maxima = Object.fromEntries(
    want.filter((k) => typeof adapter.limits[k] === 'number').map((k) => [k, adapter.limits[k]]),
  );
  const requiredLimits = limits === 'adapter' ? maxima : {};
  const features = [...(adapter.features ?? [])].sort();
  const info = adapter.info ?? {};
  adapterSeen = {
    info: {
      vendor: info.vendor ?? '',
      architecture: info.architecture ?? '',
      device: info.device ?? '',
      description: info.description ?? '',
    },
    features,
    limits: { ...maxima },
  };
  // timestamp queries let the tuner time dispatches on the GPU timeline
  const requiredFeatures = features.filter((f) => f === 'timestamp-query');
  return adapter.requestDevice({ requiredLimits, requiredFeatures });
}
