// 64-bit integers as pairs of 32-bit words, for the targets whose caps say `int64: 'u32-pairs'` (WGSL has no 64-bit
// integers). After the pass the loop IR holds no int64/uint64 value at all, only uint32 (and int32/f32/bool):
//  - an int64/uint64 buffer (parameter, temp, local or shared allocation) becomes a uint32 buffer of twice the
//    elements with the same name: the low word of element i at 2i, the high word at 2i + 1 (the bytes of the host's
//    BigInt64Array, so the runtime binds and copies it unchanged); a load is two loads, a store two stores;
//  - a 64-bit variable (decl, assign) becomes two uint32 variables `${name}_lo_n`, `${name}_hi_n`;
//  - a 64-bit expression becomes a (lo, hi) pair of uint32 expressions, with the WebAssembly target's semantics:
//    wrapping add/sub/mul (the high word of a 32x32 product from 16-bit halves), truncating div and rem with the
//    dividend's sign (division by zero: all ones and the dividend), min/max/compares (signed on the high word),
//    shift amounts mod 64 (arithmetic shr for int64), saturating float32 -> 64-bit (NaN -> 0), 64-bit -> float32
//    correctly rounded (the bits below the top 32 fold into a sticky bit), integer pow by squaring. Unsigned
//    division (restoring, bit by bit, after a one-word fast path) and pow are `for` loops over 64 with mutable
//    words, placed before the statement; everything else is expressions.
// Floor division of int64 is not here: legalize-floordiv (legalize.ts) lowers it to div/mod first (the WebGPU caps
// list int64 in `floorDivLowered`); unsigned floordiv/floormod are div/mod.
//
// Laziness: the words are built for every 64-bit node, with every value a formula uses twice bound to a `let`
// before the statement; then the lets (and division/pow loops) nothing reads are dropped and a let read once is
// put back where it is read. So `int32(l[i])` of an int64 load costs the one load of the low word, as on WASM
// (i64.wrap), and an add whose high word nobody reads is one 32-bit add.
// Values bound before the statement may come out of a select arm: where the target's `speculation` is 'pure' a value
// that may fault stays in the arm (duplicated where a formula needs it twice), and a loop out of an arm is refused.
// Constants fold: an all-constant word is computed here (WGSL rejects overflowing constant expressions and constant
// shifts by 32 or more).
import type { DType } from '../../runtime/dtype.js';
import { isFloat, isUnsigned, isWide } from '../../runtime/dtype.js';
import { KilnError } from '../../runtime/errors.js';
import { type BinOp, type Expr, type Var, binary, constant, mapExpr, visitExpr } from '../../tensor-expr/expr.js';
import {
  type Buffer,
  type PrimFunc,
  type Stmt,
  mapChildren,
  mapOwnParts,
  ownExprs,
  seq,
  visitStmt,
  visitStmtExprs,
} from '../../schedule/loop-ir.js';
import type { LoopPass } from '../../schedule/loop-passes.js';
import { VarNamer } from './bind.js';
import { canSpeculate } from './pure.js';
import type { TargetCaps } from './target-caps.js';

/** A 64-bit value as its low and high uint32 words. */
export interface Pair {
  readonly lo: Expr;
  readonly hi: Expr;
}

// ---- 32-bit expressions, folded where their operands are constants

const U = (v: number): Expr => constant(v >>> 0, 'uint32');
const I = (v: number): Expr => constant(v | 0, 'int32');
const F = (v: number): Expr => constant(v, 'float32');
const TRUE = constant(1, 'bool'),
  FALSE = constant(0, 'bool');
const ONES = 0xffffffff;
const isC = (e: Expr, v?: number): e is Extract<Expr, { k: 'const' }> =>
  e.k === 'const' && (v === undefined || Number(e.value) === v);
const val = (e: Expr) => Number((e as Extract<Expr, { k: 'const' }>).value);

/** The value of `op` on 32-bit or bool constants, or undefined (division by zero, floats). */
function foldBin(op: BinOp, t: DType, x: number, y: number): number | boolean | undefined {
  const w = (v: number) => (t === 'uint32' ? v >>> 0 : t === 'int32' ? v | 0 : v);
  switch (op) {
    case 'add':
      return w(x + y);
    case 'sub':
      return w(x - y);
    case 'mul':
      return w(Math.imul(x, y));
    case 'and':
      return t === 'bool' ? x && y : w(x & y);
    case 'or':
      return t === 'bool' ? x || y : w(x | y);
    case 'xor':
      return t === 'bool' ? x !== y : w(x ^ y);
    case 'shl':
      return w(x << (y & 31));
    case 'shr':
      return t === 'uint32' ? x >>> (y & 31) : w(x >> (y & 31));
    case 'div':
      return y === 0 ? undefined : w(Math.trunc(x / y));
    case 'mod':
      return y === 0 ? undefined : w(x % y);
    case 'eq':
      return x === y;
    case 'ne':
      return x !== y;
    case 'lt':
      return x < y;
    case 'le':
      return x <= y;
    case 'gt':
      return x > y;
    case 'ge':
      return x >= y;
    default:
      return undefined;
  }
}

