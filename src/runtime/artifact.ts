// Reading and checking an artifact. Any truncation or alteration is caught by the length checks and the
// SHA-256 over the body before anything is instantiated; a header that passes the checksum is then checked field
// by field (header-check.ts), so that an edited-and-rehashed file fails here, naming the field.
import { KilnError } from './errors.js';
import { type ArtifactHeader, FORMAT_VERSION, MAGIC, PREFIX_BYTES } from './artifact-format.js';
import { checkHeader, damaged } from './header-check.js';
import { isView } from './dtype.js';

export interface ArtifactParts {
  header: ArtifactHeader;
  wasm: Uint8Array;
  weights: Uint8Array;
  wasmRelaxed?: Uint8Array;
  /** The native shared library (target 'native'). */
  native?: Uint8Array;
}

export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
}

/** The argument of load() is bytes (a Uint8Array or Node Buffer), or E_INPUT. */
export function checkArtifactBytes(artifact: unknown): asserts artifact is Uint8Array {
  if (!isView(artifact) || (artifact as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT !== 1) {
    throw new KilnError(
      'E_INPUT',
      `the artifact is ${artifact === null ? 'null' : typeof artifact === 'object' ? 'not a byte array' : typeof artifact}, not the bytes of a .kiln file`,
      { hint: 'pass a Uint8Array, e.g. readFileSync(path) or new Uint8Array(await (await fetch(url)).arrayBuffer())' },
    );
  }
}

export async function readArtifact(artifact: Uint8Array): Promise<ArtifactParts> {
  checkArtifactBytes(artifact);
  // A plain Uint8Array view: Node's Buffer (what readFileSync returns) makes slice() a view, not a copy, and the
  // executors copy sections with slice().
  const bytes = new Uint8Array(artifact.buffer, artifact.byteOffset, artifact.byteLength);
  if (bytes.length < PREFIX_BYTES || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new KilnError('E_ARTIFACT', 'not a Kiln artifact (bad magic number)', {
      hint: 'pass a file written by kiln compile',
    });
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(4, true);
  if (version !== FORMAT_VERSION) {
    throw new KilnError(
      'E_ARTIFACT',
      `artifact format version ${version}, this runtime reads version ${FORMAT_VERSION}`,
      { hint: 'recompile the model with the same Kiln version as the runtime' },
    );
  }
  const headerLen = dv.getUint32(8, true);
  if (PREFIX_BYTES + headerLen > bytes.length) throw damaged('truncated header');
  const digest = await sha256(bytes.subarray(PREFIX_BYTES));
  const stored = bytes.subarray(16, 48);
  if (digest.some((b, i) => b !== stored[i])) throw damaged('checksum mismatch (truncated or altered)');
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLen)),
    );
  } catch {
    throw damaged('header is not valid JSON');
  }
  checkHeader(header, PREFIX_BYTES + headerLen, bytes.length);
  const { sections } = header;
  const section = (s: { offset: number; length: number }) => bytes.subarray(s.offset, s.offset + s.length);
  return {
    header,
    wasm: section(sections.wasm),
    weights: section(sections.weights),
    wasmRelaxed: sections.wasmRelaxed && section(sections.wasmRelaxed),
    native: sections.native && section(sections.native),
  };
}
