// Runs the WebGPU section of an artifact on any GPUDevice (a browser's, or Dawn's in Node through npm `webgpu`).
// At load: limits checked against the device, one compute pipeline per distinct WGSL stage (cached per device by
// shader text: stages of different shapes share one when the compiler moved their constants into uniforms, which
// live in one uniform buffer, each stage's slice at the device's offset alignment), weights uploaded once, every
// buffer and bind group created once (intermediates reuse buffers by lifetime from a pool keyed by size and usage).
// A run writes the inputs, records every dispatch into one command encoder (one compute pass: WebGPU orders storage
// accesses between dispatches), copies the outputs to staging buffers and maps them.
import { ARRAY, type DType, type TypedArray, isHalf } from './dtype.js';
import { halfBitsOf } from './half.js';
import { KilnError } from './errors.js';
import { checkInputs } from './inputs.js';
import {
  countsSizes,
  inBoundLayout,
  launchGrid,
  outOfBoundLayout,
  runSymbols,
  sizesAfterRun,
  symbolMap,
} from './run-sizes.js';
import type { ArtifactHeader, DimExpr, GpuStage, GpuValue, WebGpuSection } from './artifact-format.js';
import type { Tensor } from './tensor.js';
import { checkDeviceLimits } from './webgpu-limits.js';

// Minimal structural WebGPU types: a real GPUDevice satisfies them, so the runtime needs no type package.
export interface GpuBuffer {
  readonly size: number;
  mapAsync(mode: number): Promise<void>;
  getMappedRange(): ArrayBuffer;
  unmap(): void;
  destroy(): void;
}
interface GpuShaderModule {
  getCompilationInfo?(): Promise<{ messages: readonly { type: string; message: string; lineNum: number }[] }>;
}
interface GpuPipeline {
  getBindGroupLayout(i: number): unknown;
}
export interface GpuPass {
  setPipeline(p: GpuPipeline): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
  end(): void;
}
interface GpuEncoder {
  beginComputePass(): GpuPass;
  copyBufferToBuffer(src: GpuBuffer, so: number, dst: GpuBuffer, d: number, size: number): void;
  finish(): unknown;
}
export interface GpuDevice {
  readonly limits: { readonly [k: string]: unknown };
  readonly queue: {
    writeBuffer(b: GpuBuffer, offset: number, data: ArrayBufferView): void;
    submit(cmds: unknown[]): void;
  };
  createBuffer(d: { size: number; usage: number; label?: string }): GpuBuffer;
  createShaderModule(d: { code: string; label?: string }): GpuShaderModule;
  createComputePipelineAsync(d: {
    layout: 'auto';
    compute: { module: GpuShaderModule; entryPoint: string };
    label?: string;
  }): Promise<GpuPipeline>;
  createBindGroup(d: {
    layout: unknown;
    entries: { binding: number; resource: { buffer: GpuBuffer; offset?: number; size?: number } }[];
  }): unknown;
  createCommandEncoder(): GpuEncoder;
  pushErrorScope(filter: 'validation' | 'out-of-memory' | 'internal'): void;
  popErrorScope(): Promise<{ readonly message: string } | null>;
}

// GPUBufferUsage / GPUMapMode values (fixed by the WebGPU spec)
const MAP_READ = 1,
  COPY_SRC = 4,
  COPY_DST = 8,
  UNIFORM = 64,
  STORAGE = 128;
const VALUE_USAGE = STORAGE | COPY_SRC | COPY_DST;

