// The messages between a supervised model (supervisor.ts, on the caller's thread) and the worker that hosts it
// (model-host.ts). The worker entries (src/node/wasm-worker.ts, wasm-worker-web.ts) also start thread-pool workers:
// the first message tells which of the two a worker is.
import { KilnError, type KilnErrorCode } from './errors.js';
import type { ArtifactHeader } from './artifact-format.js';
import type { Tensor } from './tensor.js';

/** First message to a hosting worker: load this artifact (the worker owns the bytes: they are transferred). */
export interface HostInit {
  kiln: 'host';
  artifact: Uint8Array;
  threads: number;
  simd?: 'auto' | 'relaxed' | 'baseline';
  minParallelWork?: number;
  /** Run the artifact's native code (target 'native'), or its WebAssembly where that cannot run here. */
  native?: boolean;
}
export type HostRequest = { kiln: 'run'; feeds: Record<string, Tensor> };
export type HostReply =
  | {
      kiln: 'loaded';
      header: ArtifactHeader;
      threads: number;
      simd?: 'relaxed' | 'baseline';
      /** For init.native: what runs, and why not the native code when it is 'wasm'. */
      runsOn?: 'native' | 'wasm';
      nativeFallback?: string;
    }
  | { kiln: 'result'; outputs: Record<string, Tensor> }
  | { kiln: 'error'; error: WireError };

export const isHostInit = (m: unknown): m is HostInit =>
  typeof m === 'object' && m !== null && (m as { kiln?: unknown }).kiln === 'host';

/** A KilnError as it crosses a worker boundary (structured clone keeps neither its class nor its fields). */
export interface WireError {
  code: KilnErrorCode;
  detail: string;
  hint?: string;
  node?: string;
  op?: string;
  opset?: number;
}

export function toWire(e: unknown): WireError {
  if (e instanceof KilnError)
    return { code: e.code, detail: e.detail, hint: e.hint, node: e.node, op: e.op, opset: e.opset };
  const msg = (e as Error)?.message ?? String(e);
  return { code: 'E_INTERNAL', detail: `the model's worker failed: ${msg}`, hint: 'please report this with the model' };
}

/** The same KilnError again, message and all, on this side. */
export function fromWire(w: WireError): KilnError {
  const e = new KilnError(w.code, w.detail, { hint: w.hint, node: w.node, op: w.op, opset: w.opset });
  e.stack = `KilnError: ${e.message}`;
  return e;
}
