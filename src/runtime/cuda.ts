// The CUDA executor: runs an artifact's `cuda` section through a CUDA driver API binding it is handed (the Node
// entry point passes one built on koffi over libcuda, src/node/cuda-driver.ts; tests pass one over the PTX
// simulator). One device allocation of the section's memoryBytes laid out by the memory plan (weights, inputs,
// outputs, intermediates at the header's offsets, then the GPU scratch region); weights are uploaded once; each run
// copies the inputs in, launches every call's entries in order on one stream with base + offset pointers, waits for
// the stream and copies the outputs out.
import { type ControlMemory, runControl } from './control.js';
import type { ArtifactHeader, CudaSection, DimExpr } from './artifact-format.js';
import { ARRAY, BYTES, type TypedArray } from './dtype.js';
import { KilnError } from './errors.js';
import { checkInputs } from './inputs.js';
import { inBoundLayout, launchGrid, outOfBoundLayout, runSymbols, sizesAfterRun, symbolMap } from './run-sizes.js';
import { type Tensor, sizeOf } from './tensor.js';

/** A driver object (CUmodule, CUfunction, CUstream): whatever the binding hands out, passed back unchanged. */
export type CudaHandle = unknown;

/** The device a driver opened. */
export interface CudaDeviceInfo {
  name: string;
  /** Compute capability as major * 10 + minor (80, 86, 90, ...). */
  sm: number;
  /** Device memory in bytes, where known. */
  totalBytes?: number;
}

/**
 * The subset of the CUDA driver API the executor uses, one method per driver call. Device pointers are bigints
 * (CUdeviceptr). A failing call throws a KilnError (E_NO_DEVICE when there is no driver or device).
 */
export interface CudaDriver {
  /** cuInit, cuDeviceGet(ordinal), the device's primary context retained and made current. */
  init(ordinal?: number): CudaDeviceInfo;
  /** cuModuleLoadData with PTX text (the driver JIT-compiles it for the device). */
  moduleLoadData(ptx: string): CudaHandle;
  moduleGetFunction(module: CudaHandle, name: string): CudaHandle;
  moduleUnload(module: CudaHandle): void;
  memAlloc(bytes: number): bigint;
  memFree(ptr: bigint): void;
  memcpyHtoD(dst: bigint, src: Uint8Array): void;
  memcpyDtoH(dst: Uint8Array, src: bigint): void;
  streamCreate(): CudaHandle;
  streamDestroy(stream: CudaHandle): void;
  /**
   * cuLaunchKernel; `params` are the kernel's `.param .u64` pointer values, in parameter order. `dynamicSharedBytes`:
   * shared memory beyond what the entry declares (Kiln's entries declare all theirs: 0).
   */
  launchKernel(
    fn: CudaHandle,
    grid: readonly [number, number, number],
    block: readonly [number, number, number],
    dynamicSharedBytes: number,
    stream: CudaHandle,
    params: readonly bigint[],
  ): void;
  streamSynchronize(stream: CudaHandle): void;
  /**
   * Milliseconds the stream spends on what `enqueue` puts on it, on the GPU's timeline (events recorded before and
   * after, then synchronized); waits for it. Optional: a driver without events is timed by the wall clock instead.
   */
  timeOnStream?(stream: CudaHandle, enqueue: () => void): number;
  /** Releases the primary context retained by init. */
  release(): void;
}

interface PreparedLaunch {
  fn: CudaHandle;
  grid: [number, number, number];
  /** Run-time sizes: the blocks a run needs (CudaLaunch.runIds). */
  runIds?: DimExpr[];
  foldedX?: true;
  block: [number, number, number];
  params: bigint[];
}

const bytesOf = (a: TypedArray): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

export class CudaExecutor {
  private disposed = false;
  /** The symbols of the last run by name (run-time sizes): the grids of its launches. */
  private runValues: Map<string, number> | undefined;

  private constructor(
    readonly header: ArtifactHeader,
    readonly device: CudaDeviceInfo,
    private readonly driver: CudaDriver,
    private readonly module: CudaHandle,
    private readonly stream: CudaHandle,
    private readonly base: bigint,
    /** Per call of `header.calls`, its kernel's launches. */
    private readonly callLaunches: PreparedLaunch[][],
  ) {}

