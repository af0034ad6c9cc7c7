// Reading and checking an artifact. Any truncation or alteration is caught by the length checks and the
// SHA-256 over the body before anything is instantiated.
import { KilnError } from './errors.js';
import { type ArtifactHeader, FORMAT_VERSION, MAGIC, PREFIX_BYTES } from './artifact-format.js';

export interface ArtifactParts { header: ArtifactHeader; wasm: Uint8Array; weights: Uint8Array; wasmRelaxed?: Uint8Array }

const damaged = (what: string) => new KilnError('E_ARTIFACT', `artifact is damaged: ${what}`, { hint: 'recompile the model with kiln compile; do not edit or truncate .kiln files' });

export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
}

export async function readArtifact(artifact: Uint8Array): Promise<ArtifactParts> {
  // A plain Uint8Array view: Node's Buffer (what readFileSync returns) makes slice() a view, not a copy, and the
  // executors copy sections with slice().
  const bytes = new Uint8Array(artifact.buffer, artifact.byteOffset, artifact.byteLength);
  if (bytes.length < PREFIX_BYTES || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new KilnError('E_ARTIFACT', 'not a Kiln artifact (bad magic number)', { hint: 'pass a file written by kiln compile' });
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(4, true);
  if (version !== FORMAT_VERSION) {
    throw new KilnError('E_ARTIFACT', `artifact format version ${version}, this runtime reads version ${FORMAT_VERSION}`, { hint: 'recompile the model with the same Kiln version as the runtime' });
  }
  const headerLen = dv.getUint32(8, true);
  if (PREFIX_BYTES + headerLen > bytes.length) throw damaged('truncated header');
  const digest = await sha256(bytes.subarray(PREFIX_BYTES));
  const stored = bytes.subarray(16, 48);
  if (digest.some((b, i) => b !== stored[i])) throw damaged('checksum mismatch (truncated or altered)');
  let header: ArtifactHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLen)));
  } catch {
    throw damaged('header is not valid JSON');
  }
  const section = (s: { offset: number; length: number } | undefined, name: string) => {
    if (!s || s.offset + s.length > bytes.length) throw damaged(`${name} section out of bounds`);
    return bytes.subarray(s.offset, s.offset + s.length);
  };
  return {
    header,
    wasm: section(header.sections?.wasm, 'wasm'),
    weights: section(header.sections?.weights, 'weights'),
    wasmRelaxed: header.sections?.wasmRelaxed && section(header.sections.wasmRelaxed, 'wasmRelaxed'),
  };
}
