// Binding subexpressions to scalar `let`s (a `decl` never assigned) right before the statement that uses them: the
// utility the shared lowering's passes use when they need a value several times (floor division needs its dividend
// twice, tanh its argument four times) and what common subexpression elimination (cse.ts) binds.
//
// What may move: a statement's own expressions are evaluated unconditionally (store index and value, if condition,
// decl init, assign value) except the arms of a `select`, which backends may evaluate only when chosen (PTX
// branches around arms that load: an index may be out of bounds when the condition is false). So a value met
// inside a select arm is bound only when the target may evaluate it needlessly (common/pure.ts); otherwise it stays
// inline where it is. A statement directly inside a 'vectorized' loop is left whole (the backends turn such a loop
// around one store into one vector store): expansions there stay inline too.
import type { DType } from '../../runtime/dtype.js';
import { type Expr, type Var, mapExpr, visitExpr } from '../../tensor-expr/expr.js';
import { type Interval, type Ranges, bound as boundOf } from '../../tensor-expr/simplify.js';
import {
  type PrimFunc,
  type Stmt,
  mapChildren,
  mapOwnParts,
  visitStmt,
  visitStmtExprs,
} from '../../schedule/loop-ir.js';
import { canSpeculate } from './pure.js';
import type { Speculation } from './target-caps.js';

/** What an expression rewrite sees at the node it rewrites. */
export interface BindContext {
  /**
   * `e` bound to a `let` before the statement (the same variable for the same node, or for the same `key`), or `e`
   * itself when it is a variable or constant already, or when it sits in a select arm and the target may not
   * evaluate it unconditionally.
   */
  bind(e: Expr, hint?: string, key?: unknown): Expr;
  /** The statement whose expressions are rewritten. */
  readonly stmt: Stmt;
  /** Whether the node lies in a select arm (evaluated only when chosen). */
  readonly guarded: boolean;
  /** Ranges of the loop variables in scope (and of the lets bound so far). */
  readonly ranges: Ranges;
}

/**
 * A bottom-up rewrite: called on each node after its children (`before`: the node as it was, children not yet
 * rewritten, e.g. for interval reasoning on the original operators); undefined keeps the node.
 */
export type BindingRewrite = (e: Expr, ctx: BindContext, before: Expr) => Expr | undefined;

/** Names given to new variables of a kernel: `${hint}_${n}`, none equal to a name the kernel already uses. */
export class VarNamer {
  private readonly taken = new Set<string>();
  private n = 0;
  constructor(f: PrimFunc) {
    visitStmt(f.body, (s) => {
      if (s.k === 'for' || s.k === 'decl') this.taken.add(s.v.name);
    });
    visitStmtExprs(f.body, (e) =>
      visitExpr(e, (x) => {
        if (x.k === 'var') this.taken.add(x.name);
      }),
    );
  }
  fresh(hint: string, dtype: DType): Var {
    let name: string;
    do name = `${hint}_${this.n++}`;
    while (this.taken.has(name));
    this.taken.add(name);
    return { k: 'var', name, dtype };
  }
}

/** `e` rewritten bottom-up by `f`, knowing which nodes lie in select arms. */
function mapGuarded(e: Expr, guarded: boolean, f: (e: Expr, guarded: boolean, before: Expr) => Expr | undefined): Expr {
  let y: Expr;
  switch (e.k) {
    case 'select': {
      const c = mapGuarded(e.c, guarded, f),
        a = mapGuarded(e.a, true, f),
        b = mapGuarded(e.b, true, f);
      y = c === e.c && a === e.a && b === e.b ? e : { ...e, c, a, b };
      break;
    }
    case 'bin': {
      const a = mapGuarded(e.a, guarded, f),
        b = mapGuarded(e.b, guarded, f);
      y = a === e.a && b === e.b ? e : { ...e, a, b };
      break;
    }
    case 'un':
    case 'cast': {
      const a = mapGuarded(e.a, guarded, f);
      y = a === e.a ? e : { ...e, a };
      break;
    }
    case 'load': {
      const idx = e.idx.map((i) => mapGuarded(i, guarded, f));
      y = idx.every((v, i) => v === e.idx[i]) ? e : { ...e, idx };
      break;
    }
    default:
      y = e;
  }
  return f(y, guarded, e) ?? y;
}

export interface BindOptions {
  /** Name prefix of the lets (`${hint}_${n}`). */
  readonly hint?: string;
  /** What the target may evaluate needlessly (TargetCaps.speculation); 'pure' when absent. */
  readonly speculation?: Speculation;
}

/**
 * Rewrites every expression of `f` with `rewrite`, which may bind values to lets placed right before the statement
 * that uses them (see the file comment for what may move).
 */
export function rewriteWithLets(f: PrimFunc, rewrite: BindingRewrite, opts: BindOptions = {}): PrimFunc {
  const hint = opts.hint ?? 't',
    caps = { speculation: opts.speculation ?? 'pure' };
  const namer = new VarNamer(f);
  const stmt = (s: Stmt, ranges: Map<Var, Interval>, pinned: boolean): Stmt => {
    if (s.k === 'for') {
      const inner = new Map(ranges);
      inner.set(s.v, { lo: 0, hi: Math.max(0, s.extent - 1) });
      const keep = s.kind === 'vectorized';
      return mapChildren(s, (c) => stmt(c, inner, keep));
    }
    if (s.k === 'seq' || s.k === 'alloc' || s.k === 'barrier') return mapChildren(s, (c) => stmt(c, ranges, false));
    // a statement with expressions of its own (store, if, decl, assign)
    const lets: { v: Var; init: Expr }[] = [];
    const bound = new Map<unknown, Var>();
    const letRanges = new Map(ranges);
    const ctxOf = (guarded: boolean): BindContext => ({
      guarded,
      ranges: letRanges,
      stmt: s,
      bind: (e, h = hint, key = e) => {
        if (e.k === 'var' || e.k === 'const') return e;
        const had = bound.get(key);
        if (had) return had;
        if (pinned || (guarded && !canSpeculate(e, caps))) return e;
        const v = namer.fresh(h, e.dtype);
        lets.push({ v, init: e });
        bound.set(key, v);
        const r = boundOf(e, letRanges);
        if (r) letRanges.set(v, r);
        return v;
      },
    });
    const ctx = [ctxOf(false), ctxOf(true)];
    const own = mapOwnParts(s, { expr: (e) => mapGuarded(e, false, (x, g, was) => rewrite(x, ctx[g ? 1 : 0], was)) });
    // the nested statements: an if's branches, a decl's body (which sees the decl's variable and the lets)
    const body = mapChildren(own, (c) => stmt(c, ranges, pinned && s.k === 'if'));
    if (!lets.length) return body;
    // a node bound once is read from its let wherever else it occurs (earlier lets in later inits, all in the statement)
    const replaceIn = (e: Expr, upTo: number) =>
      mapExpr(e, (x) => {
        const v = bound.get(x);
        return v && lets.findIndex((l) => l.v === v) < upTo ? v : undefined;
      });
    const withVars = mapOwnParts(body, { expr: (e) => replaceIn(e, lets.length) });
    return lets.reduceRight<Stmt>(
      (acc, l, i) => ({ k: 'decl', v: l.v, init: replaceIn(l.init, i), body: acc }),
      withVars,
    );
  };
  return { ...f, body: stmt(f.body, new Map(), false) };
}
