// The one walk over the loop IR that every backend's emitter extends (TVM's CodeGenC, tinygrad's renderers): the
// base dispatches statements and expressions to the target's hooks and keeps what every target shares, so a
// backend writes only its own syntax:
//  - loops with no iterations emit nothing; a reduction left after lowering, or a global allocation inside a
//    kernel, is an internal error;
//  - a select whose arms the target may not evaluate needlessly (common/pure.ts, TargetCaps.speculation) is
//    lowered by `selectByBranch` (only the chosen arm runs), any other by `select`;
//  - a value already computed in the statement being emitted is reused (`reuse` / `remember`: PTX keeps
//    registers, WGSL and WebAssembly the lets of a vector site).
// `V` is what an expression emits to (a binaryen expression, WGSL text, a PTX register); `S` what a statement emits
// to (a binaryen expression, or nothing where the emitter appends lines).
import type { DType } from '../../runtime/dtype.js';
import { KilnError } from '../../runtime/errors.js';
import type { BinOp, Expr, UnOp, Var } from '../../tensor-expr/expr.js';
import type {
  AllocStmt,
  AssignStmt,
  Buffer,
  DeclStmt,
  ForStmt,
  IfStmt,
  Stmt,
  StoreStmt,
} from '../../schedule/loop-ir.js';
import { isPure } from './pure.js';
import type { TargetCaps } from './target-caps.js';

export type SelectExpr = Extract<Expr, { k: 'select' }>;

export abstract class LoopEmitter<V, S> {
  /** The backend's name, in error messages. */
  protected abstract readonly backend: string;
  protected abstract readonly caps: Pick<TargetCaps, 'speculation'>;

  stmt(s: Stmt): S {
    switch (s.k) {
      case 'seq':
        return this.emitSeq(s.body);
      case 'for':
        return s.extent > 0 ? this.emitLoop(s) : this.emitNothing();
      case 'store':
        return this.emitStore(s);
      case 'if':
        return this.emitIf(s);
      case 'decl':
        return this.emitDecl(s);
      case 'assign':
        return this.emitAssign(s);
      case 'alloc':
        if (s.buf.scope === 'global')
          throw new KilnError('E_INTERNAL', `${this.backend}: global allocation ${s.buf.name} inside a kernel`);
        return this.emitAlloc(s);
      case 'barrier':
        return this.emitBarrier();
    }
  }

  expr(e: Expr): V {
    const reused = this.reuse(e);
    if (reused !== undefined) return reused;
    const v = this.exprNow(e);
    this.remember(e, v);
    return v;
  }

  private exprNow(e: Expr): V {
    switch (e.k) {
      case 'const':
        return this.constant(e.value, e.dtype);
      case 'var':
        return this.variable(e);
      case 'load':
        return this.load(e.buf as Buffer, e.idx[0]);
      case 'cast':
        return this.cast(this.expr(e.a), e.a.dtype, e.dtype);
      case 'select':
        return this.caps.speculation === 'any' || (isPure(e.a) && isPure(e.b))
          ? this.select(e)
          : this.selectByBranch(e);
      case 'un':
        return this.unary(e.op, e.a, e.dtype);
      case 'bin':
        return this.binary(e.op, e.a, e.b, e.dtype);
      case 'reduce':
        throw new KilnError('E_INTERNAL', `${this.backend}: reduction left in loop IR`);
    }
  }

  /** A value `e` already has in the statement being emitted, or undefined. */
  protected reuse(_e: Expr): V | undefined {
    return undefined;
  }
  /** Called with each value emitted (for `reuse`). */
  protected remember(_e: Expr, _v: V): void {}

  // statements
  protected abstract emitSeq(body: readonly Stmt[]): S;
  /** A loop of one or more iterations (serial, parallel, vectorized, unrolled; GPU-bound ones the launch binder replaced). */
  protected abstract emitLoop(s: ForStmt): S;
  protected abstract emitStore(s: StoreStmt): S;
  protected abstract emitIf(s: IfStmt): S;
  protected abstract emitDecl(s: DeclStmt): S;
  protected abstract emitAssign(s: AssignStmt): S;
  /** A local (registers) or shared (workgroup memory) buffer around its body. */
  protected abstract emitAlloc(s: AllocStmt): S;
  protected abstract emitBarrier(): S;
  protected abstract emitNothing(): S;

  // expressions
  protected abstract constant(value: number | bigint, t: DType): V;
  protected abstract variable(v: Var): V;
  protected abstract load(b: Buffer, index: Expr): V;
  /** `x` of dtype `from` as `to` (possibly equal). */
  protected abstract cast(x: V, from: DType, to: DType): V;
  /** Both arms evaluated, one chosen. */
  protected abstract select(e: SelectExpr): V;
  /** Only the chosen arm evaluated. */
  protected abstract selectByBranch(e: SelectExpr): V;
  protected abstract unary(op: UnOp, a: Expr, t: DType): V;
  protected abstract binary(op: BinOp, a: Expr, b: Expr, t: DType): V;
}
