// Loop unrolling on the loop IR: a loop marked `unrolled` becomes one copy of its body per iteration with the
// loop variable replaced by the constant, then simplified. Done here rather than in codegen so that indices
// into register tiles (local buffers) become constants that a backend can map to registers.
import type { Var } from '../../tensor-expr/expr.js';
import { fixVar, type Interval } from '../../tensor-expr/simplify.js';
import { type Stmt, mapChildren, mapStmtExprs, seq } from '../loop-ir.js';

export const MAX_UNROLL = 64;

/** Unrolls `unrolled` loops; `ranges` are the enclosing loops' variable ranges (for simplification). */
export function unrollLoops(s: Stmt, ranges: Map<Var, Interval> = new Map()): Stmt {
  switch (s.k) {
    case 'for': {
      ranges.set(s.v, { lo: 0, hi: s.extent - 1 });
      const body = unrollLoops(s.body, ranges);
      if (s.kind !== 'unrolled' || s.extent > MAX_UNROLL) return { ...s, body };
      const copies: Stmt[] = [];
      for (let k = 0; k < s.extent; k++)
        copies.push(foldConstIfs(mapStmtExprs(body, (e) => fixVar(e, s.v, k, ranges))));
      return seq(copies);
    }
    case 'seq':
      return seq(s.body.map((b) => unrollLoops(b, ranges)));
    case 'if': {
      const then = unrollLoops(s.then, ranges),
        els = s.else && unrollLoops(s.else, ranges);
      if (s.cond.k === 'const') return s.cond.value ? then : (els ?? seq([]));
      return { ...s, then, else: els };
    }
    default:
      return mapChildren(s, (c) => unrollLoops(c, ranges));
  }
}

/** Branches whose condition became a constant (a guard that holds for one unrolled iteration) are resolved. */
function foldConstIfs(s: Stmt): Stmt {
  switch (s.k) {
    case 'if': {
      if (s.cond.k === 'const') return s.cond.value ? foldConstIfs(s.then) : s.else ? foldConstIfs(s.else) : seq([]);
      return { ...s, then: foldConstIfs(s.then), else: s.else && foldConstIfs(s.else) };
    }
    case 'seq':
      return seq(s.body.map(foldConstIfs));
    default:
      return mapChildren(s, foldConstIfs);
  }
}
