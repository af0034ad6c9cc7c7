// Runs a compiled model: one WebAssembly instance over one linear memory laid out by the static plan
// (weights, then an arena shared by inputs, outputs and intermediates by lifetime).
import { ARRAY, BYTES, type DType } from './dtype.js';
import { KilnError } from './errors.js';
import { mathImports } from './math.js';
import type { ArtifactHeader, IOBinding } from './artifact-format.js';
import { type Tensor, formatShape, sizeOf } from './tensor.js';
import type { ArtifactParts } from './artifact.js';

const PAGE = 65536;
type KernelFn = (...ptrs: number[]) => void;

function newMemory(h: ArtifactHeader): WebAssembly.Memory {
  const pages = Math.max(1, Math.ceil(h.memoryBytes / PAGE));
  return new WebAssembly.Memory({ initial: pages, maximum: Math.max(pages, 65536) });
}
const imports = (memory: WebAssembly.Memory) => ({ env: { memory }, math: mathImports() });
function loadError(e: unknown): KilnError {
  if (e instanceof KilnError) return e;
  return new KilnError('E_ARTIFACT', `the artifact's WebAssembly module does not load: ${(e as Error).message}`, { hint: 'recompile the model' });
}

export interface KernelTiming { kernel: number; call: number; ms: number }

export class WasmExecutor {
  readonly header: ArtifactHeader;
  private readonly memory: WebAssembly.Memory;
  private readonly fns: KernelFn[];

  private constructor(parts: ArtifactParts, memory: WebAssembly.Memory, instance: WebAssembly.Instance) {
    this.header = parts.header;
    this.memory = memory;
    new Uint8Array(memory.buffer, parts.header.weightsAt, parts.weights.length).set(parts.weights);
    this.fns = parts.header.kernels.map((k) => {
      const f = instance.exports[k.name];
      if (typeof f !== 'function') throw new KilnError('E_ARTIFACT', `kernel ${k.name} missing from the module`, { hint: 'recompile the model' });
      return f as KernelFn;
    });
  }

  static async create(parts: ArtifactParts): Promise<WasmExecutor> {
    const memory = newMemory(parts.header);
    try {
      const module = await WebAssembly.compile(parts.wasm as BufferSource);
      return new WasmExecutor(parts, memory, await WebAssembly.instantiate(module, imports(memory)));
    } catch (e) {
      throw loadError(e);
    }
  }

  /** Synchronous variant (Node and workers): the compiler's constant folder uses it. */
  static createSync(parts: ArtifactParts): WasmExecutor {
    const memory = newMemory(parts.header);
    try {
      return new WasmExecutor(parts, memory, new WebAssembly.Instance(new WebAssembly.Module(parts.wasm as BufferSource), imports(memory)));
    } catch (e) {
      throw loadError(e);
    }
  }

  private view(b: { dtype: DType; offset: number }, n: number) {
    return new ARRAY[b.dtype](this.memory.buffer, b.offset, n);
  }

  private checkInputs(feeds: Record<string, Tensor>): void {
    const names = this.header.inputs.map((i) => i.name);
    for (const k of Object.keys(feeds)) {
      if (!names.includes(k)) throw new KilnError('E_INPUT', `unknown input '${k}'`, { hint: `the model's inputs are: ${names.join(', ') || '(none)'}` });
    }
    for (const inp of this.header.inputs) {
      const t = feeds[inp.name];
      if (!t) throw new KilnError('E_INPUT', `missing input '${inp.name}' (${inp.dtype}${formatShape(inp.shape)})`, { hint: `pass every input: ${names.join(', ')}` });
      if (t.dtype !== inp.dtype) throw new KilnError('E_INPUT', `input '${inp.name}' has dtype ${t.dtype}, the model expects ${inp.dtype}`, { hint: 'convert the data to the expected type' });
      if (t.shape.length !== inp.shape.length || t.shape.some((d, i) => d !== inp.shape[i])) {
        throw new KilnError('E_INPUT', `input '${inp.name}' has shape ${formatShape(t.shape)}, the model was compiled for ${formatShape(inp.shape)}`, { hint: 'reshape the data, or recompile with --input-shape for this shape' });
      }
      if (t.data.length !== sizeOf(inp.shape)) throw new KilnError('E_INPUT', `input '${inp.name}' holds ${t.data.length} values for shape ${formatShape(t.shape)}`);
    }
  }

  /** Runs the model; `timings`, when given, receives each kernel call's time. */
  run(feeds: Record<string, Tensor>, timings?: KernelTiming[]): Record<string, Tensor> {
    this.checkInputs(feeds);
    for (const inp of this.header.inputs) (this.view(inp, sizeOf(inp.shape)) as { set(a: ArrayLike<unknown>): void }).set(feeds[inp.name].data as ArrayLike<unknown>);
    const calls = this.header.calls;
    for (let i = 0; i < calls.length; i++) {
      const c = calls[i];
      if (timings) {
        const t0 = performance.now();
        this.fns[c.kernel](...c.args);
        timings.push({ kernel: c.kernel, call: i, ms: performance.now() - t0 });
      } else {
        this.fns[c.kernel](...c.args);
      }
    }
    const out: Record<string, Tensor> = {};
    for (const o of this.header.outputs) out[o.name] = this.read(o);
    return out;
  }

  private read(o: IOBinding): Tensor {
    const n = sizeOf(o.shape);
    const data = new ARRAY[o.dtype](n);
    new Uint8Array(data.buffer).set(new Uint8Array(this.memory.buffer, o.offset, n * BYTES[o.dtype]));
    return { dtype: o.dtype, shape: [...o.shape], data };
  }
}
