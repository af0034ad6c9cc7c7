// Binding subexpressions to scalar `let`s (a `decl` never assigned) right before the statement that uses them: the
// utility the shared lowering's expansions use when they need a value several times (floor division needs its
// dividend twice, tanh its argument four times), so the expansion neither recomputes it nor repeats its loads.
//
// What may move: a statement's own expressions are evaluated unconditionally (store index and value, if condition,
// decl init, assign value) except the arms of a `select`, which backends may evaluate only when chosen (PTX
// branches around arms that load: an index may be out of bounds when the condition is false). So a value met
// inside a select arm is bound only when it is safe to evaluate unconditionally (isSafeToHoist); otherwise the
// expansion keeps it inline (several uses of one node, which the emitters evaluate once per statement). A
// statement directly inside a 'vectorized' loop is left whole (the backends turn such a loop around one store
// into one vector store): expansions there stay inline too.
import type { DType } from '../../runtime/dtype.js';
import { isFloat } from '../../runtime/dtype.js';
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

/** What an expression rewrite sees at the node it rewrites. */
export interface BindContext {
  /**
   * `e` bound to a `let` before the statement (the same variable for the same node), or `e` itself when it is a
   * variable or constant already, or when it sits in a select arm and is not safe to evaluate unconditionally.
   */
  bind(e: Expr, hint?: string): Expr;
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

/**
 * Whether evaluating `e` where it was not meant to be evaluated is harmless: no memory read, no integer division
 * by a value that may be zero, nothing expensive (pow).
 */
export function isSafeToHoist(e: Expr): boolean {
  let safe = true;
  visitExpr(e, (x) => {
    if (x.k === 'load' || x.k === 'reduce') safe = false;
    else if (x.k === 'bin') {
      if (x.op === 'pow') safe = false;
      const division = x.op === 'div' || x.op === 'mod' || x.op === 'floordiv' || x.op === 'floormod';
      if (division && !isFloat(x.dtype) && !(x.b.k === 'const' && x.b.value !== 0 && x.b.value !== 0n)) safe = false;
    }
  });
  return safe;
}

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

/**
 * Rewrites every expression of `f` with `rewrite`, which may bind values to lets placed right before the statement
 * that uses them (see the file comment for what may move).
 */
export function rewriteWithLets(f: PrimFunc, rewrite: BindingRewrite, hint = 't'): PrimFunc {
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
    const bound = new Map<Expr, Var>();
    const letRanges = new Map(ranges);
    const ctxOf = (guarded: boolean): BindContext => ({
      guarded,
      ranges: letRanges,
      bind: (e, h = hint) => {
        if (e.k === 'var' || e.k === 'const') return e;
        const had = bound.get(e);
        if (had) return had;
        if (pinned || (guarded && !isSafeToHoist(e))) return e;
        const v = namer.fresh(h, e.dtype);
        lets.push({ v, init: e });
        bound.set(e, v);
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
