// Damaged artifacts for tests: reassembled from a header and sections (any header field editable, checksum
// recomputed) and kernels whose bodies are replaced (a loop that never ends, a trap).
import binaryen from 'binaryen';
import { type readArtifact, sha256 } from '../../src/runtime/artifact.js';
import { PREFIX_BYTES, type ArtifactHeader } from '../../src/runtime/artifact-format.js';

export type ArtifactParts = Awaited<ReturnType<typeof readArtifact>>;

const align = (n: number) => Math.ceil(n / 16) * 16;

/**
 * An artifact from a header and sections, as the writer lays it out but with room after the header, so that
 * `edit` may change any field (section offsets included) after the layout; the checksum is recomputed.
 */
export async function assemble(
  header: ArtifactHeader,
  parts: { wasm: Uint8Array; weights: Uint8Array; wasmRelaxed?: Uint8Array },
  edit?: (h: ArtifactHeader) => void,
): Promise<Uint8Array> {
  const h = structuredClone(header);
  const start = align(PREFIX_BYTES + new TextEncoder().encode(JSON.stringify(h)).length + 1024);
  const wasmAt = start,
    relaxedAt = align(wasmAt + parts.wasm.length),
    weightsAt = align(relaxedAt + (parts.wasmRelaxed?.length ?? 0));
  h.sections = {
    wasm: { offset: wasmAt, length: parts.wasm.length },
    ...(parts.wasmRelaxed ? { wasmRelaxed: { offset: relaxedAt, length: parts.wasmRelaxed.length } } : {}),
    weights: { offset: weightsAt, length: parts.weights.length },
  };
  edit?.(h);
  const json = new TextEncoder().encode(JSON.stringify(h));
  if (PREFIX_BYTES + json.length > start) throw new Error('test helper: the edited header does not fit');
  const bytes = new Uint8Array(weightsAt + parts.weights.length);
  bytes.set([0x4b, 0x49, 0x4c, 0x4e], 0);
  const dv = new DataView(bytes.buffer);
  dv.setUint32(4, 1, true);
  dv.setUint32(8, json.length, true);
  bytes.set(json, PREFIX_BYTES);
  bytes.set(parts.wasm, wasmAt);
  if (parts.wasmRelaxed) bytes.set(parts.wasmRelaxed, relaxedAt);
  bytes.set(parts.weights, weightsAt);
  bytes.set(await sha256(bytes.subarray(PREFIX_BYTES)), 16);
  return bytes;
}

/** The module with every kernel's body replaced by `body` (built in the module, e.g. a loop that never ends). */
export function replaceKernelBodies(
  wasm: Uint8Array,
  kernels: string[],
  body: (m: binaryen.Module) => binaryen.ExpressionRef,
): Uint8Array {
  const m = binaryen.readBinary(wasm);
  m.setFeatures(binaryen.Features.All);
  for (const name of kernels) {
    const internal = binaryen.getExportInfo(m.getExport(name)).value;
    const info = binaryen.getFunctionInfo(m.getFunction(internal));
    m.removeFunction(internal);
    m.addFunction(internal, info.params, info.results, info.vars, body(m));
  }
  if (!m.validate()) throw new Error('test helper: the rewritten module does not validate');
  const out = m.emitBinary();
  m.dispose();
  return out;
}

/** `loop $l (br $l)`: a kernel that never returns. */
export const endlessKernels = (wasm: Uint8Array, kernels: string[]) =>
  replaceKernelBodies(wasm, kernels, (m) => m.loop('forever', m.br('forever')));
/** `unreachable`: a kernel that traps. */
export const trappingKernels = (wasm: Uint8Array, kernels: string[]) =>
  replaceKernelBodies(wasm, kernels, (m) => m.unreachable());

/** The artifact with every kernel's body replaced by `body`, in both the baseline and the relaxed-SIMD module. */
export async function withKernelBodies(
  parts: ArtifactParts,
  rewrite: (wasm: Uint8Array, kernels: string[]) => Uint8Array,
): Promise<Uint8Array> {
  const kernels = parts.header.kernels.map((k) => k.name);
  return assemble(parts.header, {
    wasm: rewrite(parts.wasm, kernels),
    weights: parts.weights,
    wasmRelaxed: parts.wasmRelaxed && rewrite(parts.wasmRelaxed, kernels),
  });
}
