// Serializes a program into the artifact format that src/runtime/artifact.ts reads.
import { type ArtifactHeader, FORMAT_VERSION, MAGIC, PREFIX_BYTES } from '../runtime/artifact-format.js';
import { sha256 } from '../runtime/artifact.js';
import type { Program } from './program.js';
import { align } from './memory-plan.js';

export async function writeArtifact(p: Program): Promise<{ bytes: Uint8Array; header: ArtifactHeader }> {
  // section offsets depend on the header length, which depends on the offsets: iterate until stable
  let header: ArtifactHeader = { ...p.header, sections: { wasm: { offset: 0, length: p.wasm.length }, weights: { offset: 0, length: p.weights.length } } };
  let json = new TextEncoder().encode(JSON.stringify(header));
  for (let i = 0; i < 4; i++) {
    const wasmAt = align(PREFIX_BYTES + json.length);
    const weightsAt = align(wasmAt + p.wasm.length);
    header = { ...header, sections: { wasm: { offset: wasmAt, length: p.wasm.length }, weights: { offset: weightsAt, length: p.weights.length } } };
    const next = new TextEncoder().encode(JSON.stringify(header));
    if (next.length === json.length) { json = next; break; }
    json = next;
  }
  const { wasm, weights } = header.sections;
  const bytes = new Uint8Array(weights.offset + weights.length);
  bytes.set(MAGIC, 0);
  const dv = new DataView(bytes.buffer);
  dv.setUint32(4, FORMAT_VERSION, true);
  dv.setUint32(8, json.length, true);
  bytes.set(json, PREFIX_BYTES);
  bytes.set(p.wasm, wasm.offset);
  bytes.set(p.weights, weights.offset);
  bytes.set(await sha256(bytes.subarray(PREFIX_BYTES)), 16);
  return { bytes, header };
}