  private get launches(): PreparedLaunch[] {
    return this.callLaunches.flat();
  }

  /** Number of kernel launches one run makes (without control flow). */
  get launchCount(): number {
    return this.launches.length;
  }

  static async create(
    header: ArtifactHeader,
    weights: Uint8Array,
    driver: CudaDriver,
    ordinal = 0,
  ): Promise<CudaExecutor> {
    const sec = header.cuda;
    if (!sec)
      throw new KilnError('E_ARTIFACT', 'the artifact has no CUDA kernels', {
        hint: "compile the model with target 'cuda' (kiln compile --target cuda --sm 80)",
      });
    validate(header, sec, weights);
    const device = driver.init(ordinal);
    if (device.sm < sec.sm) {
      driver.release();
      throw new KilnError(
        'E_UNSUPPORTED',
        `the artifact's PTX targets sm_${sec.sm}; the GPU '${device.name}' is sm_${device.sm}`,
        { hint: `recompile with --sm ${[90, 86, 80].find((s) => s <= device.sm) ?? 80} (or a lower SM target)` },
      );
    }
    let module: CudaHandle | undefined, stream: CudaHandle | undefined, base: bigint | undefined;
    try {
      module = driver.moduleLoadData(sec.ptx);
      const fns = new Map<string, CudaHandle>();
      const fn = (entry: string) => {
        let f = fns.get(entry);
        if (f === undefined) fns.set(entry, (f = driver.moduleGetFunction(module, entry)));
        return f;
      };
      base = driver.memAlloc(Math.max(sec.memoryBytes, 16));
      if (weights.length) driver.memcpyHtoD(base + BigInt(header.weightsAt), weights);
      stream = driver.streamCreate();
      const launches = header.calls.map((call) => {
        const k = sec.kernels[call.kernel];
        const list: PreparedLaunch[] = [];
        for (const l of k.launches) {
          if (l.grid.some((g) => g === 0)) continue; // a stage over an empty tensor
          const params = k.params.map((p, i) => base! + BigInt(p.role === 'scratch' ? sec.scratchAt : call.args[i]));
          list.push({
            fn: fn(l.entry),
            grid: l.grid,
            ...(l.runIds && { runIds: l.runIds, ...(l.foldedX && { foldedX: l.foldedX }) }),
            block: l.block,
            params,
          });
        }
        return list;
      });
      return new CudaExecutor(header, device, driver, module, stream, base, launches);
    } catch (e) {
      if (stream !== undefined) driver.streamDestroy(stream);
      if (base !== undefined) driver.memFree(base);
      if (module !== undefined) driver.moduleUnload(module);
      driver.release();
      throw e;
    }
  }