/** The 32-bit array type a dtype occupies on the GPU (one word per element; two for 64-bit integers). */
function wordArray(t: DType): Float32ArrayConstructor | Int32ArrayConstructor | Uint32ArrayConstructor {
  switch (t) {
    case 'float32':
      return Float32Array;
    case 'int32':
    case 'int16':
    case 'int8':
      return Int32Array;
    case 'uint32':
    case 'uint16':
    case 'uint8':
    case 'bool':
    case 'float16': // its bits (common/half-float.ts)
    case 'bfloat16':
    case 'float8e4m3fn':
    case 'float8e4m3fnuz':
    case 'float8e5m2':
    case 'float8e5m2fnuz':
    case 'int64':
    case 'uint64':
      return Uint32Array;
    default:
      throw new KilnError('E_ARTIFACT', `the WebGPU section holds a ${t} value, which WGSL lacks`, {
        hint: 'recompile the model',
      });
  }
}
const isWide = (t: DType) => t === 'int64' || t === 'uint64';
/** Bytes of a GPU buffer for `size` elements of `t` (never 0: WebGPU rejects empty bindings). */
const wordBytes = (t: DType, size: number) => Math.max(4, size * (isWide(t) ? 8 : 4));

/**
 * Byte sizes of the GPU buffers of a value: one, or one per window of `window` words for a value larger than one
 * binding may view (the last window holds the rest).
 */
function windowSizes(t: DType, size: number, window: number | undefined): number[] {
  const total = wordBytes(t, size);
  if (!window || total <= window * 4) return [total];
  const n = Math.ceil(total / (window * 4));
  return Array.from({ length: n }, (_, w) => (w < n - 1 ? window * 4 : total - w * window * 4));
}

/** Writes `data` across a value's buffers, window by window. */
function writeWindows(
  queue: GpuDevice['queue'],
  bufs: readonly GpuBuffer[],
  data: ArrayBufferView,
  window: number | undefined,
): void {
  if (bufs.length === 1) {
    queue.writeBuffer(bufs[0], 0, data);
    return;
  }
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  bufs.forEach((b, w) =>
    queue.writeBuffer(b, 0, bytes.subarray(w * window! * 4, Math.min(bytes.length, (w + 1) * window! * 4))),
  );
}

function toWords(t: DType, data: TypedArray, what: string): ArrayBufferView {
  // int64/uint64: two u32 words (lo, hi) per element on the GPU (split-int64), the BigInt64Array's own bytes
  if (isWide(t)) {
    if (!(data instanceof BigInt64Array || data instanceof BigUint64Array))
      throw new KilnError('E_INPUT', `${what} must be a BigInt64Array or BigUint64Array`);
    return data;
  }
  const W = wordArray(t);
  if ((data as ArrayBufferView).constructor === W) return data;
  return W.from((isHalf(t) ? halfBitsOf(data) : data) as ArrayLike<number>);
}

function fromWords(t: DType, words: ArrayBuffer, n: number): TypedArray {
  if (isWide(t))
    return t === 'int64' ? new BigInt64Array(words.slice(0, n * 8)) : new BigUint64Array(words.slice(0, n * 8));
  const out = new ARRAY[t](n);
  (isHalf(t) ? halfBitsOf(out) : (out as unknown as { set(a: ArrayLike<number>): void })).set(
    new (wordArray(t))(words, 0, n),
  );
  return out;
}

const pipelineCache = new WeakMap<object, Map<string, Promise<GpuPipeline>>>();

async function pipelineFor(device: GpuDevice, stage: GpuStage, label: string): Promise<GpuPipeline> {
  let cache = pipelineCache.get(device);
  if (!cache) {
    cache = new Map();
    pipelineCache.set(device, cache);
  }
  let p = cache.get(stage.code);
  if (!p) {
    const module = device.createShaderModule({ code: stage.code, label });
    p = device
      .createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' }, label })
      .catch(async (e: Error) => {
        const info = await module.getCompilationInfo?.().catch(() => undefined);
        const msgs = info?.messages
          .filter((m) => m.type === 'error')
          .map((m) => `line ${m.lineNum}: ${m.message}`)
          .join('; ');
        throw new KilnError('E_ARTIFACT', `WGSL of ${label} does not compile on this device: ${msgs || e.message}`, {
          hint: 'please report this with the model',
        });
      });
    cache.set(stage.code, p);
    p.catch(() => cache!.delete(stage.code));
  }
  return p;
}

