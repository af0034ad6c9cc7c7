// Loop-invariant hoisting of float values: a computed subexpression of a stored value that no inner loop changes
// (a layernorm row's 1 / sqrt(var + eps), its mean) moves to the top of the outermost loop body where all its
// variables are bound, evaluated once per iteration of that loop instead of once per element or vector:
//   for r { for c.o { for c.i (vectorized) { out[..] = (x[..] - s[r] / 256) * (1 / sqrt(q[r] / 256 + eps)) } } }
// becomes
//   for r { let h1 = s[r] / 256; let h2 = 1 / sqrt(q[r] / 256 + eps); for c.o { ... (x[..] - h1) * h2 } }
// Safe where it applies: only values inside no `if` and no select arm (their loads may be guarded), reading no
// buffer that the loop stores to and no local buffer, with no integer division by a variable (it could trap).
// Placement follows hoist-index: loops of extent 1 and vectorized loops take no locals.
import { type Expr, type Var, freshVar, printExpr } from '../../tensor-expr/expr.js';
import { type Buffer, type Stmt, mapChildren, mapOwnParts, visitStmt } from '../loop-ir.js';

interface Level {
  readonly v: Var;
  readonly hoistable: boolean;
  /** Buffers stored to anywhere inside this loop. */
  readonly written: ReadonlySet<Buffer>;
  /** Values declared at the top of this loop's body, by printed value. */
  readonly decls: Map<string, { v: Var; init: Expr }>;
}

export function hoistLoopInvariantValues(body: Stmt): Stmt {
  return walk(body, []);
}

function walk(s: Stmt, levels: Level[]): Stmt {
  switch (s.k) {
    case 'for': {
      const level: Level = {
        v: s.v,
        hoistable: s.extent > 1 && s.kind !== 'vectorized',
        written: storedBuffers(s.body),
        decls: new Map(),
      };
      let b = walk(s.body, [...levels, level]);
      for (const d of [...level.decls.values()].reverse()) b = { k: 'decl', v: d.v, init: d.init, body: b };
      return { ...s, body: b };
    }
    case 'store':
      return { ...s, value: values(s.value, levels) };
    // nothing moves out of a condition (a guarded load may be out of bounds when the guard is false); loops
    // inside it start afresh
    case 'if':
      return mapChildren(s, (c) => walk(c, []));
    default:
      return mapChildren(mapOwnParts(s, { expr: (e) => values(e, levels) }), (c) => walk(c, levels));
  }
}

function storedBuffers(s: Stmt): Set<Buffer> {
  const out = new Set<Buffer>();
  visitStmt(s, (x) => {
    if (x.k === 'store') out.add(x.buf);
  });
  return out;
}

/** `e` with its largest hoistable float subexpressions replaced by hoisted locals. */
function values(e: Expr, levels: Level[]): Expr {
  if (!levels.length) return e;
  const lv = isFloat(e) && computes(e) ? placement(e, levels) : undefined;
  // worth it only outside the innermost loop that takes locals (there it would run as often as before)
  if (lv !== undefined && levels.slice(lv + 1).some((l) => l.hoistable)) {
    const key = printExpr(e);
    let d = levels[lv].decls.get(key);
    if (!d) {
      d = { v: freshVar('h', e.dtype), init: e };
      levels[lv].decls.set(key, d);
    }
    return d.v;
  }
  switch (e.k) {
    case 'bin':
      return { ...e, a: values(e.a, levels), b: values(e.b, levels) };
    case 'un':
    case 'cast':
      return { ...e, a: values(e.a, levels) };
    case 'select':
      return { ...e, c: values(e.c, levels) }; // arms may run conditionally: left alone
    default:
      return e;
  }
}

const isFloat = (e: Expr) => e.dtype === 'float32' || e.dtype === 'float64';
/** Whether `e` does arithmetic (a bare load, constant or variable is not worth a local). */
const computes = (e: Expr) => e.k === 'bin' || e.k === 'un' || e.k === 'cast';

/** The first loop level that takes locals at or inside the one binding `e`'s innermost variable, if `e` may move there. */
function placement(e: Expr, levels: Level[]): number | undefined {
  let deepest = -1,
    ok = true;
  const loads: Buffer[] = [];
  const visit = (x: Expr): void => {
    switch (x.k) {
      case 'var': {
        const i = levels.findIndex((l) => l.v === x);
        if (i < 0) ok = false; // bound inside the loops (an accumulator, a hoisted partial sum): keep in place
        deepest = Math.max(deepest, i);
        return;
      }
      case 'const':
        return;
      case 'load':
        if ((x.buf as Buffer).scope === 'local') ok = false;
        loads.push(x.buf as Buffer);
        x.idx.forEach(visit);
        return;
      case 'bin':
        if (!isFloat(x) && ['div', 'mod', 'floordiv', 'floormod'].includes(x.op) && x.b.k !== 'const') ok = false;
        visit(x.a);
        visit(x.b);
        return;
      case 'un':
      case 'cast':
        visit(x.a);
        return;
      case 'select':
        ok = false;
        return;
      default:
        ok = false;
    }
  };
  visit(e);
  if (!ok) return undefined;
  for (let i = Math.max(deepest, 0); i < levels.length; i++) {
    if (!levels[i].hoistable) continue;
    // the loop must not store to what the value reads (it would change between iterations)
    return loads.some((b) => levels[i].written.has(b)) ? undefined : i;
  }
  return undefined;
}
