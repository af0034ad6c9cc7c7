// Builders of small loop-IR kernels for the pass tests (Before -> Expected on printed IR).
import { type Expr, type Var, freshVar } from '../../src/tensor-expr/expr.js';
import type { Buffer, ForKind, PrimFunc, Stmt } from '../../src/schedule/loop-ir.js';

/** A variable with a fixed name, so printed IR can be written out in the test. */
export const named = (name: string, dtype: Var['dtype'] = 'int32'): Var => ({ ...freshVar(name, dtype), name });
export const loop = (v: Var, extent: number, body: Stmt, kind: ForKind = 'serial'): Stmt => ({
  k: 'for',
  v,
  extent,
  kind,
  body,
});
export const store = (buf: Buffer, index: Expr, value: Expr): Stmt => ({ k: 'store', buf, index, value });
/** A kernel named `k`. */
export const func = (body: Stmt, inputs: Buffer[], outputs: Buffer[], temps: Buffer[] = []): PrimFunc => ({
  name: 'k',
  inputs,
  outputs,
  temps,
  body,
});
/** An expected printed kernel written in a template literal: trimmed, one final newline (as printPrimFunc ends). */
export const text = (s: string) => `${s.trim()}\n`;