interface Dispatch {
  pipeline: GpuPipeline;
  group: unknown;
  grid: [number, number, number];
  /** Run-time sizes: the ids a run needs per workgroup index (GpuStage.runIds). */
  runIds?: DimExpr[];
  foldedX?: true;
  /** A counted size: after this dispatch, the int32 at the start of `from` goes into the symbols at byte `at`. */
  count?: { from: GpuBuffer; at: number };
}

export class WebGpuExecutor {
  private readonly owned: GpuBuffer[] = [];
  private dispatches: Dispatch[] = [];
  /** Per value its GPU buffers: one, or one per window. */
  private valueBufs: GpuBuffer[][] = [];
  /** Per GPU output its staging buffers, one per window of the output. */
  private staging: GpuBuffer[][] = [];
  /** Where the symbols are read back after a run that counts sizes from the data. */
  private symbolsStaging: GpuBuffer | undefined;
  private gpuOutputs: WebGpuSection['outputs'] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private disposed = false;
  private readonly constOutputs = new Map<string, TypedArray>();

  private constructor(
    readonly header: ArtifactHeader,
    private readonly sec: WebGpuSection,
    private readonly device: GpuDevice,
  ) {}

  static async create(header: ArtifactHeader, weights: Uint8Array, device: GpuDevice): Promise<WebGpuExecutor> {
    const sec = header.webgpu;
    if (!sec)
      throw new KilnError('E_ARTIFACT', 'the artifact has no WebGPU kernels', {
        hint: "compile the model with target 'webgpu' (kiln compile --target webgpu)",
      });
    if (sec.int64 !== 'u32x2' && [...sec.values, ...sec.kernels.flatMap((k) => k.temps)].some((v) => isWide(v.dtype))) {
      throw new KilnError(
        'E_ARTIFACT',
        'the WebGPU section keeps int64 values in 32 bits (an older Kiln); this runtime expects 64',
        { hint: 'recompile the model' },
      );
    }
    const ex = new WebGpuExecutor(header, sec, device);
    try {
      await ex.init(weights);
    } catch (e) {
      ex.dispose();
      throw e;
    }
    return ex;
  }

  private limit(name: string, fallback: number): number {
    const v = this.device.limits[name];
    return typeof v === 'number' ? v : fallback;
  }

  private checkLimits(): void {
    const { sec } = this;
    // the profile the kernels were compiled to: the device must have every limit of it
    if (sec.limits) checkDeviceLimits(sec.limits, this.device.limits);
    const maxBindings = this.limit('maxStorageBuffersPerShaderStage', 8);
    const maxInvocations = Math.min(
      this.limit('maxComputeInvocationsPerWorkgroup', 256),
      this.limit('maxComputeWorkgroupSizeX', 256),
    );
    const maxGroups = this.limit('maxComputeWorkgroupsPerDimension', 65535);
    const maxUniform = this.limit('maxUniformBufferBindingSize', 65536);
    const maxBinding = Math.min(
      this.limit('maxStorageBufferBindingSize', 134217728),
      this.limit('maxBufferSize', 268435456),
    );
    const hint = "request a device with higher limits (requestDevice({ requiredLimits })), or use target 'wasm'";
    for (const k of sec.kernels) {
      for (const st of k.stages) {
        if (st.bindings.length > maxBindings)
          throw new KilnError(
            'E_UNSUPPORTED',
            `kernel ${k.name} (${k.ops.join(', ')}) binds ${st.bindings.length} storage buffers; the device allows ${maxBindings}`,
            { hint },
          );
        if (st.workgroupSize > maxInvocations)
          throw new KilnError(
            'E_UNSUPPORTED',
            `kernel ${k.name} uses workgroups of ${st.workgroupSize}; the device allows ${maxInvocations}`,
            { hint },
          );
        if ((st.uniforms?.length ?? 0) * 4 > maxUniform)
          throw new KilnError(
            'E_UNSUPPORTED',
            `kernel ${k.name} has ${st.uniforms!.length} uniforms; the device binds at most ${maxUniform} bytes`,
            { hint },
          );
        if (st.grid.some((g) => g > maxGroups))
          throw new KilnError(
            'E_UNSUPPORTED',
            `kernel ${k.name} dispatches [${st.grid}] workgroups; the device allows ${maxGroups} per dimension`,
            { hint },
          );
      }
      for (const t of k.temps)
        if (Math.max(...windowSizes(t.dtype, t.size, t.window)) > maxBinding)
          throw new KilnError(
            'E_UNSUPPORTED',
            `kernel ${k.name} needs a ${wordBytes(t.dtype, t.size)}-byte temporary; the device binds at most ${maxBinding}`,
            { hint },
          );
    }
    for (const v of sec.values)
      if (Math.max(...windowSizes(v.dtype, v.size, v.window)) > maxBinding)
        throw new KilnError(
          'E_UNSUPPORTED',
          `a ${v.kind} of ${v.size} elements needs ${wordBytes(v.dtype, v.size)} bytes; the device binds at most ${maxBinding}`,
          { hint },
        );
  }

