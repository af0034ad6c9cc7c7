// The native executor: runs an artifact's native library (target 'native') through a host binding it is handed (the
// Node entry point passes one over koffi, src/node/native-library.ts). One memory laid out by the static plan, as
// the WebAssembly module's: weights copied in once; each run writes the inputs, makes one call into the library
// (which runs every kernel call in order) and reads the outputs.
import type { ArtifactHeader, IOBinding } from './artifact-format.js';
import { ARRAY, BYTES } from './dtype.js';
import { KilnError } from './errors.js';
import { checkInputs } from './inputs.js';
import { inBoundLayout, outOfBoundLayout, runSymbols, sizesAfterRun } from './run-sizes.js';
import { type Tensor, sizeOf } from './tensor.js';

/** An opened native library: its entry, called with the model's memory. */
export interface NativeLibrary {
  run(memory: Uint8Array): void;
  close(): void;
}

/** What a platform gives the runtime to run native code. */
export interface NativeHost {
  /** The running CPU's features (/proc/cpuinfo flag names), or undefined where they cannot be read. */
  cpuFeatures(): ReadonlySet<string> | undefined;
  /** The OS and architecture as an LLVM triple prefix would name them, e.g. 'x86_64-linux'. */
  platform(): string;
  /** Opens a library from its bytes and binds `entry(void *memory)`. */
  open(library: Uint8Array, entry: string): NativeLibrary;
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

export class NativeExecutor {
  private lib: NativeLibrary | undefined;
  private readonly memory: Uint8Array;

  private constructor(
    readonly header: ArtifactHeader,
    lib: NativeLibrary,
    memory: Uint8Array,
  ) {
    this.lib = lib;
    this.memory = memory;
  }

  static create(header: ArtifactHeader, weights: Uint8Array, library: Uint8Array, host: NativeHost): NativeExecutor {
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
    memory.set(weights, header.weightsAt);
    return new NativeExecutor(header, host.open(library, sec.entry), memory);
  }

  run(feeds: Record<string, Tensor>): Record<string, Tensor> {
    if (!this.lib)
      throw new KilnError('E_INPUT', 'the model was disposed', { hint: 'load the artifact again to run it' });
    const h = this.header;
    const checked = checkInputs(h.inputs, feeds);
    const symbols = runSymbols(h, checked);
    if (symbols) this.memory.set(new Uint8Array(symbols.buffer), h.symbolsAt!);
    for (const inp of h.inputs) {
      const data = inBoundLayout(inp, checked[inp.name]);
      this.memory.set(new Uint8Array(data.buffer, data.byteOffset, sizeOf(inp.shape) * BYTES[inp.dtype]), inp.offset);
    }
    this.lib.run(this.memory);
    const sizes = sizesAfterRun(
      h,
      symbols,
      () => new Int32Array(this.memory.slice(h.symbolsAt!, h.symbolsAt! + 4 * symbols!.length).buffer),
    );
    const out: Record<string, Tensor> = {};
    for (const o of h.outputs) out[o.name] = outOfBoundLayout(h, o, sizes, this.read(o).data);
    return out;
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
