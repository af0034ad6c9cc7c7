// Serializes a program into the artifact format that src/runtime/artifact.ts reads.
import { type ArtifactHeader, FORMAT_VERSION, MAGIC, PREFIX_BYTES } from '../runtime/artifact-format.js';
import { sha256 } from '../runtime/artifact.js';
import type { Program } from './program.js';
import { align } from './memory-plan.js';

export async function writeArtifact(p: Program): Promise<{ bytes: Uint8Array; header: ArtifactHeader }> {
  // section offsets depend on the header length, which depends on the offsets: iterate until stable
  const relaxed = p.wasmRelaxed ?? new Uint8Array(0);
  const native = p.native ?? new Uint8Array(0);
  const layout = (start: number): ArtifactHeader['sections'] => {
    const wasmAt = align(start),
      relaxedAt = align(wasmAt + p.wasm.length),
      nativeAt = align(relaxedAt + relaxed.length),
      weightsAt = align(nativeAt + native.length);
    return {
      wasm: { offset: wasmAt, length: p.wasm.length },
      ...(p.wasmRelaxed ? { wasmRelaxed: { offset: relaxedAt, length: relaxed.length } } : {}),
      ...(p.native ? { native: { offset: nativeAt, length: native.length } } : {}),
      weights: { offset: weightsAt, length: p.weights.length },
    };
  };
  let header: ArtifactHeader = { ...p.header, sections: layout(0) };
  let json = new TextEncoder().encode(JSON.stringify(header));
  for (let i = 0; i < 4; i++) {
    header = { ...header, sections: layout(PREFIX_BYTES + json.length) };
    const next = new TextEncoder().encode(JSON.stringify(header));
    if (next.length === json.length) {
      json = next;
      break;
    }
    json = next;
  }
  const { wasm, weights, wasmRelaxed, native: nativeSection } = header.sections;
  const bytes = new Uint8Array(weights.offset + weights.length);
  bytes.set(MAGIC, 0);
  const dv = new DataView(bytes.buffer);
  dv.setUint32(4, FORMAT_VERSION, true);
  dv.setUint32(8, json.length, true);
  bytes.set(json, PREFIX_BYTES);
  bytes.set(p.wasm, wasm.offset);
  if (wasmRelaxed) bytes.set(relaxed, wasmRelaxed.offset);
  if (nativeSection) bytes.set(native, nativeSection.offset);
  bytes.set(p.weights, weights.offset);
  bytes.set(await sha256(bytes.subarray(PREFIX_BYTES)), 16);
  return { bytes, header };
}