/** `op(a, b)`: folded when both are constants (32-bit ints or bool), simplified by identities with 0, 1 and ~0. */
function bin(op: BinOp, a: Expr, b: Expr): Expr {
  const t = a.dtype;
  if (t !== 'float32' && isC(a) && isC(b)) {
    const v = foldBin(op, t, val(a), val(b));
    if (v !== undefined) return constant(typeof v === 'boolean' ? +v : v, typeof v === 'boolean' ? 'bool' : t);
  }
  if (t === 'bool') {
    if (op === 'and' && isC(a)) return val(a) ? b : a;
    if (op === 'and' && isC(b)) return val(b) ? a : b;
    if (op === 'or' && isC(a)) return val(a) ? a : b;
    if (op === 'or' && isC(b)) return val(b) ? b : a;
  } else if (t === 'uint32' || t === 'int32') {
    const ones = t === 'uint32' ? ONES : -1;
    switch (op) {
      case 'add':
      case 'or':
      case 'xor':
        if (isC(a, 0)) return b;
        if (isC(b, 0)) return a;
        break;
      case 'sub':
      case 'shl':
      case 'shr':
        if (isC(b, 0)) return a;
        if (op !== 'sub' && isC(a, 0)) return a;
        break;
      case 'and':
        if (isC(a, 0) || isC(b, ones)) return a;
        if (isC(b, 0) || isC(a, ones)) return b;
        break;
      case 'mul':
        if (isC(a, 1)) return b;
        if (isC(b, 1)) return a;
        if (isC(a, 0)) return a;
        if (isC(b, 0)) return b;
        break;
    }
  }
  return binary(op, a, b);
}

const add = (a: Expr, b: Expr) => bin('add', a, b),
  sub = (a: Expr, b: Expr) => bin('sub', a, b),
  mul = (a: Expr, b: Expr) => bin('mul', a, b),
  and = (a: Expr, b: Expr) => bin('and', a, b),
  or = (a: Expr, b: Expr) => bin('or', a, b),
  xor = (a: Expr, b: Expr) => bin('xor', a, b),
  shl = (a: Expr, b: Expr) => bin('shl', a, b),
  shr = (a: Expr, b: Expr) => bin('shr', a, b),
  eq = (a: Expr, b: Expr) => bin('eq', a, b),
  ne = (a: Expr, b: Expr) => bin('ne', a, b),
  lt = (a: Expr, b: Expr) => bin('lt', a, b),
  ge = (a: Expr, b: Expr) => bin('ge', a, b);

function not(c: Expr): Expr {
  if (isC(c)) return val(c) ? FALSE : TRUE;
  if (c.k === 'un' && c.op === 'not') return c.a;
  return { k: 'un', op: 'not', a: c, dtype: 'bool' };
}

function select(c: Expr, a: Expr, b: Expr): Expr {
  if (isC(c)) return val(c) ? a : b;
  if (a === b || (isC(a) && isC(b) && val(a) === val(b))) return a;
  if (a.dtype === 'bool' && isC(a) && isC(b)) return val(a) ? c : not(c);
  return { k: 'select', c, a, b, dtype: a.dtype };
}

/** A cast between 32-bit ints, bool and float32: int32 <-> uint32 keep the bits, bool -> int is 0 or 1. */
function cast(to: DType, a: Expr): Expr {
  if (a.dtype === to) return a;
  if (isC(a) && !isFloat(to) && !isFloat(a.dtype)) {
    const v = val(a);
    return constant(to === 'bool' ? +(v !== 0) : to === 'uint32' ? v >>> 0 : to === 'int32' ? v | 0 : v, to);
  }
  // int32(uint32(x)) of an int32 x, and the other way round: the same bits
  if (a.k === 'cast' && a.a.dtype === to && (to === 'int32' || to === 'uint32') && INT32S.has(a.dtype)) return a.a;
  return { k: 'cast', a, dtype: to };
}
const INT32S: ReadonlySet<DType> = new Set(['int32', 'uint32']);
const asU = (x: Expr) => cast('uint32', x),
  asI = (x: Expr) => cast('int32', x);
/** The sign bit of a high word, as bool. */
const negative = (hi: Expr) => lt(asI(hi), I(0));

const pairOf = (lo: Expr, hi: Expr): Pair => ({ lo, hi });
const constPair = (v: bigint): Pair => {
  const u = BigInt.asUintN(64, v);
  return pairOf(U(Number(u & 0xffffffffn)), U(Number(u >> 32n)));
};

// ---- the statements placed before a statement: lets, mutable words and the loops that compute them

type Item =
  /** An immutable value (may be dropped when unread, or put back where it is read once unless `keep`). */
  | { k: 'let'; v: Var; init: Expr; keep?: boolean }
  /** A mutable variable (`user`: a 64-bit variable of the program, never dropped). */
  | { k: 'var'; v: Var; init: Expr; user?: boolean }
  /** A statement that assigns some of the block's variables (a division or pow loop). */
  | { k: 'stmt'; s: Stmt };

const varsIn = (e: Expr, into: Set<Var>) =>
  visitExpr(e, (x) => {
    if (x.k === 'var') into.add(x);
  });
function stmtVars(s: Stmt, into: Set<Var>): void {
  visitStmtExprs(s, (e) => varsIn(e, into));
  visitStmt(s, (x) => {
    if (x.k === 'assign') into.add(x.v);
  });
}
const assignedIn = (s: Stmt, into: Set<Var>) =>
  visitStmt(s, (x) => {
    if (x.k === 'assign') into.add(x.v);
  });
const storedIn = (s: Stmt, into: Set<Buffer>) =>
  visitStmt(s, (x) => {
    if (x.k === 'store') into.add(x.buf);
  });

/** Statements to place before a statement (or a loop body's statements), built as the expansion needs them. */
class Block {
  readonly items: Item[] = [];
  private readonly bound = new Map<Expr, Var>();
  constructor(private readonly namer: VarNamer) {}

  /** `e` in a let (the same let for the same node); variables and constants stay as they are. */
  let(e: Expr, hint = 'w', keep = false): Expr {
    if (e.k === 'var' || e.k === 'const') return e;
    const had = this.bound.get(e);
    if (had && !keep) return had;
    const v = this.namer.fresh(hint, e.dtype);
    this.items.push({ k: 'let', v, init: e, ...(keep ? { keep } : {}) });
    this.bound.set(e, v);
    return v;
  }
  /** A mutable variable, initialized to `init`. */
  mut(init: Expr, hint: string, user = false): Var {
    const v = this.namer.fresh(hint, init.dtype);
    this.items.push({ k: 'var', v, init, ...(user ? { user } : {}) });
    return v;
  }
  stmt(s: Stmt): void {
    this.items.push({ k: 'stmt', s });
  }

