// Runs a compiled model: one WebAssembly instance over one linear memory laid out by the static plan
// (weights, then an arena shared by inputs, outputs and intermediates by lifetime).
import { ARRAY, BYTES, type DType } from './dtype.js';
import { KilnError } from './errors.js';
import { checkInputs } from './inputs.js';
import { mathImports } from './math.js';
import type { ArtifactHeader, IOBinding, KernelCall } from './artifact-format.js';
import { MAX_THREADS, ThreadPool, type WorkerFactory } from './thread-pool.js';
import { withSharedMemoryImport } from './shared-memory.js';
import { type Tensor, sizeOf } from './tensor.js';
import type { ArtifactParts } from './artifact.js';
import { damaged } from './header-check.js';
import { type Elements, outOfBoundLayout, runSymbols, sizesAfterRun, writeBoundLayout } from './run-sizes.js';
import { hostMemory, runControl } from './control.js';

const PAGE = 65536;
type KernelFn = (...ptrs: number[]) => void;

/** Pages a 32-bit WebAssembly memory can have: 65536 of 64 KiB, 4 GiB. */
export const MAX_PAGES = 65536;

function newMemory(h: ArtifactHeader, shared = false): WebAssembly.Memory {
  const pages = Math.max(1, Math.ceil(h.memoryBytes / PAGE));
  const need = `the model's memory plan needs ${h.memoryBytes} bytes`;
  if (!(pages <= MAX_PAGES)) {
    throw new KilnError(
      'E_SHAPE',
      `${need}; WebAssembly (wasm32) addresses at most ${MAX_PAGES * PAGE} bytes (${MAX_PAGES} pages of 64 KiB)`,
      {
        hint: 'compile for smaller input shapes (--input-shape) or a smaller batch; if the model is small, the artifact is damaged: recompile it',
      },
    );
  }
  try {
    // a shared memory must declare its maximum up front: keep it to what the plan needs
    return new WebAssembly.Memory({ initial: pages, maximum: shared ? pages : Math.max(pages, MAX_PAGES), shared });
  } catch (e) {
    throw new KilnError(
      'E_SHAPE',
      `${need} (${pages} pages${shared ? ', shared' : ''}); this engine refused to allocate it: ${(e as Error)?.message ?? e}`,
      { hint: 'free memory, load with { threads: 1 }, or compile for smaller input shapes' },
    );
  }
}
const imports = (memory: WebAssembly.Memory) => ({ env: { memory }, math: mathImports() });
function loadError(e: unknown): KilnError {
  if (e instanceof KilnError) return e;
  return new KilnError('E_ARTIFACT', `the artifact's WebAssembly module does not load: ${(e as Error)?.message ?? e}`, {
    hint: 'recompile the model',
  });
}
/** A trap (out-of-bounds access, unreachable, stack overflow) while a kernel runs. */
export function trapError(e: unknown, kernel: string, call: number): KilnError {
  if (e instanceof KilnError) return e;
  return new KilnError(
    'E_ARTIFACT',
    `the artifact's code trapped in kernel ${kernel} (call ${call}): ${(e as Error)?.message ?? e}`,
    { hint: 'recompile the model; if a fresh artifact traps too, please report it with the model' },
  );
}

export interface KernelTiming {
  kernel: number;
  call: number;
  ms: number;
}

export interface ThreadOptions {
  threads: number;
  workerFactory?: WorkerFactory;
  /** 'auto' (default): relaxed-SIMD kernels where the engine has relaxed SIMD, else baseline SIMD128. */
  simd?: 'auto' | 'relaxed' | 'baseline';
  /** Kernel calls with less work (flops + elements moved) run on one thread; default MIN_PARALLEL_WORK. */
  minParallelWork?: number;
}

/**
 * A parallel phase costs a few microseconds (the workers spin between phases; waking a sleeping one costs tens); a
 * kernel call with less work than this (flops + elements read and written: ~5 us at 40 GFLOP/s) runs on the calling
 * thread alone. 2 threads, alternating with the former 2e6: ResNet-18 1.70 -> 1.80x over 1 thread, SqueezeNet
 * 1.67 -> 1.80x, MobileNetV2 1.74 -> 1.77x, BERT 1.82 -> 1.84x (Winograd transforms, poolings, small layers split too).
 */
