// The CUDA driver API from Node through koffi (a maintained FFI package): libcuda.so.1 is opened at run time, so
// Kiln installs and runs without a GPU; target 'cuda' then fails with E_NO_DEVICE naming what is missing.
// Handles (CUcontext, CUmodule, CUfunction, CUstream) and device pointers travel as u64 bigints; out-parameters are
// typed arrays koffi passes by pointer. The versioned entry points (_v2) are the ones cuda.h maps its names to.
import { platform } from 'node:os';
import { KilnError } from '../runtime/errors.js';
import { importOptional } from './optional-dependency.js';
import type { CudaDeviceInfo, CudaDriver, CudaHandle } from '../runtime/cuda.js';

export interface CudaDriverOptions {
  /** The driver library to open; default libcuda.so.1 (the NVIDIA driver's, on the loader path). */
  library?: string;
}

type Fn = (...args: unknown[]) => number;

const NO_DRIVER_HINT =
  "install the NVIDIA driver (it provides libcuda.so.1) on a machine with a CUDA GPU, or use target 'wasm'";
// CUresult values that get their own error code or hint
const CUDA_ERROR_OUT_OF_MEMORY = 2;
const CUDA_ERROR_INSUFFICIENT_DRIVER = 35;
const CUDA_ERROR_NO_DEVICE = 100;
const CUDA_ERROR_NO_BINARY_FOR_GPU = 209;
const CUDA_ERROR_INVALID_PTX = 218;
const CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;

