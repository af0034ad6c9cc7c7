// Loop unrolling on the loop IR: a loop marked `unrolled` becomes one copy of its body per iteration with the
// loop variable replaced by the constant, then simplified. Done here rather than in codegen so that indices
// into register tiles (local buffers) become constants that a backend can map to registers.
import { type Expr, type Var, constant, mapExpr } from '../../tensor-expr/expr.js';
import { simplify } from '../../tensor-expr/simplify.js';
import { type Stmt, seq } from '../loop-ir.js';

export const MAX_UNROLL = 64;

export function mapStmtExprs(s: Stmt, f: (e: Expr) => Expr): Stmt {
  switch (s.k) {
    case 'for': return { ...s, body: mapStmtExprs(s.body, f) };
    case 'seq': return { k: 'seq', body: s.body.map((b) => mapStmtExprs(b, f)) };
    case 'store': return { ...s, index: f(s.index), value: f(s.value) };
    case 'if': return { ...s, cond: f(s.cond), then: mapStmtExprs(s.then, f), else: s.else && mapStmtExprs(s.else, f) };
    case 'decl': return { ...s, init: f(s.init), body: mapStmtExprs(s.body, f) };
    case 'assign': return { ...s, value: f(s.value) };
    case 'alloc': return { ...s, body: mapStmtExprs(s.body, f) };
    case 'barrier': return s;
  }
}

function substituteConst(s: Stmt, v: Var, k: number): Stmt {
  const c = constant(k, 'int32');
  return mapStmtExprs(s, (e) => simplify(mapExpr(e, (x) => (x === v ? c : undefined))));
}

export function unrollLoops(s: Stmt): Stmt {
  switch (s.k) {
    case 'for': {
      const body = unrollLoops(s.body);
      if (s.kind !== 'unrolled' || s.extent > MAX_UNROLL) return { ...s, body };
      const copies: Stmt[] = [];
      for (let k = 0; k < s.extent; k++) copies.push(substituteConst(body, s.v, k));
      return seq(copies);
    }
    case 'seq': return seq(s.body.map(unrollLoops));
    case 'if': {
      const then = unrollLoops(s.then), els = s.else && unrollLoops(s.else);
      if (s.cond.k === 'const') return s.cond.value ? then : els ?? seq([]);
      return { ...s, then, else: els };
    }
    case 'decl': case 'alloc': return { ...s, body: unrollLoops(s.body) };
    default: return s;
  }
}
