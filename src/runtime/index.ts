// The Kiln runtime: loads an artifact and runs it. It imports nothing from the compiler, so it can ship alone
// to a browser.
import { readArtifact } from './artifact.js';
import type { ArtifactHeader, IOBinding } from './artifact-format.js';
import { KilnError } from './errors.js';
import { WasmExecutor, type KernelTiming } from './executor.js';
import type { Tensor } from './tensor.js';

export { KilnError } from './errors.js';
export type { Tensor } from './tensor.js';
export type { DType } from './dtype.js';
export type { ArtifactHeader, KernelTiming };

export interface LoadOptions { target?: 'wasm' }

export interface LoadedModel {
  readonly inputs: readonly IOBinding[];
  readonly outputs: readonly IOBinding[];
  readonly header: ArtifactHeader;
  run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  /** Synchronous run on the WebAssembly target, optionally recording per-kernel times. */
  runSync(feeds: Record<string, Tensor>, timings?: KernelTiming[]): Record<string, Tensor>;
}

export async function load(artifact: Uint8Array, opts: LoadOptions = {}): Promise<LoadedModel> {
  const target = opts.target ?? 'wasm';
  if (target !== 'wasm') throw new KilnError('E_INPUT', `target '${target}' is not available in this runtime`, { hint: "use target 'wasm'" });
  const parts = await readArtifact(artifact);
  return fromParts(parts.header, await WasmExecutor.create(parts));
}

export function fromParts(header: ArtifactHeader, ex: WasmExecutor): LoadedModel {
  return {
    inputs: header.inputs,
    outputs: header.outputs,
    header,
    run: async (feeds) => ex.run(feeds),
    runSync: (feeds, timings) => ex.run(feeds, timings),
  };
}