  /** The block's items around `tail`: unread ones dropped, lets read once put back (see the file comment). */
  finish(tail: readonly Stmt[]): Stmt {
    let items = this.live(tail);
    let stmts = [...tail];
    // what a let may not move past: variables assigned and buffers stored after it
    const assigned = new Set<Var>(),
      stored = new Set<Buffer>();
    for (const s of stmts) {
      assignedIn(s, assigned);
      storedIn(s, stored);
    }
    for (const it of items) if (it.k === 'stmt') assignedIn(it.s, assigned);
    for (let i = items.length - 1; i >= 0; i--) {
      const it = items[i];
      if (it.k !== 'let' || it.keep) continue;
      let movable = true;
      visitExpr(it.init, (x) => {
        if ((x.k === 'var' && assigned.has(x)) || (x.k === 'load' && stored.has(x.buf as Buffer))) movable = false;
      });
      if (!movable) continue;
      // reads where it could go (later lets' and variables' inits, the tail's own expressions), and anywhere
      let here = 0,
        total = 0;
      for (const later of items.slice(i + 1)) {
        if (later.k === 'stmt') total += deepCount(later.s, it.v);
        else {
          const n = countIn(later.init, it.v);
          here += n;
          total += n;
        }
      }
      for (const s of stmts) {
        here += ownCount(s, it.v);
        total += deepCount(s, it.v);
      }
      if (here !== 1 || total !== 1) continue;
      const put = (e: Expr) => mapExpr(e, (x) => (x === it.v ? it.init : undefined));
      items = items.map((later, j) => (j <= i || later.k === 'stmt' ? later : { ...later, init: put(later.init) }));
      stmts = stmts.map((s) => mapOwnParts(s, { expr: put }));
      items.splice(i, 1);
    }
    return items.reduceRight<Stmt>(
      (body, it) => (it.k === 'stmt' ? seq([it.s, body]) : { k: 'decl', v: it.v, init: it.init, body }),
      seq(stmts),
    );
  }

  /** The items something reads (walking back from the tail), program variables always. */
  private live(tail: readonly Stmt[]): Item[] {
    const used = new Set<Var>();
    for (const s of tail) stmtVars(s, used);
    const keep: Item[] = [];
    for (let i = this.items.length - 1; i >= 0; i--) {
      const it = this.items[i];
      let live: boolean;
      if (it.k === 'stmt') {
        const w = new Set<Var>();
        assignedIn(it.s, w);
        live = [...w].some((v) => used.has(v));
        if (live) stmtVars(it.s, used);
      } else {
        live = used.has(it.v) || (it.k === 'var' && !!it.user);
        if (live) varsIn(it.init, used);
      }
      if (live) keep.push(it);
    }
    return keep.reverse();
  }
}

/** Reads of `v` in `e`. */
function countIn(e: Expr, v: Var): number {
  let n = 0;
  visitExpr(e, (x) => {
    if (x === v) n++;
  });
  return n;
}

/** Reads of `v` in the own expressions of `s`, and in every statement of `s`. */
const ownCount = (s: Stmt, v: Var) => ownExprs(s).reduce((n, e) => n + countIn(e, v), 0);
function deepCount(s: Stmt, v: Var): number {
  let n = 0;
  visitStmtExprs(s, (e) => {
    n += countIn(e, v);
  });
  return n;
}

const assign = (v: Var, value: Expr): Stmt => ({ k: 'assign', v, value });
function ifStmt(cond: Expr, then: Stmt, els?: Stmt): Stmt {
  if (isC(cond)) return val(cond) ? then : (els ?? seq([]));
  return els ? { k: 'if', cond, then, else: els } : { k: 'if', cond, then };
}

// ---- the pass

/** Whether `e` holds a 64-bit value anywhere. */
function hasWide(e: Expr): boolean {
  let found = false;
  visitExpr(e, (x) => {
    if (isWide(x.dtype)) found = true;
  });
  return found;
}

/** The pass: int64/uint64 buffers, variables and arithmetic of a 'u32-pairs' target as uint32 words. */
export function int64PairsPass(caps: Pick<TargetCaps, 'int64' | 'speculation'>): LoopPass {
  return {
    name: 'split-int64',
    run: (f) => (caps.int64 === 'u32-pairs' ? new Splitter(f, caps).run() : f),
  };
}

class Splitter {
  private readonly namer: VarNamer;
  private readonly bufs = new Map<Buffer, Buffer>();
  private readonly vars = new Map<Var, { lo: Var; hi: Var }>();
  // per statement: its block and the pairs of the nodes expanded so far
  private block!: Block;
  private memo = new Map<Expr, Pair>();
  private divs = new Map<string, { q: Pair; r: Pair }>();
  private ids = new Map<Expr, number>();

  constructor(
    private readonly f: PrimFunc,
    private readonly caps: Pick<TargetCaps, 'speculation'>,
  ) {
    this.namer = new VarNamer(f);
  }

  run(): PrimFunc {
    const f = this.f;
    let any = [...f.inputs, ...f.outputs, ...f.temps].some((b) => isWide(b.dtype));
    visitStmt(f.body, (s) => {
      if ((s.k === 'alloc' || s.k === 'store') && isWide(s.buf.dtype)) any = true;
      if ((s.k === 'decl' || s.k === 'assign') && isWide(s.v.dtype)) any = true;
    });
    visitStmtExprs(f.body, (e) => {
      if (!any && hasWide(e)) any = true;
    });
    if (!any) return f;
    return {
      ...f,
      inputs: f.inputs.map((b) => this.buf(b)),
      outputs: f.outputs.map((b) => this.buf(b)),
      temps: f.temps.map((b) => this.buf(b)),
      body: this.stmt(f.body),
    };
  }

