// The measurement target: its key names what changes generated code or its speed (engine kind, CPU
// architecture, WebAssembly features: SIMD128, relaxed SIMD, threads), never host names or paths.
import os from 'node:os';

export interface TargetInfo {
  key: string;
  kind: 'wasm';
  arch: string;
  features: string[];
  /** Informational only (not in the key): engine and CPU. */
  engine: string;
  cpu: string;
}

const SIMD = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11];
const RELAXED_SIMD = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2, 253, 15, 253, 128, 2, 11];

function validates(bytes: number[]): boolean {
  try { return WebAssembly.validate(new Uint8Array(bytes)); } catch { return false; }
}

function threads(): boolean {
  try {
    if (typeof SharedArrayBuffer === 'undefined') return false;
    return new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
  } catch { return false; }
}

export function wasmFeatures(): string[] {
  const f: string[] = [];
  if (validates(SIMD)) f.push('simd128');
  if (validates(RELAXED_SIMD)) f.push('relaxed-simd');
  if (threads()) f.push('threads');
  return f;
}

export function detectTarget(): TargetInfo {
  const features = wasmFeatures();
  const arch = process.arch;
  return {
    key: targetKey('wasm', arch, features),
    kind: 'wasm', arch, features,
    engine: `node ${process.versions.node} (v8 ${process.versions.v8})`,
    cpu: os.cpus()[0]?.model?.trim() ?? 'unknown',
  };
}

export const targetKey = (kind: string, arch: string, features: readonly string[]) => `${kind}/${arch}/${[...features].sort().join('+') || 'none'}`;