export const MIN_PARALLEL_WORK = 2e5;

/** A module using f32x4.relaxed_madd: validates only where relaxed SIMD is available. */
const RELAXED_PROBE = new Uint8Array([
  0x00,
  0x61,
  0x73,
  0x6d,
  0x01,
  0x00,
  0x00,
  0x00,
  0x01,
  0x05,
  0x01,
  0x60,
  0x00,
  0x01,
  0x7b,
  0x03,
  0x02,
  0x01,
  0x00,
  0x0a,
  0x3d,
  0x01,
  0x3b,
  0x00,
  ...[0, 1, 2].flatMap(() => [0xfd, 0x0c, ...new Array(16).fill(0)]),
  0xfd,
  0x85,
  0x02,
  0x0b,
]);
export const hasRelaxedSimd = (): boolean => WebAssembly.validate(RELAXED_PROBE);

export class WasmExecutor {
  readonly header: ArtifactHeader;
  private readonly memory: WebAssembly.Memory;
  private readonly fns: KernelFn[];
  private pool: ThreadPool | undefined;
  /** Per kernel: whether its calls have enough work to split among threads. */
  private splitWorth: boolean[] = [];
  /** Which kernel variant runs: relaxed-SIMD multiply-adds or baseline SIMD128. */
  simd: 'relaxed' | 'baseline' = 'baseline';

  private constructor(parts: ArtifactParts, memory: WebAssembly.Memory, instance: WebAssembly.Instance) {
    this.header = parts.header;
    this.memory = memory;
    for (const k of parts.header.kernels) {
      if (!Array.isArray(k.phases))
        throw new KilnError('E_ARTIFACT', `kernel ${k.name} has no phase list`, {
          hint: 'recompile the model with this Kiln version',
        });
    }
    new Uint8Array(memory.buffer, parts.header.weightsAt, parts.weights.length).set(parts.weights);
    this.fns = parts.header.kernels.map((k) => {
      const f = instance.exports[k.name];
      if (typeof f !== 'function')
        throw new KilnError('E_ARTIFACT', `kernel ${k.name} missing from the module`, { hint: 'recompile the model' });
      return f as KernelFn;
    });
    // every call passes its buffers, then (phase, chunk, nchunks): as many arguments as the kernel takes
    parts.header.calls.forEach((c, i) => {
      const takes = this.fns[c.kernel].length,
        passes = c.args.length + 3;
      if (takes !== passes)
        throw damaged(
          `calls[${i}] passes ${passes} arguments to kernel ${parts.header.kernels[c.kernel].name}, which takes ${takes}`,
        );
    });
  }