/** Opens the CUDA driver. Throws KilnError E_NO_DEVICE when koffi or libcuda cannot be loaded. */
export async function openCudaDriver(opts: CudaDriverOptions = {}): Promise<CudaDriver> {
  if (platform() !== 'linux' && !opts.library) {
    throw new KilnError(
      'E_NO_DEVICE',
      `the CUDA runtime path needs Linux with the NVIDIA driver; this is ${platform()}`,
      { hint: "use target 'wasm' (or 'webgpu') here" },
    );
  }
  const koffi = (await importOptional<typeof import('koffi')>('koffi')).default;
  const libName = opts.library ?? 'libcuda.so.1';
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load(libName);
  } catch (e) {
    throw new KilnError('E_NO_DEVICE', `no CUDA driver: ${libName} cannot be loaded (${(e as Error).message})`, {
      hint: NO_DRIVER_HINT,
    });
  }
  const f = (decl: string): Fn => {
    try {
      return lib.func(decl) as Fn;
    } catch (e) {
      throw new KilnError(
        'E_NO_DEVICE',
        `the CUDA driver ${libName} lacks ${decl.match(/(\w+)\(/)?.[1]} (${(e as Error).message})`,
        { hint: 'update the NVIDIA driver' },
      );
    }
  };
  const cu = {
    init: f('int cuInit(unsigned int flags)'),
    getErrorString: f('int cuGetErrorString(int error, _Out_ const char **str)'),
    getErrorName: f('int cuGetErrorName(int error, _Out_ const char **str)'),
    deviceGetCount: f('int cuDeviceGetCount(void *count)'),
    deviceGet: f('int cuDeviceGet(void *device, int ordinal)'),
    deviceGetName: f('int cuDeviceGetName(void *name, int len, int device)'),
    deviceGetAttribute: f('int cuDeviceGetAttribute(void *value, int attrib, int device)'),
    deviceTotalMem: f('int cuDeviceTotalMem_v2(void *bytes, int device)'),
    primaryCtxRetain: f('int cuDevicePrimaryCtxRetain(void *ctx, int device)'),
    primaryCtxRelease: f('int cuDevicePrimaryCtxRelease_v2(int device)'),
    ctxSetCurrent: f('int cuCtxSetCurrent(uint64_t ctx)'),
    moduleLoadData: f('int cuModuleLoadData(void *module, const char *image)'),
    moduleGetFunction: f('int cuModuleGetFunction(void *fn, uint64_t module, const char *name)'),
    moduleUnload: f('int cuModuleUnload(uint64_t module)'),
    memAlloc: f('int cuMemAlloc_v2(void *dptr, size_t bytes)'),
    memFree: f('int cuMemFree_v2(uint64_t dptr)'),
    memcpyHtoD: f('int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t bytes)'),
    memcpyDtoH: f('int cuMemcpyDtoH_v2(void *dst, uint64_t src, size_t bytes)'),
    streamCreate: f('int cuStreamCreate(void *stream, unsigned int flags)'),
    streamDestroy: f('int cuStreamDestroy_v2(uint64_t stream)'),
    launchKernel: f(
      'int cuLaunchKernel(uint64_t fn, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int shared, uint64_t stream, void *params, void *extra)',
    ),
    streamSynchronize: f('int cuStreamSynchronize(uint64_t stream)'),
    eventCreate: f('int cuEventCreate(void *event, unsigned int flags)'),
    eventRecord: f('int cuEventRecord(uint64_t event, uint64_t stream)'),
    eventSynchronize: f('int cuEventSynchronize(uint64_t event)'),
    eventElapsedTime: f('int cuEventElapsedTime(void *ms, uint64_t start, uint64_t end)'),
    eventDestroy: f('int cuEventDestroy_v2(uint64_t event)'),
  };

  const describe = (r: number): string => {
    const name: (string | null)[] = [null],
      text: (string | null)[] = [null];
    cu.getErrorName(r, name);
    cu.getErrorString(r, text);
    return `${name[0] ?? `CUresult ${r}`}: ${text[0] ?? 'unknown error'}`;
  };
  const check = (r: number, what: string): void => {
    if (r === 0) return;
    const msg = `${what} failed (${describe(r)})`;
    switch (r) {
      case CUDA_ERROR_NO_DEVICE:
        throw new KilnError('E_NO_DEVICE', `no CUDA GPU: ${msg}`, {
          hint: "run on a machine with an NVIDIA GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES), or use target 'wasm'",
        });
      case CUDA_ERROR_INSUFFICIENT_DRIVER:
        throw new KilnError('E_NO_DEVICE', msg, {
          hint: 'the NVIDIA driver is older than the CUDA API this needs: update it',
        });
      case CUDA_ERROR_OUT_OF_MEMORY:
        throw new KilnError('E_UNSUPPORTED', `the GPU ran out of memory: ${msg}`, {
          hint: 'free GPU memory or use a smaller model or batch',
        });
      case CUDA_ERROR_INVALID_PTX:
      case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
      case CUDA_ERROR_NO_BINARY_FOR_GPU:
        throw new KilnError('E_UNSUPPORTED', msg, {
          hint: 'the driver cannot JIT this PTX for the GPU: update the driver (PTX ISA 8.0 needs CUDA 12.0+) or recompile with a lower --sm',
        });
      default:
        throw new KilnError('E_INTERNAL', msg, { hint: 'please report this with the model and the GPU' });
    }
  };
  const out64 = () => new BigUint64Array(1);
  const asU64 = (h: CudaHandle): bigint => h as bigint;

  const retained: number[] = []; // devices whose primary context init retained, released in turn
  // kernel parameter values live in native memory: cuLaunchKernel reads kernelParams[i] -> *(u64 *)
  let paramCap = 0,
    paramAddr = 0n,
    paramVals = new BigUint64Array(0),
    paramPtrs = new BigUint64Array(0);
  const paramSpace = (n: number) => {
    if (n <= paramCap) return;
    paramCap = Math.max(n, 16);
    const mem = koffi.alloc('uint64_t', paramCap); // kept for the driver's lifetime (a few bytes)
    paramAddr = koffi.address(mem);
    paramVals = new BigUint64Array(koffi.view(mem, 8 * paramCap));
    paramPtrs = new BigUint64Array(paramCap).map((_, i) => paramAddr + 8n * BigInt(i));
  };

  const driver: CudaDriver = {
    init(ordinal = 0): CudaDeviceInfo {
      check(cu.init(0), 'cuInit');
      const count = new Int32Array(1);
      check(cu.deviceGetCount(count), 'cuDeviceGetCount');
      if (count[0] === 0)
        throw new KilnError('E_NO_DEVICE', 'no CUDA GPU: the driver is installed but reports no device', {
          hint: "check nvidia-smi and CUDA_VISIBLE_DEVICES, or use target 'wasm'",
        });
      if (ordinal < 0 || ordinal >= count[0])
        throw new KilnError('E_INPUT', `CUDA device ${ordinal} does not exist; the driver reports ${count[0]}`, {
          hint: `pass cudaDevice between 0 and ${count[0] - 1}`,
        });
      const dev = new Int32Array(1);
      check(cu.deviceGet(dev, ordinal), 'cuDeviceGet');
      const ctx = out64();
      check(cu.primaryCtxRetain(ctx, dev[0]), 'cuDevicePrimaryCtxRetain');
      const device = dev[0];
      retained.push(device);
      check(cu.ctxSetCurrent(ctx[0]), 'cuCtxSetCurrent');
      const name = new Uint8Array(256);
      check(cu.deviceGetName(name, name.length, device), 'cuDeviceGetName');
      const major = new Int32Array(1),
        minor = new Int32Array(1),
        total = out64();
      check(cu.deviceGetAttribute(major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device), 'cuDeviceGetAttribute');
      check(cu.deviceGetAttribute(minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device), 'cuDeviceGetAttribute');
      check(cu.deviceTotalMem(total, device), 'cuDeviceTotalMem');
      const end = name.indexOf(0);
      return {
        name: new TextDecoder().decode(name.subarray(0, end < 0 ? name.length : end)),
        sm: major[0] * 10 + minor[0],
        totalBytes: Number(total[0]),
      };
    },
    moduleLoadData(ptx) {
      const m = out64();
      check(cu.moduleLoadData(m, ptx), 'cuModuleLoadData');
      return m[0];
    },
    moduleGetFunction(module, name) {
      const fn = out64();
      check(cu.moduleGetFunction(fn, asU64(module), name), `cuModuleGetFunction(${name})`);
      return fn[0];
    },
    moduleUnload(module) {
      check(cu.moduleUnload(asU64(module)), 'cuModuleUnload');
    },
    memAlloc(bytes) {
      const p = out64();
      check(cu.memAlloc(p, bytes), `cuMemAlloc(${bytes} bytes)`);
      return p[0];
    },
    memFree(ptr) {
      check(cu.memFree(ptr), 'cuMemFree');
    },
    memcpyHtoD(dst, src) {
      check(cu.memcpyHtoD(dst, src, src.byteLength), 'cuMemcpyHtoD');
    },
    memcpyDtoH(dst, src) {
      check(cu.memcpyDtoH(dst, src, dst.byteLength), 'cuMemcpyDtoH');
    },
    streamCreate() {
      const s = out64();
      check(cu.streamCreate(s, 0), 'cuStreamCreate');
      return s[0];
    },
    streamDestroy(stream) {
      check(cu.streamDestroy(asU64(stream)), 'cuStreamDestroy');
    },
    launchKernel(fn, grid, block, dynamicSharedBytes, stream, params) {
      paramSpace(params.length);
      paramVals.set(params);
      check(
        cu.launchKernel(
          asU64(fn),
          grid[0],
          grid[1],
          grid[2],
          block[0],
          block[1],
          block[2],
          dynamicSharedBytes,
          asU64(stream),
          paramPtrs,
          null,
        ),
        'cuLaunchKernel',
      );
    },
    streamSynchronize(stream) {
      check(cu.streamSynchronize(asU64(stream)), 'cuStreamSynchronize (a kernel failed)');
    },
    timeOnStream(stream, enqueue) {
      const start = out64(),
        end = out64();
      check(cu.eventCreate(start, 0), 'cuEventCreate');
      try {
        check(cu.eventCreate(end, 0), 'cuEventCreate');
        try {
          check(cu.eventRecord(start[0], asU64(stream)), 'cuEventRecord');
          enqueue();
          check(cu.eventRecord(end[0], asU64(stream)), 'cuEventRecord');
          check(cu.eventSynchronize(end[0]), 'cuEventSynchronize (a kernel failed)');
          const ms = new Float32Array(1);
          check(cu.eventElapsedTime(ms, start[0], end[0]), 'cuEventElapsedTime');
          return ms[0];
        } finally {
          cu.eventDestroy(end[0]);
        }
      } finally {
        cu.eventDestroy(start[0]);
      }
    },
    release() {
      const d = retained.pop();
      if (d !== undefined) check(cu.primaryCtxRelease(d), 'cuDevicePrimaryCtxRelease');
    },
  };
  return driver;
}

/** Whether a CUDA driver with at least one device is present (for tests and tools); never throws. */
export async function cudaAvailable(): Promise<boolean> {
  try {
    const d = await openCudaDriver();
    d.init();
    d.release();
    return true;
  } catch {
    return false;
  }
}
