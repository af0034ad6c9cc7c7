// The native executor: runs an artifact's native library (target 'native') through a host binding it is handed (the
// Node entry point passes one over koffi, src/node/native-library.ts). One memory laid out by the static plan, as
// the WebAssembly module's: weights copied in once; each run writes the inputs, makes one call into the library
// (which runs every kernel call in order, its parallel phases on `threads` threads) and reads the outputs.
import type { ArtifactHeader, IOBinding } from './artifact-format.js';
import type { ArtifactParts } from './artifact.js';
import { ARRAY, BYTES, type DType, type TypedArray } from './dtype.js';
import { KilnError } from './errors.js';
import { checkInputs } from './inputs.js';
import type { KernelTiming } from './executor.js';
import { hostMemory, runControl } from './control.js';
import { type Elements, outOfBoundLayout, runSymbols, sizesAfterRun, writeBoundLayout } from './run-sizes.js';
import { type Tensor, sizeOf } from './tensor.js';

/**
 * How a library's entry is called: `entry(void *memory, int threads)` runs every call ('run'); `entry(void *memory,
 * int call, int threads)` runs one ('call': a program with control flow, whose calls the runtime makes); artifacts
 * from before native threads have `entry(void *memory)` ('run-one-thread').
 */
export type NativeEntry = 'run' | 'call' | 'run-one-thread';

/** An opened native library: its entry, called with the model's memory, the threads to run on (and the call). */
export interface NativeLibrary {
  run(memory: Uint8Array, threads: number, call?: number): void;
  /** The per-call entry beside a whole-run one (NativeSection.callEntry), where the library has one. */
  runCall?(memory: Uint8Array, call: number, threads: number): void;
  close(): void;
}

/** What a platform gives the runtime to run native code. */
export interface NativeHost {
  /** The running CPU's features (/proc/cpuinfo flag names), or undefined where they cannot be read. */
  cpuFeatures(): ReadonlySet<string> | undefined;
  /** The OS and architecture as an LLVM triple prefix would name them, e.g. 'x86_64-linux'. */
  platform(): string;
  /** Opens a library from its bytes and binds its entry, called as `kind` says (and `callEntry`, one call at a time). */
  open(library: Uint8Array, entry: string, kind: NativeEntry, callEntry?: string): NativeLibrary;
}

/** Why an artifact's native code cannot run on this host, or undefined when it can. */
export function nativeMismatch(header: ArtifactHeader, host: NativeHost): string | undefined {
  const sec = header.native;
  if (!sec) return 'the artifact has no native code';
  const [arch, , os] = sec.triple.split('-');
  if (host.platform() !== `${arch}-${os}`)
    return `the native code is for ${arch}-${os}, this machine is ${host.platform()}`;
  const have = host.cpuFeatures();
  if (!have) return `this machine's CPU features cannot be read (the code needs ${sec.cpu})`;
  const missing = sec.features.filter((f) => !have.has(f));
  if (missing.length) return `the native code needs CPU level ${sec.cpu}; this CPU lacks ${missing.join(', ')}`;
  return undefined;
}

/**
 * The artifact's native code opened on `host`, or why it cannot run here (another CPU level or platform, or a
 * library the host cannot load): the caller then runs the artifact's WebAssembly.
 */
export function openNative(
  parts: ArtifactParts,
  host: NativeHost,
  threads: number,
): { executor: NativeExecutor } | { why: string } {
  if (!parts.header.native || !parts.native)
    throw new KilnError('E_ARTIFACT', 'the artifact has no native code', {
      hint: "compile the model with target 'native' (kiln compile --target native)",
    });
  const why = nativeMismatch(parts.header, host);
  if (why !== undefined) return { why };
  try {
    return { executor: NativeExecutor.create(parts.header, parts.weights, parts.native, host, threads) };
  } catch (e) {
    // a library this machine cannot load (E_UNSUPPORTED from the host) falls back like a CPU mismatch
    if (!(e instanceof KilnError && e.code === 'E_UNSUPPORTED')) throw e;
    return { why: e.message };
  }
}

export class NativeExecutor {
  private lib: NativeLibrary | undefined;
  private readonly memory: Uint8Array;

  private constructor(
    readonly header: ArtifactHeader,
    lib: NativeLibrary,
    memory: Uint8Array,
    /** Threads each run uses (1 for artifacts from before native threads). */
    readonly threads: number,
  ) {
    this.lib = lib;
    this.memory = memory;
  }