  /** The uint32 buffer of twice the elements standing for a 64-bit one (the same name). */
  private buf(b: Buffer): Buffer {
    if (!isWide(b.dtype)) return b;
    let y = this.bufs.get(b);
    if (!y) {
      y = { ...b, dtype: 'uint32', size: b.size * 2, shape: [b.size * 2] };
      this.bufs.set(b, y);
    }
    return y;
  }

  // ---- statements

  private stmt(s: Stmt): Stmt {
    switch (s.k) {
      case 'for':
      case 'seq':
      case 'barrier':
        return mapChildren(s, (c) => this.stmt(c));
      case 'alloc': {
        const body = this.stmt(s.body);
        const buf = this.buf(s.buf);
        return buf === s.buf && body === s.body ? s : { ...s, buf, body };
      }
      default:
        break;
    }
    const wideSelf =
      (s.k === 'store' && isWide(s.buf.dtype)) || ((s.k === 'decl' || s.k === 'assign') && isWide(s.v.dtype));
    if (!wideSelf && !ownExprs(s).some(hasWide)) return mapChildren(s, (c) => this.stmt(c));
    this.block = new Block(this.namer);
    this.memo = new Map();
    this.divs = new Map();
    const B = this.block;
    switch (s.k) {
      case 'store': {
        const index = this.scalar(s.index, false);
        if (!isWide(s.buf.dtype)) return B.finish([{ ...s, index, value: this.scalar(s.value, false) }]);
        const buf = this.buf(s.buf);
        const v = this.wide(s.value, false);
        const i = B.let(index, 'ix');
        const i0 = mul(i, I(2));
        // the high word computed before the low word's store when it reads the buffer stored to
        let hi = v.hi,
          reads = false;
        visitExpr(hi, (x) => {
          if (x.k === 'load' && x.buf === buf) reads = true;
        });
        if (reads) hi = B.let(hi, 'hi', true);
        return B.finish([
          { k: 'store', buf, index: i0, value: v.lo },
          { k: 'store', buf, index: add(i0, I(1)), value: hi },
        ]);
      }
      case 'if':
        return B.finish([
          { ...s, cond: this.scalar(s.cond, false), then: this.stmt(s.then), else: s.else && this.stmt(s.else) },
        ]);
      case 'decl': {
        if (!isWide(s.v.dtype)) return B.finish([{ ...s, init: this.scalar(s.init, false), body: this.stmt(s.body) }]);
        const v = this.wide(s.init, false);
        const lo = B.mut(v.lo, `${s.v.name}_lo`, true),
          hi = B.mut(v.hi, `${s.v.name}_hi`, true);
        this.vars.set(s.v, { lo, hi });
        return B.finish([this.stmt(s.body)]);
      }
      case 'assign': {
        if (!isWide(s.v.dtype)) return B.finish([{ ...s, value: this.scalar(s.value, false) }]);
        const w = this.varPair(s.v);
        const v = this.wide(s.value, false);
        // the high word computed before the low word is assigned when it reads it
        const hi = mentionsVar(v.hi, w.lo) ? B.let(v.hi, 'hi', true) : v.hi;
        return B.finish([assign(w.lo, v.lo), assign(w.hi, hi)]);
      }
      default:
        return s;
    }
  }

  private varPair(v: Var): { lo: Var; hi: Var } {
    const w = this.vars.get(v);
    if (!w) throw new KilnError('E_INTERNAL', `split-int64: ${v.dtype} variable ${v.name} used outside its decl`);
    return w;
  }

  /** `e` bound to a let before the statement, unless it sits in a select arm and may not be evaluated needlessly. */
  private bind(e: Expr, guarded: boolean, hint = 'w'): Expr {
    if (guarded && !canSpeculate(e, this.caps)) return e;
    return this.block.let(e, hint);
  }
  private bindPair(p: Pair, g: boolean, hint = 'w'): Pair {
    return pairOf(this.bind(p.lo, g, `${hint}lo`), this.bind(p.hi, g, `${hint}hi`));
  }

  /** A loop placed before the statement: refused in a select arm where the target may not evaluate it needlessly. */
  private loopAllowed(guarded: boolean, what: string): void {
    if (guarded && this.caps.speculation !== 'any')
      throw new KilnError(
        'E_UNSUPPORTED',
        `split-int64: 64-bit ${what} in a select arm on a target that cannot speculate it`,
      );
  }

  // ---- expressions

  /** A non-64-bit expression with its 64-bit parts expanded (the same node when it has none). */
  private scalar(e: Expr, g: boolean): Expr {
    if (!hasWide(e)) return e;
    switch (e.k) {
      case 'load':
        return { ...e, idx: e.idx.map((x) => this.scalar(x, g)) };
      case 'cast':
        if (isWide(e.a.dtype)) return this.fromWide(this.wide(e.a, g), e.a.dtype, e.dtype, g);
        return cast(e.dtype, this.scalar(e.a, g));
      case 'un':
        if (e.op === 'isnan') return FALSE;
        return { ...e, a: this.scalar(e.a, g) };
      case 'bin':
        if (isWide(e.a.dtype)) return this.compare(e.op, this.wide(e.a, g), this.wide(e.b, g), e.a.dtype, g);
        return { ...e, a: this.scalar(e.a, g), b: this.scalar(e.b, g) };
      case 'select':
        return { ...e, c: this.scalar(e.c, g), a: this.scalar(e.a, true), b: this.scalar(e.b, true) };
      default:
        throw new KilnError('E_INTERNAL', `split-int64: ${e.k} left in loop IR`);
    }
  }

  /** The words of a 64-bit expression. */
  private wide(e: Expr, g: boolean): Pair {
    let p = this.memo.get(e);
    if (!p) {
      p = this.expand(e, g);
      this.memo.set(e, p);
    }
    return p;
  }

