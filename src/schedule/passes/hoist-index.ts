// Loop-invariant hoisting of index arithmetic (a light strength reduction). Each buffer index is an affine sum of
// terms; a term is moved out to the loop that binds its innermost variable, where the partial sums are kept in
// scalar locals, one per loop level:
//   for c { for y { for ky { for kx { v128.load(x + ((c*256 + y*16) + ky*16) + kx + lane) } } } }
// becomes
//   for c { let p1 = c*256; for y { let p2 = p1 + y*16; for ky { let p3 = p2 + ky*16; for kx { let p4 = p3 + kx;
//     v128.load(x + p4 + lane) } } } }
// so the innermost body pays one add per load instead of re-deriving the whole address. Equal partial sums are
// shared. Loops of extent 1 and vectorized loops get no locals (the former would hide a parallel loop from the
// thread splitter, the latter must stay a single store for the vectorizer): their terms go one level deeper, or
// stay in place. Terms that could trap when evaluated early (division by a non-constant) stay in place.
import { type Expr, type Var, add, constant, freshVar, mul, printExpr } from '../../tensor-expr/expr.js';
import { type Stmt, mapChildren, mapOwnParts } from '../loop-ir.js';

interface Level {
  /** The loop, or undefined for a loop that takes no locals. */
  readonly v: Var;
  readonly hoistable: boolean;
  /** Partial sums declared at the top of this loop's body, by printed value. */
  readonly decls: Map<string, { v: Var; init: Expr }>;
}

interface Term {
  atom: Expr;
  coef: number;
}

export function hoistIndexArithmetic(body: Stmt): Stmt {
  return walk(body, []);
}

function walk(s: Stmt, levels: Level[]): Stmt {
  switch (s.k) {
    case 'for': {
      const level: Level = { v: s.v, hoistable: s.extent > 1 && s.kind !== 'vectorized', decls: new Map() };
      const inner = walk(s.body, [...levels, level]);
      let b = inner;
      for (const d of [...level.decls.values()].reverse()) b = { k: 'decl', v: d.v, init: d.init, body: b };
      return { ...s, body: b };
    }
    case 'store':
      return { ...s, index: s.buf.scope === 'local' ? s.index : hoist(s.index, levels), value: loads(s.value, levels) };
    default:
      return mapChildren(mapOwnParts(s, { expr: (e) => loads(e, levels) }), (c) => walk(c, levels));
  }
}

/** Rewrites the indices of global loads inside `e`. */
function loads(e: Expr, levels: Level[]): Expr {
  switch (e.k) {
    case 'load': {
      const idx = e.idx.map((i) => loads(i, levels));
      const local = (e.buf as { scope?: string }).scope === 'local';
      return { ...e, idx: local || idx.length !== 1 ? idx : [hoist(idx[0], levels)] };
    }
    case 'bin':
      return { ...e, a: loads(e.a, levels), b: loads(e.b, levels) };
    case 'un':
    case 'cast':
      return { ...e, a: loads(e.a, levels) };
    case 'select':
      return { ...e, c: loads(e.c, levels), a: loads(e.a, levels), b: loads(e.b, levels) };
    default:
      return e;
  }
}

function hoist(index: Expr, levels: Level[]): Expr {
  if (index.dtype !== 'int32' || !levels.some((l) => l.hoistable)) return index;
  const terms = new Map<string, Term>();
  const k = { value: 0 };
  linear(index, 1, terms, k);
  // level of each term: the first hoistable loop at or inside the one binding its innermost variable
  const at = new Map<number, Term[]>();
  const inline: Term[] = [];
  for (const t of terms.values()) {
    if (t.coef === 0) continue;
    const lv = placement(t.atom, levels);
    if (lv === undefined) inline.push(t);
    else at.set(lv, [...(at.get(lv) ?? []), t]);
  }
  if (!at.size) return index;
  let partial: Expr | undefined;
  for (const lv of [...at.keys()].sort((a, b) => a - b)) {
    const init = at.get(lv)!.reduce<Expr | undefined>((acc, t) => (acc ? add(acc, term(t)) : term(t)), partial)!;
    const key = printExpr(init);
    let d = levels[lv].decls.get(key);
    if (!d) {
      d = { v: freshVar('p'), init };
      levels[lv].decls.set(key, d);
    }
    partial = d.v;
  }
  let out = inline.reduce<Expr>((acc, t) => add(acc, term(t)), partial!);
  if (k.value) out = add(out, constant(k.value, 'int32'));
  return out;
}

const term = (t: Term): Expr => (t.coef === 1 ? t.atom : mul(t.atom, constant(t.coef, 'int32')));

/** Splits an index into coefficient * atom terms and a constant (through add, sub and multiplication by constants). */
function linear(e: Expr, coef: number, terms: Map<string, Term>, k: { value: number }): void {
  if (e.k === 'const') {
    k.value += coef * Number(e.value);
    return;
  }
  if (e.k === 'bin' && e.op === 'add') {
    linear(e.a, coef, terms, k);
    linear(e.b, coef, terms, k);
    return;
  }
  if (e.k === 'bin' && e.op === 'sub') {
    linear(e.a, coef, terms, k);
    linear(e.b, -coef, terms, k);
    return;
  }
  if (e.k === 'bin' && e.op === 'mul' && e.b.k === 'const') {
    linear(e.a, coef * Number(e.b.value), terms, k);
    return;
  }
  if (e.k === 'bin' && e.op === 'mul' && e.a.k === 'const') {
    linear(e.b, coef * Number(e.a.value), terms, k);
    return;
  }
  const key = printExpr(e);
  const t = terms.get(key);
  if (t) t.coef += coef;
  else terms.set(key, { atom: e, coef });
}

/** Index into `levels` where the atom's value can be computed once, or undefined to keep it in place. */
function placement(atom: Expr, levels: Level[]): number | undefined {
  let deepest = -1;
  let ok = true;
  const visit = (e: Expr): void => {
    switch (e.k) {
      case 'var': {
        const i = levels.findIndex((l) => l.v === e);
        if (i < 0) ok = false; // a local defined inside the loops (or a hoisted partial sum): keep in place
        deepest = Math.max(deepest, i);
        return;
      }
      case 'const':
        return;
      case 'bin':
        if ((e.op === 'div' || e.op === 'mod' || e.op === 'floordiv' || e.op === 'floormod') && e.b.k !== 'const')
          ok = false;
        visit(e.a);
        visit(e.b);
        return;
      case 'un':
      case 'cast':
        visit(e.a);
        return;
      case 'select':
        visit(e.c);
        visit(e.a);
        visit(e.b);
        return;
      default:
        ok = false; // loads: memory may change inside the loop
    }
  };
  visit(atom);
  if (!ok || deepest < 0) return undefined;
  for (let i = deepest; i < levels.length; i++) if (levels[i].hoistable) return i;
  return undefined;
}
