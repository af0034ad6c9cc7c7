// Loop partitioning (interior / border): a serial loop whose body tests a condition on its own variable (a padded
// border: `y - 1 >= 0 && y - 1 < H`) is split into consecutive loops over the ranges where every such condition
// has one known value for all values of the loops inside (the lanes of a vector included), and each copy is
// simplified under its range. The interior copy then has no bounds checks: a pad kernel's rows become plain vector
// copies instead of masked vector loads. Bodies too large to copy and loops whose conditions would cut them into
// many pieces are left whole. With `tails`, the choice of a min (the shifted last tile of a split: `min(o * 32,
// 968)`) counts as a condition too, so the tiles before the last index their operands without it: their lanes
// read packed weights as vectors, where the shifted tile crosses a block and gathers. A parallel loop stays whole
// (threads split it): its body branches on the ranges instead.
import {
  type Expr,
  type Var,
  add,
  constant,
  freshVar,
  le,
  lt,
  mentions,
  substitute,
  visitExpr,
} from '../../tensor-expr/expr.js';
import { type Interval, simplify } from '../../tensor-expr/simplify.js';
import {
  type ForStmt,
  type Stmt,
  mapChildren,
  mapOwnParts,
  mapStmtExprs,
  ownExprs,
  seq,
  visitStmt,
} from '../loop-ir.js';

/** Loops longer than this are not scanned (each iteration's conditions are evaluated once at compile time). */
const MAX_EXTENT = 1024;
/** Pieces one loop may be cut into. */
const MAX_PIECES = 4;
/** Expression nodes of a body worth copying that many times. */
const MAX_BODY_NODES = 4000;

export interface PartitionOptions {
  /** The choice of a min is a condition too, and parallel loops branch on their ranges (see above). */
  tails?: boolean;
}

export function partitionLoops(s: Stmt, opts: PartitionOptions = {}, ranges: Map<Var, Interval> = new Map()): Stmt {
  switch (s.k) {
    case 'for': {
      ranges.set(s.v, { lo: 0, hi: s.extent - 1 });
      const pieces =
        s.kind === 'serial' || (opts.tails && s.kind === 'parallel') ? partition(s, opts, ranges) : undefined;
      if (pieces) return pieces;
      return { ...s, body: partitionLoops(s.body, opts, ranges) };
    }
    case 'seq':
      return seq(s.body.map((b) => partitionLoops(b, opts, ranges)));
    default:
      return mapChildren(s, (c) => partitionLoops(c, opts, ranges));
  }
}

function partition(loop: ForStmt, opts: PartitionOptions, outer: Map<Var, Interval>): Stmt | undefined {
  if (loop.extent < 2 || loop.extent > MAX_EXTENT) return undefined;
  const conds: Expr[] = [];
  let nodes = 0;
  const inner = new Map(outer);
  // each conjunct on its own: `y in range && x in range` is known along x only where the x part is known
  const test = (c: Expr) => {
    for (const t of conjuncts(c)) if (mentions(t, loop.v)) conds.push(t);
  };
  const serial = loop.kind === 'serial';
  visitStmt(loop.body, (st) => {
    if (st.k === 'for') inner.set(st.v, { lo: 0, hi: st.extent - 1 });
    if (st.k === 'if' && serial) test(st.cond);
    for (const e of ownExprs(st))
      visitExpr(e, (x) => {
        nodes++;
        if (x.k === 'select' && serial) test(x.c);
        if (x.k === 'bin' && x.op === 'min' && opts.tails && x.dtype === 'int32') test(le(x.a, x.b));
      });
  });
  if (!conds.length || nodes > MAX_BODY_NODES) return undefined;
  // each iteration's signature: every condition's value for all inner values (or '?' when it varies)
  const sig = (k: number) =>
    conds
      .map((c) => {
        const v = simplify(substitute(c, new Map([[loop.v, constant(k, 'int32')]])), inner);
        return v.k === 'const' ? String(v.value) : '?';
      })
      .join(',');
  const pieces: { start: number; end: number; sig: string }[] = [];
  for (let k = 0; k < loop.extent; k++) {
    const sk = sig(k);
    const last = pieces[pieces.length - 1];
    if (last && last.sig === sk) last.end = k + 1;
    else pieces.push({ start: k, end: k + 1, sig: sk });
  }
  // worth it only when some piece knows a condition; cutting into many pieces costs more than it saves
  const knows = (p: (typeof pieces)[number]) => p.sig.split(',').some((x) => x !== '?');
  if (pieces.length < 2 || pieces.length > MAX_PIECES || !pieces.some(knows)) return undefined;
  // A run-time size's guard (`i < size`, size >= 1) is known at the first iteration only: peeling it doubles the
  // code (and the compile time) to save one test of a loop.
  const known = pieces.filter(knows).reduce((n, p) => n + p.end - p.start, 0);
  let readsMemory = false;
  for (const c of conds)
    visitExpr(c, (x) => {
      if (x.k === 'load') readsMemory = true;
    });
  if (readsMemory && known * 4 < loop.extent) return undefined;
  if (!serial) {
    // one loop for the threads to split, branching on the ranges: `if (v < end) piece else ...`
    const pieceBody = (p: (typeof pieces)[number]) => {
      const ranges = new Map(outer).set(loop.v, { lo: p.start, hi: p.end - 1 });
      return partitionLoops(cleanup(loop.body, ranges), opts, ranges);
    };
    const chain = pieces
      .slice(0, -1)
      .reduceRight<Stmt>(
        (rest, p) => ({ k: 'if', cond: lt(loop.v, constant(p.end, 'int32')), then: pieceBody(p), else: rest }),
        pieceBody(pieces[pieces.length - 1]),
      );
    return { ...loop, body: chain };
  }
  return seq(
    pieces.map((p) => {
      const len = p.end - p.start;
      const v = len === 1 ? undefined : freshVar(loop.v.name);
      const at: Expr = v ? add(v, constant(p.start, 'int32')) : constant(p.start, 'int32');
      const ranges = new Map(outer);
      if (v) ranges.set(v, { lo: 0, hi: len - 1 });
      const body = cleanup(
        mapStmtExprs(loop.body, (e) => substitute(e, new Map([[loop.v, at]]))),
        ranges,
      );
      const inner2 = partitionLoops(body, opts, ranges);
      return v ? { ...loop, v, extent: len, body: inner2 } : inner2;
    }),
  );
}

/** Simplifies every expression under the loops' ranges and drops branches whose condition became constant. */
function cleanup(s: Stmt, ranges: Map<Var, Interval>): Stmt {
  switch (s.k) {
    case 'for':
      ranges.set(s.v, { lo: 0, hi: s.extent - 1 });
      break;
    case 'seq':
      return seq(s.body.map((b) => cleanup(b, ranges)));
    case 'if': {
      const cond = simplify(s.cond, ranges);
      if (cond.k === 'const') return cond.value ? cleanup(s.then, ranges) : s.else ? cleanup(s.else, ranges) : seq([]);
      return mapChildren({ ...s, cond }, (c) => cleanup(c, ranges));
    }
    default:
      break;
  }
  return mapChildren(mapOwnParts(s, { expr: (e) => simplify(e, ranges) }), (c) => cleanup(c, ranges));
}

const conjuncts = (e: Expr): Expr[] =>
  e.k === 'bin' && e.op === 'and' && e.dtype === 'bool' ? [...conjuncts(e.a), ...conjuncts(e.b)] : [e];