  private expand(e: Expr, g: boolean): Pair {
    const t = e.dtype,
      signed = t === 'int64';
    switch (e.k) {
      case 'const':
        return constPair(BigInt(e.value));
      case 'var':
        return this.varPair(e);
      case 'load': {
        const buf = this.buf(e.buf as Buffer);
        const i = this.bind(this.scalar(e.idx[0], g), g, 'ix');
        const i0 = mul(i, I(2));
        return pairOf(
          { k: 'load', buf, idx: [i0], dtype: 'uint32' },
          { k: 'load', buf, idx: [add(i0, I(1))], dtype: 'uint32' },
        );
      }
      case 'cast':
        if (isWide(e.a.dtype)) return this.wide(e.a, g); // int64 <-> uint64: the same bits
        return this.toWide(this.scalar(e.a, g), e.a.dtype, signed, g);
      case 'select': {
        const c = this.bind(this.scalar(e.c, g), g, 'c');
        const a = this.wide(e.a, true),
          b = this.wide(e.b, true);
        return pairOf(select(c, a.lo, b.lo), select(c, a.hi, b.hi));
      }
      case 'un': {
        const a = this.wide(e.a, g);
        switch (e.op) {
          case 'neg':
            return this.neg(a, g);
          case 'abs':
            return signed ? this.abs(a, g) : a;
          case 'bitnot':
            return pairOf(bitnot(a.lo), bitnot(a.hi));
          case 'sign': {
            const x = this.bindPair(a, g);
            const nz = asU(ne(or(x.lo, x.hi), U(0)));
            if (!signed) return pairOf(nz, U(0));
            const n = this.bind(negative(x.hi), g, 'neg');
            return pairOf(select(n, U(ONES), nz), select(n, U(ONES), U(0)));
          }
          case 'sqrt':
          case 'floor':
          case 'ceil':
          case 'round':
            return a;
          default:
            throw new KilnError('E_UNSUPPORTED', `wgsl: unary ${e.op} on ${t}`);
        }
      }
      case 'bin': {
        const a = this.wide(e.a, g);
        switch (e.op) {
          case 'shl':
          case 'shr':
            return this.shift(e.op, a, this.amount(e.b, g), signed, g);
          case 'pow':
            return this.pow(a, this.operand(e.b, t, g), signed, g);
          default:
            break;
        }
        const b = this.wide(e.b, g);
        switch (e.op) {
          case 'add':
            return this.add(a, b, g);
          case 'sub':
            return this.sub(a, b, g);
          case 'mul':
            return this.mul(a, b, g);
          case 'and':
          case 'or':
          case 'xor':
            return pairOf(bin(e.op, a.lo, b.lo), bin(e.op, a.hi, b.hi));
          case 'min':
          case 'max': {
            const x = this.bindPair(a, g, 'a'),
              y = this.bindPair(b, g, 'b');
            const c = this.bind(e.op === 'min' ? this.lt(x, y, signed, g) : this.lt(y, x, signed, g), g, 'c');
            return pairOf(select(c, x.lo, y.lo), select(c, x.hi, y.hi));
          }
          case 'floordiv':
          case 'floormod':
            if (signed)
              throw new KilnError(
                'E_INTERNAL',
                'split-int64: int64 floordiv/floormod left for the pass (legalize-floordiv lowers it: list int64 in floorDivLowered)',
              );
            return this.divmod(a, b, false, g)[e.op === 'floordiv' ? 'q' : 'r'];
          case 'div':
          case 'mod':
            return this.divmod(a, b, signed, g)[e.op === 'div' ? 'q' : 'r'];
          default:
            throw new KilnError('E_UNSUPPORTED', `wgsl: ${e.op} on ${t}`);
        }
      }
      default:
        throw new KilnError('E_INTERNAL', `split-int64: ${e.k} left in loop IR`);
    }
  }

  /** A shift amount as a uint32 (its low word when 64-bit). */
  private amount(b: Expr, g: boolean): Expr {
    return isWide(b.dtype) ? this.wide(b, g).lo : asU(this.scalar(b, g));
  }
  /** An operand of dtype `t` (64-bit) from an expression that may be narrower. */
  private operand(b: Expr, t: DType, g: boolean): Pair {
    return isWide(b.dtype) ? this.wide(b, g) : this.toWide(this.scalar(b, g), b.dtype, t === 'int64', g);
  }

  // ---- arithmetic (the helpers of the WGSL emitter before, word for word)

  private add(a: Pair, b: Pair, g: boolean): Pair {
    const al = this.bind(a.lo, g, 'al');
    const lo = this.bind(add(al, b.lo), g, 'lo');
    return pairOf(lo, add(add(a.hi, b.hi), asU(lt(lo, al))));
  }

  private sub(a: Pair, b: Pair, g: boolean): Pair {
    const al = this.bind(a.lo, g, 'al'),
      bl = this.bind(b.lo, g, 'bl');
    return pairOf(sub(al, bl), sub(sub(a.hi, b.hi), asU(lt(al, bl))));
  }

  private neg(a: Pair, g: boolean): Pair {
    return this.sub(constPair(0n), a, g);
  }

  private abs(a: Pair, g: boolean): Pair {
    const x = this.bindPair(a, g);
    const n = this.bind(negative(x.hi), g, 'neg');
    const m = this.neg(x, g);
    return pairOf(select(n, m.lo, x.lo), select(n, m.hi, x.hi));
  }

  /** The high word of the 64-bit product of two uint32 words, from 16-bit halves. */
  private mulHi(x: Expr, y: Expr, g: boolean): Expr {
    const k = (e: Expr, h: string) => this.bind(e, g, h);
    const M = U(0xffff),
      S = U(16);
    const a0 = k(and(x, M), 'a0'),
      a1 = k(shr(x, S), 'a1');
    // a square (x * x in pow) shares its halves and its two middle products
    const b0 = x === y ? a0 : k(and(y, M), 'b0'),
      b1 = x === y ? a1 : k(shr(y, S), 'b1');
    const p00 = k(mul(a0, b0), 'p00'),
      p01 = k(mul(a0, b1), 'p01'),
      p10 = x === y ? p01 : k(mul(a1, b0), 'p10'),
      p11 = mul(a1, b1);
    const mid = k(add(add(shr(p00, S), and(p01, M)), and(p10, M)), 'mid');
    return add(add(add(p11, shr(p01, S)), shr(p10, S)), shr(mid, S));
  }

