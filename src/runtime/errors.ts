// One error class for all of Kiln. `code` is stable (tests and users match on it); `hint` says what to do.
export type KilnErrorCode =
  | 'E_MODEL_DECODE' // the .onnx bytes are not a valid ModelProto
  | 'E_MODEL_INVALID' // decoded, but inconsistent (dangling names, missing shapes, bad external data)
  | 'E_UNSUPPORTED_OP' // no converter for this op / domain
  | 'E_UNSUPPORTED_OPSET' // op exists but not at this opset
  | 'E_UNSUPPORTED' // a feature of an op or dtype Kiln does not handle
  | 'E_SHAPE' // shapes do not agree (compile time)
  | 'E_DYNAMIC' // a value that must be known at compile time is not
  | 'E_ARTIFACT' // artifact bytes truncated, altered or of another version
  | 'E_INPUT' // wrong input name / shape / dtype at run time
  | 'E_IO' // reading or writing a file failed
  | 'E_TUNING_DB' // the tuning database cannot be opened, is corrupt, or of a newer schema
  | 'E_NO_DEVICE' // the target's device or driver is absent (no libcuda, no CUDA GPU)
  | 'E_RESOURCES' // a GPU kernel needs more registers, shared memory or threads than a block may have
  | 'E_TIMEOUT' // a run or load took longer than its timeoutMs; the worker running it was stopped
  | 'E_DEPENDENCY' // an optional package this feature needs is not installed (the hint names it)
  | 'E_USAGE' // a command line that kiln cannot parse (unknown flag, missing argument)
  | 'E_NOT_FOUND' // kiln serve: no model or route by that name
  | 'E_TOO_LARGE' // kiln serve: a request body or uploaded file beyond the configured limit
  | 'E_UNAVAILABLE' // kiln serve: the model's queue is full or the server is shutting down; retry later
  | 'E_INTERNAL'; // a bug in Kiln: please report

export interface KilnErrorContext {
  node?: string;
  op?: string;
  opset?: number;
  hint?: string;
}

export class KilnError extends Error {
  readonly code: KilnErrorCode;
  readonly node?: string;
  readonly op?: string;
  readonly opset?: number;
  readonly hint?: string;
  /** The message alone, without the code, the node context and the hint that `message` adds. */
  readonly detail: string;

  constructor(code: KilnErrorCode, message: string, ctx: KilnErrorContext = {}) {
    const where = [
      ctx.op && `op ${ctx.op}`,
      ctx.opset !== undefined && `opset ${ctx.opset}`,
      ctx.node && `node '${ctx.node}'`,
    ]
      .filter(Boolean)
      .join(', ');
    super(`[${code}] ${message}${where ? ` (${where})` : ''}${ctx.hint ? `. ${ctx.hint}` : ''}`);
    this.name = 'KilnError';
    this.code = code;
    this.node = ctx.node;
    this.op = ctx.op;
    this.opset = ctx.opset;
    this.hint = ctx.hint;
    this.detail = message;
  }
}

/** Adds node/op/opset context to an error thrown while handling one node, keeping its code. */
export function withNodeContext<T>(ctx: KilnErrorContext, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof KilnError) {
      if (e.node !== undefined) throw e;
      throw new KilnError(e.code, e.detail, { ...ctx, hint: e.hint });
    }
    const msg = e instanceof Error ? e.message : String(e);
    throw new KilnError('E_INTERNAL', `internal error: ${msg}`, { ...ctx, hint: 'please report this with the model' });
  }
}
