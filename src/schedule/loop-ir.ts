// The loop IR: imperative loop nests over flat buffers. It already carries what GPU backends need
// (loops bound to workgroup/thread ids, shared-memory buffers, barriers) though only the CPU path uses it now.
import type { DType } from '../runtime/dtype.js';
import { type Buf, type Expr, type Var, printExpr } from '../tensor-expr/expr.js';

export type Scope = 'global' | 'shared' | 'local';

/** A flat buffer: shape is [size]; loads and stores use one index. */
export interface Buffer extends Buf {
  readonly scope: Scope;
  readonly size: number;
}

export type ThreadTag = 'blockIdx.x' | 'blockIdx.y' | 'blockIdx.z' | 'threadIdx.x' | 'threadIdx.y' | 'threadIdx.z';
export type ForKind = 'serial' | 'parallel' | 'vectorized' | 'unrolled' | ThreadTag;

export type Stmt =
  | { readonly k: 'for'; readonly v: Var; readonly extent: number; readonly kind: ForKind; readonly body: Stmt }
  | { readonly k: 'seq'; readonly body: readonly Stmt[] }
  | { readonly k: 'store'; readonly buf: Buffer; readonly index: Expr; readonly value: Expr }
  | { readonly k: 'if'; readonly cond: Expr; readonly then: Stmt; readonly else?: Stmt }
  /** A mutable scalar local (accumulators). */
  | { readonly k: 'decl'; readonly v: Var; readonly init: Expr; readonly body: Stmt }
  | { readonly k: 'assign'; readonly v: Var; readonly value: Expr }
  | { readonly k: 'alloc'; readonly buf: Buffer; readonly body: Stmt }
  | { readonly k: 'barrier' };

/** A kernel: parameters are flat buffers (inputs first, then outputs); global temporaries come from a scratch area. */
export interface PrimFunc {
  readonly name: string;
  readonly inputs: readonly Buffer[];
  readonly outputs: readonly Buffer[];
  /** Global-scope temporaries, laid out in one scratch region the caller provides. */
  readonly temps: readonly Buffer[];
  readonly body: Stmt;
}

export const buffer = (name: string, dtype: DType, size: number, scope: Scope = 'global'): Buffer =>
  ({ name, dtype, shape: [size], size, scope });

export function seq(body: Stmt[]): Stmt {
  const flat = body.flatMap((s) => (s.k === 'seq' ? s.body : [s]));
  return flat.length === 1 ? flat[0] : { k: 'seq', body: flat };
}

export function printStmt(s: Stmt, indent = ''): string {
  const i2 = indent + '  ';
  switch (s.k) {
    case 'for': return `${indent}for ${s.v.name} in 0..${s.extent}${s.kind === 'serial' ? '' : ` (${s.kind})`} {\n${printStmt(s.body, i2)}${indent}}\n`;
    case 'seq': return s.body.map((b) => printStmt(b, indent)).join('');
    case 'store': return `${indent}${s.buf.name}[${printExpr(s.index)}] = ${printExpr(s.value)}\n`;
    case 'if': return `${indent}if ${printExpr(s.cond)} {\n${printStmt(s.then, i2)}${indent}}${s.else ? ` else {\n${printStmt(s.else, i2)}${indent}}` : ''}\n`;
    case 'decl': return `${indent}let ${s.v.name}: ${s.v.dtype} = ${printExpr(s.init)}\n${printStmt(s.body, indent)}`;
    case 'assign': return `${indent}${s.v.name} = ${printExpr(s.value)}\n`;
    case 'alloc': return `${indent}alloc ${s.buf.name}: ${s.buf.dtype}[${s.buf.size}] (${s.buf.scope})\n${printStmt(s.body, indent)}`;
    case 'barrier': return `${indent}barrier()\n`;
  }
}

export function printPrimFunc(f: PrimFunc): string {
  const sig = (b: Buffer) => `${b.name}: ${b.dtype}[${b.size}]`;
  return `kernel ${f.name}(${[...f.inputs, ...f.outputs].map(sig).join(', ')})` +
    (f.temps.length ? ` temps(${f.temps.map(sig).join(', ')})` : '') + ` {\n${printStmt(f.body, '  ')}}\n`;
}

export function visitStmt(s: Stmt, f: (s: Stmt) => void): void {
  f(s);
  switch (s.k) {
    case 'for': case 'decl': case 'alloc': visitStmt(s.body, f); break;
    case 'seq': s.body.forEach((b) => visitStmt(b, f)); break;
    case 'if': visitStmt(s.then, f); if (s.else) visitStmt(s.else, f); break;
    default: break;
  }
}