  private newBuffer(size: number, usage: number, label: string): GpuBuffer {
    const b = this.device.createBuffer({ size, usage, label });
    this.owned.push(b);
    return b;
  }

  /** A value's buffers (one per window). */
  private newBuffers(v: { dtype: DType; size: number; window?: number }, usage: number, label: string): GpuBuffer[] {
    const sizes = windowSizes(v.dtype, v.size, v.window);
    return sizes.map((n, w) => this.newBuffer(n, usage, sizes.length > 1 ? `${label} window ${w}` : label));
  }

  private async init(weights: Uint8Array): Promise<void> {
    const { sec, device } = this;
    this.checkLimits();
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    const pipelines = await Promise.all(
      sec.kernels.map((k) => Promise.all(k.stages.map((st, i) => pipelineFor(device, st, `${k.name} stage ${i}`)))),
    );

    // buffers: weights uploaded once; inputs and outputs their own; intermediates pooled by lifetime
    const lastUse = new Map<number, number>();
    sec.calls.forEach((c, i) => c.args.forEach((a) => lastUse.set(a, i)));
    const bufs: GpuBuffer[][] = new Array(sec.values.length);
    const pool = new Map<string, GpuBuffer[][]>();
    const poolKey = (v: GpuValue) => `${windowSizes(v.dtype, v.size, v.window).join(',')}:${VALUE_USAGE}`;
    const weightData = (v: GpuValue): TypedArray => {
      const w = v.weight!;
      if (w.offset + w.length > weights.length)
        throw new KilnError('E_ARTIFACT', 'artifact is damaged: a weight lies outside the weights section', {
          hint: 'recompile the model',
        });
      return new ARRAY[v.dtype](weights.slice(w.offset, w.offset + w.length).buffer, 0, v.size);
    };
    const kernelArgs = new Set(sec.calls.flatMap((c) => c.args));
    sec.values.forEach((v, id) => {
      if (v.kind === 'intermediate') return;
      if (v.kind === 'weight' && !kernelArgs.has(id)) {
        // a constant output no kernel reads (any dtype, int64 included): answered from the weights section
        for (const o of sec.outputs) if (o.value === id) this.constOutputs.set(o.name, weightData(v));
        return;
      }
      const b = (bufs[id] = this.newBuffers(v, VALUE_USAGE, `${v.kind} ${id}`));
      if (v.kind === 'weight' && v.size > 0)
        writeWindows(device.queue, b, toWords(v.dtype, weightData(v), `weight ${id}`), v.window);
    });
    sec.calls.forEach((c, i) => {
      const out = c.args[c.args.length - 1];
      const v = sec.values[out];
      if (v.kind === 'intermediate' && !bufs[out])
        bufs[out] = pool.get(poolKey(v))?.pop() ?? this.newBuffers(v, VALUE_USAGE, `intermediate ${out}`);
      for (const a of new Set(c.args)) {
        if (sec.values[a].kind !== 'intermediate' || (lastUse.get(a) ?? i) > i) continue;
        const key = poolKey(sec.values[a]);
        pool.set(key, [...(pool.get(key) ?? []), bufs[a]]);
      }
    });
    this.valueBufs = bufs;
    const temps = sec.kernels.map((k) => k.temps.map((t, j) => this.newBuffers(t, STORAGE, `${k.name} temp ${j}`)));

    // every stage's uniforms (the constants its shader shares with other shapes) in one buffer, written once
    const align = this.limit('minUniformBufferOffsetAlignment', 256);
    const uniformBytes = (st: GpuStage) => Math.ceil((st.uniforms?.length ?? 0) / 4) * 16; // array<vec4<u32>, N>
    let uniformTotal = 0;
    const uniformAt = sec.kernels.map((k) =>
      k.stages.map((st) => {
        if (!st.uniforms?.length) return -1;
        const at = uniformTotal;
        uniformTotal += Math.ceil(uniformBytes(st) / align) * align;
        return at;
      }),
    );
    const ubuf = uniformTotal ? this.newBuffer(uniformTotal, UNIFORM | COPY_DST, 'uniforms') : undefined;
    if (ubuf) {
      const words = new Uint32Array(uniformTotal / 4);
      sec.kernels.forEach((k, i) =>
        k.stages.forEach((st, s) => {
          if (uniformAt[i][s] >= 0) words.set(st.uniforms!, uniformAt[i][s] / 4);
        }),
      );
      device.queue.writeBuffer(ubuf, 0, words);
    }

    // one bind group per call and stage, made once
    for (const c of sec.calls) {
      const k = sec.kernels[c.kernel];
      const params = [...c.args.map((a) => bufs[a]), ...temps[c.kernel]];
      k.stages.forEach((st, s) => {
        const pipeline = pipelines[c.kernel][s];
        const entries: { binding: number; resource: { buffer: GpuBuffer; offset?: number; size?: number } }[] =
          st.bindings.map((p, binding) => ({ binding, resource: { buffer: params[p][st.windows?.[binding] ?? 0] } }));
        const at = uniformAt[c.kernel][s];
        if (at >= 0)
          entries.push({
            binding: st.bindings.length,
            resource: { buffer: ubuf!, offset: at, size: uniformBytes(st) },
          });
        const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
        const count =
          c.symbol !== undefined && s === k.stages.length - 1
            ? { from: bufs[c.args[c.args.length - 1]][0], at: 4 * c.symbol }
            : undefined;
        this.dispatches.push({
          pipeline,
          group,
          grid: st.grid,
          ...(st.runIds && { runIds: st.runIds, ...(st.foldedX && { foldedX: st.foldedX }) }),
          ...(count && { count }),
        });
      });
    }
    if (sec.symbols !== undefined && countsSizes(this.header))
      this.symbolsStaging = this.newBuffer(4 * sec.values[sec.symbols].size, MAP_READ | COPY_DST, 'staging symbols');
    this.gpuOutputs = sec.outputs.filter((o) => !this.constOutputs.has(o.name));
    this.staging = this.gpuOutputs.map((o) =>
      this.newBuffers(sec.values[o.value], MAP_READ | COPY_DST, `staging ${o.name}`),
    );
    const invalid = await device.popErrorScope();
    const oom = await device.popErrorScope();
    if (oom) throw new KilnError('E_UNSUPPORTED', `the GPU ran out of memory loading the model: ${oom.message}`);
    if (invalid)
      throw new KilnError('E_ARTIFACT', `the WebGPU program does not validate on this device: ${invalid.message}`, {
        hint: 'please report this with the model',
      });
  }