  private mul(a: Pair, b: Pair, g: boolean): Pair {
    const al = this.bind(a.lo, g, 'al'),
      bl = this.bind(b.lo, g, 'bl');
    return pairOf(mul(al, bl), add(add(this.mulHi(al, bl, g), mul(al, b.hi)), mul(a.hi, bl)));
  }

  /** a < b (signed: on the high words as int32). */
  private lt(a: Pair, b: Pair, signed: boolean, g: boolean): Expr {
    const ah = this.bind(a.hi, g, 'ah'),
      bh = this.bind(b.hi, g, 'bh');
    const high = signed ? lt(asI(ah), asI(bh)) : lt(ah, bh);
    return or(high, and(eq(ah, bh), lt(a.lo, b.lo)));
  }

  private compare(op: BinOp, a: Pair, b: Pair, t: DType, g: boolean): Expr {
    const signed = t === 'int64';
    switch (op) {
      case 'eq':
        return and(eq(a.lo, b.lo), eq(a.hi, b.hi));
      case 'ne':
        return or(ne(a.lo, b.lo), ne(a.hi, b.hi));
      case 'lt':
        return this.lt(a, b, signed, g);
      case 'gt':
        return this.lt(b, a, signed, g);
      case 'le':
        return not(this.lt(b, a, signed, g));
      case 'ge':
        return not(this.lt(a, b, signed, g));
      default:
        throw new KilnError('E_UNSUPPORTED', `wgsl: ${op} on ${t}`);
    }
  }

  /** Shifts by `amount` mod 64 (i64.shl / shr_s / shr_u). */
  private shift(op: 'shl' | 'shr', a: Pair, amount: Expr, signed: boolean, g: boolean): Pair {
    const n = and(amount, U(63));
    const arith = (x: Expr, s: Expr) => asU(shr(asI(x), asI(s))); // arithmetic shift of a word
    if (isC(n)) {
      const c = val(n);
      if (c === 0) return a;
      if (c >= 32) {
        const s = U(c - 32);
        if (op === 'shl') return pairOf(U(0), shl(a.lo, s));
        if (!signed) return pairOf(shr(a.hi, s), U(0));
        const h = this.bind(a.hi, g, 'h');
        return pairOf(arith(h, s), arith(h, U(31)));
      }
      const s = U(c),
        r = U(32 - c);
      if (op === 'shl') {
        const l = this.bind(a.lo, g, 'l');
        return pairOf(shl(l, s), or(shl(a.hi, s), shr(l, r)));
      }
      const h = this.bind(a.hi, g, 'h');
      return pairOf(or(shr(a.lo, s), shl(h, r)), signed ? arith(h, s) : shr(h, s));
    }
    // a runtime amount: every shift by 0..31 (m = n & 31; (x >> 1) >> (31 - m) is x >> (32 - m), 0 for m = 0)
    const nn = this.bind(n, g, 'n');
    const big = this.bind(ge(nn, U(32)), g, 'big');
    const m = this.bind(and(nn, U(31)), g, 'm'),
      r = this.bind(sub(U(31), m), g, 'r');
    if (op === 'shl') {
      const l = this.bind(a.lo, g, 'l');
      const ls = this.bind(shl(l, m), g, 'ls');
      return pairOf(select(big, U(0), ls), select(big, ls, or(shl(a.hi, m), shr(shr(l, U(1)), r))));
    }
    const h = this.bind(a.hi, g, 'h');
    const hs = this.bind(signed ? arith(h, m) : shr(h, m), g, 'hs');
    const lo = or(shr(a.lo, m), shl(shl(h, U(1)), r));
    return pairOf(select(big, hs, lo), select(big, signed ? arith(h, U(31)) : U(0), hs));
  }

  /**
   * Unsigned quotient and remainder of `n` by `d` into four mutable words before the statement: division by zero
   * gives all ones and the dividend, two one-word operands one u32 division, else restoring division bit by bit.
   * Signed: on the magnitudes (|INT64_MIN| = 2^63 is exact unsigned), the quotient truncated toward zero, the
   * remainder with the dividend's sign. One computation per operands in a statement (div and mod share it).
   */
  private divmod(a: Pair, b: Pair, signed: boolean, g: boolean): { q: Pair; r: Pair } {
    this.loopAllowed(g, 'division');
    const x = this.bindPair(a, g, 'n'),
      y = this.bindPair(b, g, 'd');
    const key = `${signed}:${[x.lo, x.hi, y.lo, y.hi].map((e) => this.id(e)).join(',')}`;
    let qr = this.divs.get(key);
    if (qr) return qr;
    if (!signed) qr = this.udivmod(x, y);
    else {
      const u = this.udivmod(this.bindPair(this.abs(x, g), g, 'n'), this.bindPair(this.abs(y, g), g, 'd'));
      const qn = this.bind(ne(shr(xor(x.hi, y.hi), U(31)), U(0)), g, 'qn'),
        rn = this.bind(negative(x.hi), g, 'rn');
      const nq = this.neg(u.q, g),
        nr = this.neg(u.r, g);
      qr = {
        q: pairOf(select(qn, nq.lo, u.q.lo), select(qn, nq.hi, u.q.hi)),
        r: pairOf(select(rn, nr.lo, u.r.lo), select(rn, nr.hi, u.r.hi)),
      };
    }
    this.divs.set(key, qr);
    return qr;
  }

  private id(e: Expr): string {
    if (e.k === 'const') return `c${String(e.value)}`;
    let n = this.ids.get(e);
    if (n === undefined) this.ids.set(e, (n = this.ids.size));
    return `#${n}`;
  }