  static async create(parts: ArtifactParts, opts: ThreadOptions = { threads: 1 }): Promise<WasmExecutor> {
    const threads = opts.threads;
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS)
      throw new KilnError('E_INPUT', `threads must be an integer from 1 to ${MAX_THREADS}, got ${threads}`);
    const parallel = threads > 1 && parts.header.kernels.some((k) => k.phases.some(Boolean));
    if (parallel && !opts.workerFactory) {
      throw new KilnError('E_INPUT', `${threads} threads requested but this platform has no workers`, {
        hint: 'load with { threads: 1 }',
      });
    }
    const relaxed = opts.simd !== 'baseline' && parts.wasmRelaxed !== undefined && hasRelaxedSimd();
    if (opts.simd === 'relaxed' && !relaxed) {
      throw new KilnError(
        'E_INPUT',
        parts.wasmRelaxed ? 'this engine has no relaxed SIMD' : 'the artifact has no relaxed-SIMD kernels',
        { hint: "load with { simd: 'auto' } (Node 20 needs --experimental-wasm-relaxed-simd)" },
      );
    }
    const code = relaxed ? parts.wasmRelaxed! : parts.wasm;
    const memory = newMemory(parts.header, parallel);
    let ex: WasmExecutor;
    let module: WebAssembly.Module;
    try {
      module = await WebAssembly.compile((parallel ? withSharedMemoryImport(code) : code) as BufferSource);
      ex = new WasmExecutor(parts, memory, await WebAssembly.instantiate(module, imports(memory)));
    } catch (e) {
      throw loadError(e);
    }
    ex.simd = relaxed ? 'relaxed' : 'baseline';
    if (parallel)
      ex.pool = await ThreadPool.create(
        threads,
        module,
        memory,
        parts.header.kernels.map((k) => k.name),
        opts.workerFactory!,
      );
    const minWork = opts.minParallelWork ?? MIN_PARALLEL_WORK;
    ex.splitWorth = parts.header.kernels.map((k) => k.flops + k.bytes / 4 >= minWork);
    return ex;
  }

  /** Threads running each parallel phase (1 without a pool). */
  get threads(): number {
    return this.pool?.size ?? 1;
  }

  /** Stops the worker threads, if any. */
  dispose(): void {
    this.pool?.terminate();
    this.pool = undefined;
  }

  /** Synchronous variant (Node and workers): the compiler's constant folder uses it. */
  static createSync(parts: ArtifactParts): WasmExecutor {
    const memory = newMemory(parts.header);
    try {
      return new WasmExecutor(
        parts,
        memory,
        new WebAssembly.Instance(new WebAssembly.Module(parts.wasm as BufferSource), imports(memory)),
      );
    } catch (e) {
      throw loadError(e);
    }
  }

  private view(b: { dtype: DType; offset: number }, n: number) {
    return new ARRAY[b.dtype](this.memory.buffer, b.offset, n);
  }

  /** Runs the model; `timings`, when given, receives each kernel call's time. */
  run(feeds: Record<string, Tensor>, timings?: KernelTiming[]): Record<string, Tensor> {
    const h = this.header;
    const checked = checkInputs(h.inputs, feeds);
    const symbols = runSymbols(h, checked);
    if (symbols) new Int32Array(this.memory.buffer, h.symbolsAt!, symbols.length).set(symbols);
    for (const inp of h.inputs)
      writeBoundLayout(inp, checked[inp.name], this.view(inp, sizeOf(inp.shape)) as unknown as Elements);
    const calls = this.header.calls;
    this.pool?.running(true);
    let i = 0;
    const step = (k: number) => {
      i = k;
      const t0 = timings ? performance.now() : 0;
      this.call(calls[k]);
      if (timings) timings.push({ kernel: calls[k].kernel, call: k, ms: performance.now() - t0 });
    };
    try {
      if (this.header.control) runControl(this.header.control, hostMemory(this.memory.buffer as ArrayBuffer), step);
      else for (let k = 0; k < calls.length; k++) step(k);
    } catch (e) {
      throw e instanceof KilnError ? e : trapError(e, this.header.kernels[calls[i].kernel].name, i);
    } finally {
      this.pool?.running(false);
    }
    const out: Record<string, Tensor> = {};
    const sizes = sizesAfterRun(h, symbols, () => new Int32Array(this.memory.buffer, h.symbolsAt!, symbols!.length));
    // (an output of run-time shape is copied out of the memory once; a static one is read whole)
    for (const o of h.outputs)
      out[o.name] = sizes && o.dims ? outOfBoundLayout(h, o, sizes, this.view(o, sizeOf(o.shape))) : this.read(o);
    return out;
  }

  /** One kernel call: its phases in order, parallel ones split among the pool's threads. */
  private call(c: KernelCall): void {
    const fn = this.fns[c.kernel],
      phases = this.header.kernels[c.kernel].phases;
    for (let p = 0; p < phases.length; p++) {
      if (this.pool && phases[p] && this.splitWorth[c.kernel])
        this.pool.run(c.kernel, c.args, p, (chunk, nchunks) => fn(...c.args, p, chunk, nchunks));
      else fn(...c.args, p, 0, 1);
    }
  }

  private read(o: IOBinding): Tensor {
    const n = sizeOf(o.shape);
    const data = new ARRAY[o.dtype](n);
    new Uint8Array(data.buffer).set(new Uint8Array(this.memory.buffer, o.offset, n * BYTES[o.dtype]));
    return { dtype: o.dtype, shape: [...o.shape], data };
  }
}