  /** Runs the model; concurrent calls are queued. */
  run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    const r = this.chain.then(() => this.runNow(feeds));
    this.chain = r.catch(() => undefined);
    return r;
  }

  private async runNow(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    if (this.disposed) throw new KilnError('E_INPUT', 'the model was disposed');
    const h = this.header;
    const checked = checkInputs(h.inputs, feeds);
    const symbols = runSymbols(h, checked);
    const { sec, device } = this;
    device.pushErrorScope('validation');
    if (symbols && sec.symbols !== undefined) device.queue.writeBuffer(this.valueBufs[sec.symbols][0], 0, symbols);
    for (const inp of sec.inputs) {
      const v = sec.values[inp.value];
      const binding = h.inputs.find((b) => b.name === inp.name)!;
      if (v.size > 0)
        writeWindows(
          device.queue,
          this.valueBufs[inp.value],
          toWords(v.dtype, inBoundLayout(binding, checked[inp.name]), `input '${inp.name}'`),
          v.window,
        );
    }
    const enc = device.createCommandEncoder();
    // (workgroups past the run's sizes are not dispatched)
    const values = symbols && symbolMap(h, symbols);
    // one compute pass, ended where a counted size is copied into the symbols the later dispatches read
    let pass: GpuPass | undefined;
    for (const d of this.dispatches) {
      pass ??= enc.beginComputePass();
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.group);
      const grid = values ? launchGrid(d, values) : d.grid;
      pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
      if (d.count) {
        pass.end();
        pass = undefined;
        enc.copyBufferToBuffer(d.count.from, 0, this.valueBufs[sec.symbols!][0], d.count.at, 4);
      }
    }
    pass?.end();
    this.gpuOutputs.forEach((o, i) =>
      this.staging[i].forEach((s, w) => enc.copyBufferToBuffer(this.valueBufs[o.value][w], 0, s, 0, s.size)),
    );
    const counted = this.symbolsStaging;
    if (counted) enc.copyBufferToBuffer(this.valueBufs[sec.symbols!][0], 0, counted, 0, counted.size);
    device.queue.submit([enc.finish()]);
    const err = await device.popErrorScope();
    if (err)
      throw new KilnError('E_INTERNAL', `WebGPU run failed: ${err.message}`, {
        hint: 'please report this with the model',
      });
    await Promise.all([...this.staging.flat(), ...(counted ? [counted] : [])].map((s) => s.mapAsync(MAP_READ)));
    let sizes: Int32Array | undefined;
    try {
      sizes = sizesAfterRun(h, symbols, () => new Int32Array(counted!.getMappedRange().slice(0)));
    } catch (e) {
      // (a run that fails here, a Range longer than its bound, leaves the buffers ready for the next)
      for (const s of this.staging.flat()) s.unmap();
      throw e;
    } finally {
      counted?.unmap();
    }
    const data = new Map<string, TypedArray>();
    this.gpuOutputs.forEach((o, i) => {
      const parts = this.staging[i];
      let words: ArrayBuffer;
      if (parts.length === 1) words = parts[0].getMappedRange();
      else {
        const all = new Uint8Array(parts.reduce((n, s) => n + s.size, 0));
        let at = 0;
        for (const s of parts) {
          all.set(new Uint8Array(s.getMappedRange()), at);
          at += s.size;
        }
        words = all.buffer;
      }
      data.set(o.name, fromWords(sec.values[o.value].dtype, words, sec.values[o.value].size));
      for (const s of parts) s.unmap();
    });
    const out: Record<string, Tensor> = {};
    for (const o of sec.outputs) {
      const v = sec.values[o.value];
      const binding = this.header.outputs.find((b) => b.name === o.name);
      const c = this.constOutputs.get(o.name);
      const laidOut = data.get(o.name) ?? (c!.slice() as TypedArray);
      out[o.name] = binding
        ? outOfBoundLayout(h, binding, sizes, laidOut)
        : { dtype: v.dtype, shape: [v.size], data: laidOut };
    }
    return out;
  }

  /** Records one run's dispatches into `pass`, on the inputs last written (the tuner times them this way). */
  encodeDispatches(pass: GpuPass): void {
    for (const d of this.dispatches) {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.group);
      pass.dispatchWorkgroups(d.grid[0], d.grid[1], d.grid[2]);
    }
  }

  /** Releases every GPU buffer of this model (pipelines stay cached for the device). */
  dispose(): void {
    this.disposed = true;
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
    this.dispatches = [];
  }
}