  /** Runs the model. Driver calls are synchronous, so concurrent runs never interleave. */
  async run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    if (this.disposed) throw new KilnError('E_INPUT', 'the model was disposed');
    const h = this.header;
    const checked = checkInputs(h.inputs, feeds);
    const { driver, base, stream } = this;
    const symbols = runSymbols(h, checked);
    this.runValues = symbols && symbolMap(h, symbols);
    if (symbols) driver.memcpyHtoD(base + BigInt(h.symbolsAt!), bytesOf(symbols));
    for (const inp of h.inputs) {
      const data = inBoundLayout(inp, checked[inp.name]);
      if (data.byteLength) driver.memcpyHtoD(base + BigInt(inp.offset), bytesOf(data));
    }
    if (this.header.control) runControl(this.header.control, this.deviceMemory(), (i) => this.launchCall(i));
    else this.launchAll();
    driver.streamSynchronize(stream);
    const sizes = sizesAfterRun(h, symbols, () => {
      const region = new Int32Array(symbols!.length);
      driver.memcpyDtoH(bytesOf(region), base + BigInt(h.symbolsAt!));
      return region;
    });
    const out: Record<string, Tensor> = {};
    for (const o of this.header.outputs) {
      const data = new ARRAY[o.dtype](sizeOf(o.shape)) as TypedArray;
      if (data.byteLength) driver.memcpyDtoH(bytesOf(data), base + BigInt(o.offset));
      out[o.name] = outOfBoundLayout(h, o, sizes, data);
    }
    return out;
  }

  /**
   * Milliseconds per pass of the model's kernels on the GPU's timeline, `passes` passes back to back over the inputs
   * of the last run (no copies, no host round trips: what the tuner compares); undefined when the driver cannot
   * time events.
   */
  timeKernels(passes: number): number | undefined {
    if (this.disposed) throw new KilnError('E_INPUT', 'the model was disposed');
    const { driver, stream } = this;
    // a control program decides on the device's values between launches: whole runs are timed instead
    if (!driver.timeOnStream || this.header.control) return undefined;
    return (
      driver.timeOnStream(stream, () => {
        for (let p = 0; p < passes; p++) this.launchAll();
      }) / passes
    );
  }

  private launchAll(): void {
    for (const l of this.launches) this.launch(l);
  }

  private launchCall(i: number): void {
    for (const l of this.callLaunches[i]) this.launch(l);
  }

  /** One launch, its grid at the last run's sizes (blocks past them are not launched). */
  private launch(l: PreparedLaunch): void {
    const grid = this.runValues ? launchGrid(l, this.runValues) : l.grid;
    if (grid.some((g) => g === 0)) return;
    // (its shared memory is declared in the PTX: none is dynamic)
    this.driver.launchKernel(l.fn, grid, l.block, 0, this.stream, l.params);
  }

  /**
   * The device memory as the control program sees it: each read waits for the launches before it (a condition, a
   * trip count), copies go through the host (a few bytes of loop state and scan slices).
   */
  private deviceMemory(): ControlMemory {
    const { driver, stream, base } = this;
    const read = (at: number, n: number) => {
      driver.streamSynchronize(stream);
      const b = new Uint8Array(n);
      driver.memcpyDtoH(b, base + BigInt(at));
      return b;
    };
    const write = (at: number, b: Uint8Array) => {
      driver.streamSynchronize(stream);
      driver.memcpyHtoD(base + BigInt(at), b);
    };
    return {
      byteLength: this.header.cuda!.memoryBytes,
      u8: (at) => read(at, 1)[0],
      setU8: (at, v) => write(at, new Uint8Array([v])),
      i64: (at) => new DataView(read(at, 8).buffer).getBigInt64(0, true),
      setI64: (at, v) => write(at, new Uint8Array(new BigInt64Array([v]).buffer)),
      copy: (from, to, n) => write(to, read(from, n)),
    };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const d = this.driver;
    d.streamDestroy(this.stream);
    d.memFree(this.base);
    d.moduleUnload(this.module);
    d.release();
  }
}

/** Every buffer the program touches lies inside the device allocation. */
function validate(header: ArtifactHeader, sec: CudaSection, weights: Uint8Array): void {
  const bad = (what: string) =>
    new KilnError('E_ARTIFACT', `the CUDA section is inconsistent: ${what}`, { hint: 'recompile the model' });
  if (header.weightsAt + weights.length > sec.memoryBytes) throw bad('the weights do not fit in its device memory');
  for (const b of [...header.inputs, ...header.outputs]) {
    if (b.offset + sizeOf(b.shape) * BYTES[b.dtype] > sec.memoryBytes)
      throw bad(`'${b.name}' lies outside its device memory`);
  }
  for (const call of header.calls) {
    const k = sec.kernels[call.kernel];
    if (!k) throw bad(`a call names kernel ${call.kernel} of ${sec.kernels.length}`);
    const io = k.params.filter((p) => p.role !== 'scratch').length;
    if (call.args.length < io) throw bad(`kernel ${k.name} takes ${io} buffers, a call passes ${call.args.length}`);
    k.params.forEach((p, i) => {
      const at = p.role === 'scratch' ? sec.scratchAt : call.args[i];
      if (at + p.bytes > sec.memoryBytes)
        throw bad(`kernel ${k.name}'s parameter ${p.name} lies outside its device memory`);
    });
  }
}