  private udivmod(n: Pair, d: Pair): { q: Pair; r: Pair } {
    const B = this.block;
    const ql = B.mut(U(0), 'ql'),
      qh = B.mut(U(0), 'qh'),
      rl = B.mut(U(0), 'rl'),
      rh = B.mut(U(0), 'rh');
    const i = this.namer.fresh('bit', 'int32');
    const s = this.namer.fresh('s', 'uint32'),
      w = this.namer.fresh('w', 'bool'),
      out = this.namer.fresh('out', 'uint32');
    const sh = and(s, U(31));
    const rLtD = or(lt(rh, d.hi), and(eq(rh, d.hi), lt(rl, d.lo)));
    const body: Stmt = {
      k: 'decl',
      v: s,
      init: asU(sub(I(63), i)),
      body: {
        k: 'decl',
        v: w,
        init: ge(s, U(32)),
        body: {
          k: 'decl',
          v: out,
          init: shr(rh, U(31)), // the bit shifted out of r: r >= d then, whatever d is
          body: seq([
            assign(rh, or(shl(rh, U(1)), shr(rl, U(31)))),
            assign(rl, or(shl(rl, U(1)), and(shr(select(w, n.hi, n.lo), sh), U(1)))),
            ifStmt(
              or(ne(out, U(0)), not(rLtD)),
              seq([
                assign(rh, sub(sub(rh, d.hi), asU(lt(rl, d.lo)))),
                assign(rl, sub(rl, d.lo)),
                assign(qh, or(qh, select(w, shl(U(1), sh), U(0)))),
                assign(ql, or(ql, select(w, U(0), shl(U(1), sh)))),
              ]),
            ),
          ]),
        },
      },
    };
    B.stmt(
      ifStmt(
        eq(or(d.lo, d.hi), U(0)),
        seq([assign(ql, U(ONES)), assign(qh, U(ONES)), assign(rl, n.lo), assign(rh, n.hi)]),
        ifStmt(
          eq(or(n.hi, d.hi), U(0)),
          seq([assign(ql, bin('div', n.lo, d.lo)), assign(rl, bin('mod', n.lo, d.lo))]),
          { k: 'for', v: i, extent: 64, kind: 'serial', body },
        ),
      ),
    );
    return { q: pairOf(ql, qh), r: pairOf(rl, rh) };
  }

  /**
   * Integer powers by squaring (a loop over the exponent's 64 bits before the statement); a negative int64
   * exponent gives trunc(1 / a^|b|): 1 for a = 1, +-1 for a = -1, else 0.
   */
  private pow(a: Pair, b: Pair, signed: boolean, g: boolean): Pair {
    this.loopAllowed(g, 'pow');
    const B = this.block;
    const x0 = this.bindPair(a, g, 'x'),
      e0 = this.bindPair(b, g, 'e');
    const bneg = signed ? this.bind(negative(e0.hi), g, 'eneg') : FALSE;
    const rl = B.mut(U(1), 'pl'),
      rh = B.mut(U(0), 'ph'),
      xl = B.mut(x0.lo, 'xl'),
      xh = B.mut(x0.hi, 'xh'),
      el = B.mut(select(bneg, U(0), e0.lo), 'el'),
      eh = B.mut(select(bneg, U(0), e0.hi), 'eh');
    // r * x and x * x in the loop body, their words in lets before they are assigned
    const inner = new Block(this.namer);
    const saved = this.block;
    this.block = inner;
    const rx = this.mul(pairOf(rl, rh), pairOf(xl, xh), false);
    const rxl = inner.let(rx.lo, 'ml'),
      rxh = inner.let(rx.hi, 'mh');
    const multiply = inner.finish([ifStmt(ne(and(el, U(1)), U(0)), seq([assign(rl, rxl), assign(rh, rxh)]))]);
    const square = new Block(this.namer);
    this.block = square;
    const xx = this.mul(pairOf(xl, xh), pairOf(xl, xh), false);
    const xxl = square.let(xx.lo, 'sl'),
      xxh = square.let(xx.hi, 'sh');
    const squared = square.finish([
      assign(xl, xxl),
      assign(xh, xxh),
      assign(el, or(shr(el, U(1)), shl(eh, U(31)))),
      assign(eh, shr(eh, U(1))),
    ]);
    this.block = saved;
    const i = this.namer.fresh('bit', 'int32');
    B.stmt({
      k: 'for',
      v: i,
      extent: 64,
      kind: 'serial',
      body: ifStmt(ne(or(el, eh), U(0)), seq([multiply, squared])),
    });
    if (!signed) return pairOf(rl, rh);
    const one = this.bind(and(eq(x0.lo, U(1)), eq(x0.hi, U(0))), g, 'one'),
      m1 = this.bind(and(eq(x0.lo, U(ONES)), eq(x0.hi, U(ONES))), g, 'm1');
    const odd = ne(and(e0.lo, U(1)), U(0));
    const negLo = select(one, U(1), select(m1, select(odd, U(ONES), U(1)), U(0))),
      negHi = select(one, U(0), select(m1, select(odd, U(ONES), U(0)), U(0)));
    return pairOf(select(bneg, negLo, rl), select(bneg, negHi, rh));
  }

  // ---- conversions

  /** A 32-bit int, bool or float32 `x` (of dtype `from`) as a 64-bit value (signed: int64). */
  private toWide(x: Expr, from: DType, signed: boolean, g: boolean): Pair {
    if (from === 'bool') return pairOf(asU(x), U(0));
    if (from === 'float32') return signed ? this.f32ToI64(x, g) : this.f32ToU64(x, g);
    if (isFloat(from)) throw new KilnError('E_UNSUPPORTED', `wgsl: ${from} to 64-bit integer`);
    if (isUnsigned(from)) return pairOf(asU(x), U(0));
    // sign-extended, also into uint64 (i64.extend_s)
    const v = this.bind(asI(x), g, 'v');
    return pairOf(asU(v), asU(bin('shr', v, I(31))));
  }

