// Common subexpression elimination to lets. Operator definitions inline their producers, so one statement can hold
// the same subexpression many times (a Resize with antialias printed 2.5 MB of WGSL on one line before); a
// subexpression of at least `minSize` nodes that occurs under two or more parents in a statement is computed once,
// into a let before the statement (common/bind.ts decides what may move out of a select arm). Equal means equal
// in structure: same operators, dtypes, constants, variables and buffers (ExprIds, hash-consing).
import type { Expr } from '../../tensor-expr/expr.js';
import { type Stmt, ownExprs } from '../../schedule/loop-ir.js';
import type { LoopPass } from '../../schedule/loop-passes.js';
import { rewriteWithLets } from './bind.js';
import type { TargetCaps } from './target-caps.js';

/** Expanded node count from which a repeated subexpression gets its own let. */
export const CSE_MIN_SIZE = 8;

function kidsOf(e: Expr): readonly Expr[] {
  switch (e.k) {
    case 'load':
      return e.idx;
    case 'bin':
      return [e.a, e.b];
    case 'un':
    case 'cast':
      return [e.a];
    case 'select':
      return [e.c, e.a, e.b];
    default:
      return [];
  }
}

/** Structural ids of expressions: equal ids, equal expressions. */
export class ExprIds {
  private readonly ids = new Map<Expr, number>();
  private readonly interned = new Map<string, number>();
  private readonly objIds = new Map<object, number>();
  private readonly sizes: number[] = [];

  id(e: Expr): number {
    let id = this.ids.get(e);
    if (id !== undefined) return id;
    let key: string;
    switch (e.k) {
      case 'const':
        key = `c${e.dtype}:${Object.is(e.value, -0) ? '-0' : String(e.value)}`;
        break;
      case 'var':
        key = `v${this.obj(e)}`;
        break;
      case 'load':
        key = `l${this.obj(e.buf)}`;
        break;
      case 'bin':
        key = `b${e.op}:${e.dtype}`;
        break;
      case 'un':
        key = `u${e.op}:${e.dtype}`;
        break;
      case 'select':
        key = `s${e.dtype}`;
        break;
      case 'cast':
        key = `t${e.dtype}`;
        break;
      case 'reduce':
        key = `r${this.obj(e)}`;
        break;
    }
    const kids = kidsOf(e).map((k) => this.id(k));
    key += `(${kids.join(',')})`;
    id = this.interned.get(key);
    if (id === undefined) {
      id = this.interned.size;
      this.interned.set(key, id);
      this.sizes[id] = Math.min(
        1e9,
        kids.reduce((a, k) => a + this.sizes[k], 1),
      );
    }
    this.ids.set(e, id);
    return id;
  }

  /** Expanded node count of `e` (capped at 1e9). */
  size(e: Expr): number {
    return this.sizes[this.id(e)];
  }

  private obj(o: object): number {
    let n = this.objIds.get(o);
    if (n === undefined) {
      n = this.objIds.size;
      this.objIds.set(o, n);
    }
    return n;
  }
}

/**
 * The subexpressions of `roots` of at least `minSize` nodes that occur under two or more parents (counting each
 * distinct parent once), children before their parents; one node per structure.
 */
export function repeatedSubexpressions(roots: readonly Expr[], ids: ExprIds, minSize = CSE_MIN_SIZE): Expr[] {
  const uses = new Map<number, number>(),
    seen = new Set<number>(),
    order: Expr[] = [];
  const visit = (e: Expr) => {
    const id = ids.id(e);
    if (seen.has(id)) return;
    seen.add(id);
    for (const k of kidsOf(e)) {
      const kid = ids.id(k);
      uses.set(kid, (uses.get(kid) ?? 0) + 1);
      visit(k);
    }
    order.push(e);
  };
  roots.forEach(visit);
  return order.filter((e) => (uses.get(ids.id(e)) ?? 0) >= 2 && ids.size(e) >= minSize);
}

/** The pass: in every statement, repeated subexpressions of `minSize` nodes or more bound to lets before it. */
export function csePass(caps: TargetCaps, minSize = CSE_MIN_SIZE): LoopPass {
  return {
    name: 'cse',
    run: (f) => {
      const ids = new ExprIds();
      const repeated = new Map<Stmt, Set<number>>();
      const repeatedIn = (s: Stmt) => {
        let r = repeated.get(s);
        if (!r) {
          r = new Set(repeatedSubexpressions(ownExprs(s), ids, minSize).map((e) => ids.id(e)));
          repeated.set(s, r);
        }
        return r;
      };
      return rewriteWithLets(
        f,
        (e, ctx, before) => {
          const id = ids.id(before);
          return repeatedIn(ctx.stmt).has(id) ? ctx.bind(e, 'cse', id) : undefined;
        },
        { hint: 'cse', speculation: caps.speculation },
      );
    },
  };
}