  static create(
    header: ArtifactHeader,
    weights: Uint8Array,
    library: Uint8Array,
    host: NativeHost,
    threads: number,
  ): NativeExecutor {
    const sec = header.native;
    if (!sec)
      throw new KilnError('E_ARTIFACT', 'the artifact has no native code', {
        hint: "compile the model with target 'native' (kiln compile --target native)",
      });
    let memory: Uint8Array;
    try {
      memory = new Uint8Array(header.memoryBytes);
    } catch (e) {
      throw new KilnError(
        'E_SHAPE',
        `the model's memory plan needs ${header.memoryBytes} bytes, which could not be allocated: ${(e as Error)?.message ?? e}`,
        { hint: 'free memory, or compile for smaller input shapes' },
      );
    }
    if (header.control && !sec.perCall)
      throw new KilnError('E_ARTIFACT', "the artifact's native code predates control flow on target 'native'", {
        hint: 'recompile the model (kiln compile --target native)',
      });
    memory.set(weights, header.weightsAt);
    const kind: NativeEntry = sec.perCall ? 'call' : sec.threads ? 'run' : 'run-one-thread';
    return new NativeExecutor(
      header,
      host.open(library, sec.entry, kind, sec.callEntry),
      memory,
      kind === 'run-one-thread' ? 1 : threads,
    );
  }

  /** Runs the model; `timings`, when given, receives each kernel call's time (its calls made one by one). */
  run(feeds: Record<string, Tensor>, timings?: KernelTiming[]): Record<string, Tensor> {
    if (!this.lib)
      throw new KilnError('E_INPUT', 'the model was disposed', { hint: 'load the artifact again to run it' });
    const h = this.header;
    const checked = checkInputs(h.inputs, feeds);
    const symbols = runSymbols(h, checked);
    if (symbols) this.symbols(symbols.length).set(symbols);
    // straight into the memory, as the WebAssembly executor does (a bound-sized copy per run page-faults fresh
    // memory each time)
    for (const inp of h.inputs)
      writeBoundLayout(inp, checked[inp.name], this.view(inp, sizeOf(inp.shape)) as unknown as Elements);
    const lib = this.lib;
    const timed = (call: number, run: () => void) => {
      const t0 = performance.now();
      run();
      timings!.push({ kernel: h.calls[call].kernel, call, ms: performance.now() - t0 });
    };
    if (h.control)
      runControl(h.control, hostMemory(this.memory.buffer as ArrayBuffer), (call) => {
        const run = () => lib.run(this.memory, this.threads, call);
        if (timings) timed(call, run);
        else run();
      });
    else if (timings) {
      const runCall = lib.runCall;
      if (!runCall)
        throw new KilnError('E_UNSUPPORTED', "the artifact's native code predates per-kernel timings", {
          hint: 'recompile the model (kiln compile --target native), or run it without timings',
        });
      for (let i = 0; i < h.calls.length; i++) timed(i, () => runCall(this.memory, i, this.threads));
    } else lib.run(this.memory, this.threads);
    const sizes = sizesAfterRun(h, symbols, () => this.symbols(symbols!.length));
    const out: Record<string, Tensor> = {};
    // (an output of run-time shape is copied out of the memory once; a static one is read whole)
    for (const o of h.outputs)
      out[o.name] = sizes && o.dims ? outOfBoundLayout(h, o, sizes, this.view(o, sizeOf(o.shape))) : this.read(o);
    return out;
  }

  private view(b: { dtype: DType; offset: number }, n: number): TypedArray {
    return new ARRAY[b.dtype](this.memory.buffer, this.memory.byteOffset + b.offset, n);
  }

  /** The run's symbol values in the memory (counted ones written by the run). */
  private symbols(n: number): Int32Array {
    return new Int32Array(this.memory.buffer, this.memory.byteOffset + this.header.symbolsAt!, n);
  }

  private read(o: IOBinding): Tensor {
    const n = sizeOf(o.shape);
    const data = new ARRAY[o.dtype](n);
    new Uint8Array(data.buffer).set(this.memory.subarray(o.offset, o.offset + n * BYTES[o.dtype]));
    return { dtype: o.dtype, shape: [...o.shape], data };
  }

  dispose(): void {
    this.lib?.close();
    this.lib = undefined;
  }
}