  /** A 64-bit value as `to` (a 32-bit int takes the low word: i64.wrap). */
  private fromWide(p: Pair, from: DType, to: DType, g: boolean): Expr {
    if (to === 'bool') return ne(or(p.lo, p.hi), U(0));
    if (to === 'float32') return from === 'int64' ? this.i64ToF32(p, g) : this.u64ToF32(p, g);
    if (isFloat(to)) throw new KilnError('E_UNSUPPORTED', `wgsl: 64-bit integer to ${to}`);
    return cast(to, isUnsigned(to) ? p.lo : asI(p.lo));
  }

  /** Correctly rounded: the bits below the top 32 fold into a sticky bit under the float32 rounding position. */
  private u64ToF32(p: Pair, g: boolean): Expr {
    const k = (e: Expr, h: string) => this.bind(e, g, h);
    const lo = k(p.lo, 'lo'),
      hi = k(p.hi, 'hi');
    if (isC(hi, 0)) return cast('float32', lo);
    // s: the bit length of hi (1..32 when hi != 0), by halving
    let h: Expr = hi,
      s: Expr = U(1);
    for (const step of [16, 8, 4, 2, 1]) {
      const c = k(ge(h, U(2 ** step)), 'c');
      s = add(s, select(c, U(step), U(0)));
      if (step > 1) h = k(select(c, shr(h, U(step)), h), 'h');
    }
    const n = k(s, 's');
    const full = k(eq(n, U(32)), 'full');
    const up = and(sub(U(32), n), U(31)); // 32 - s, in 0..31 (not used when s = 32)
    const top = select(full, hi, or(shl(hi, up), shr(lo, and(n, U(31)))));
    const lost = select(full, lo, shl(lo, up));
    const mant = cast('float32', or(top, asU(ne(lost, U(0)))));
    const scale = select(full, F(4294967296), cast('float32', shl(U(1), and(n, U(31)))));
    return select(eq(hi, U(0)), cast('float32', lo), bin('mul', mant, scale));
  }

  private i64ToF32(p: Pair, g: boolean): Expr {
    const x = this.bindPair(p, g);
    const n = this.bind(negative(x.hi), g, 'neg');
    const m = this.neg(x, g);
    const f = this.bind(this.u64ToF32(pairOf(select(n, m.lo, x.lo), select(n, m.hi, x.hi)), g), g, 'f');
    return select(n, { k: 'un', op: 'neg', a: f, dtype: 'float32' }, f);
  }

  /** Saturating truncation (i64.trunc_sat_f32_s): NaN -> 0, out of range -> the nearest bound. */
  private f32ToI64(x0: Expr, g: boolean): Pair {
    if (isC(x0)) return constPair(truncSat(val(x0), true));
    const k = (e: Expr, h: string) => this.bind(e, g, h);
    const x = k(x0, 'x');
    const small = k(lt({ k: 'un', op: 'abs', a: x, dtype: 'float32' }, F(2147483648)), 'small');
    const v = k(cast('int32', x), 'v');
    const nan = k({ k: 'un', op: 'isnan', a: x, dtype: 'bool' }, 'nan'),
      over = k(ge(x, F(2 ** 63)), 'over'),
      under = k(bin('le', x, F(-(2 ** 63))), 'under');
    const hf = k(this.floorDiv2p32(x), 'hf');
    const bigLo = cast('uint32', bin('sub', x, bin('mul', hf, F(4294967296))));
    const lo = select(small, asU(v), select(nan, U(0), select(over, U(ONES), select(under, U(0), bigLo))));
    const hi = select(
      small,
      asU(bin('shr', v, I(31))),
      select(nan, U(0), select(over, U(0x7fffffff), select(under, U(0x80000000), asU(cast('int32', hf))))),
    );
    return pairOf(lo, hi);
  }

  /** Saturating truncation (i64.trunc_sat_f32_u): NaN and negatives -> 0, beyond 2^64 - 1 -> all ones. */
  private f32ToU64(x0: Expr, g: boolean): Pair {
    if (isC(x0)) return constPair(truncSat(val(x0), false));
    const k = (e: Expr, h: string) => this.bind(e, g, h);
    const x = k(x0, 'x');
    const pos = k(bin('gt', x, F(0)), 'pos'),
      small = k(lt(x, F(4294967296)), 'small'),
      over = k(ge(x, F(2 ** 64)), 'over');
    const hf = k(this.floorDiv2p32(x), 'hf');
    const lo = select(
      pos,
      select(
        small,
        cast('uint32', x),
        select(over, U(ONES), cast('uint32', bin('sub', x, bin('mul', hf, F(4294967296))))),
      ),
      U(0),
    );
    const hi = select(pos, select(small, U(0), select(over, U(ONES), cast('uint32', hf))), U(0));
    return pairOf(lo, hi);
  }

  private floorDiv2p32(x: Expr): Expr {
    return { k: 'un', op: 'floor', a: bin('div', x, F(4294967296)), dtype: 'float32' };
  }
}

const bitnot = (x: Expr): Expr => (isC(x) ? U(~val(x)) : { k: 'un', op: 'bitnot', a: x, dtype: x.dtype });

function mentionsVar(e: Expr, v: Var): boolean {
  let found = false;
  visitExpr(e, (x) => {
    if (x === v) found = true;
  });
  return found;
}

/** i64.trunc_sat_f32_s / _u of a constant. */
function truncSat(v: number, signed: boolean): bigint {
  if (Number.isNaN(v)) return 0n;
  const lo = signed ? -(2n ** 63n) : 0n,
    hi = signed ? 2n ** 63n - 1n : 2n ** 64n - 1n;
  if (!Number.isFinite(v)) return v > 0 ? hi : lo;
  const t = BigInt(Math.trunc(v));
  return t < lo ? lo : t > hi ? hi : t;
}
