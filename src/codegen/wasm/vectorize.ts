// SIMD128 for loops the schedule marks `vectorized`: a 4-wide float32 loop whose body is one store, with loads
// that are unit-stride (v128.load), stride 2 (two loads and a shuffle) or invariant (splat), selects whose lanes
// disagree blended with a lane mask (when their loads may run speculatively), and other loads gathered lane by
// lane. A store that is not unit-stride is written lane by lane; anything else returns undefined and the caller
// emits the scalar loop.
import binaryen from 'binaryen';
import type { Buffer, ForStmt } from '../../schedule/loop-ir.js';
import { type Expr, type Var, affineCoef, mentions, printExpr } from '../../tensor-expr/expr.js';
import { type Interval, bound, fixVar } from '../../tensor-expr/simplify.js';
import { BYTES } from '../../runtime/dtype.js';
import { SPECULATIVE_GUARD_BYTES } from '../../compiler/memory-plan.js';
import { INLINE_F32_MATH, type InlineMathFn, inlineF32Math } from './math-inline.js';

/** How a hoisted value is used: 's' scalar, 'v' 4 lanes of a lane-dependent value, 'p' a lane-invariant one splatted. */
export type HoistForm = 's' | 'v' | 'p';

/** What the vectorizer asks of the scalar emitter (codegen.ts's FunctionEmitter implements it); binaryen refs are numbers. */
export interface ScalarEmitter {
  readonly m: binaryen.Module;
  /** Emit relaxed-SIMD multiply-adds. */
  readonly relaxed: boolean;
  /** Local-scope buffers held in wasm locals (float32 ones as v128 registers of 4 lanes). */
  readonly localBufs: Map<Buffer, number[]>;
  /** Value ranges of the loop variables and index locals in scope. */
  readonly ranges: Map<Var, Interval>;
  /**
   * Inside a straight-line block of register-tile updates (no branch between them), vector values computed by one
   * update and reused by the later ones (a v128 local per key); undefined elsewhere.
   */
  tileValues: Map<string, number> | undefined;
  newLocal(type: number): number;
  addr(b: Buffer, index: number): number;
  address(b: Buffer, index: Expr): { ptr: number; offset: number };
  cached(e: Expr, form: HoistForm): number | undefined;
  store(b: Buffer, index: Expr, value: number): number;
  expr(e: Expr): number;
}

/** Stride of an index in v: 0 (invariant), 1 (unit), or undefined (other). */
function stride(idx: Expr, v: Var): 0 | 1 | undefined {
  const c = affineCoef(idx, v);
  return c === 0 || c === 1 ? c : undefined;
}

/**
 * A 4-lane value of `e` in lane variable `v` (lane l: v = l), or undefined when it is not float32.
 * Unit-stride loads become v128 loads, lane-invariant values splats, arithmetic f32x4 ops; a select whose
 * condition is the same for all lanes becomes a branch; anything else is computed lane by lane (a gather), with
 * each lane's conditional loads still guarded, so vectorizing never reads memory the scalar code would not.
 */
export function vectorizeExpr(em: ScalarEmitter, e: Expr, v: Var): number | undefined {
  const m = em.m;
  const at = (x: Expr, lane: number) => fixVar(x, v, lane);
  const lanes = (x: Expr): number => {
    let r = m.f32x4.splat(em.expr(at(x, 0)));
    for (let l = 1; l < 4; l++) r = m.f32x4.replace_lane(r, l, em.expr(at(x, l)));
    return r;
  };
  // a lane-invariant value in all 4 lanes: a float32 load as one broadcast load (the scalar load and f32x4.splat
  // cost a shuffle per use, which competes with the adds for a port on Intel cores)
  const splat = (e: Expr): number => {
    const hoisted = em.cached(e, 'p');
    if (hoisted !== undefined) return hoisted;
    if (
      e.k === 'load' &&
      e.dtype === 'float32' &&
      (e.buf as Buffer).scope !== 'local' &&
      em.cached(e, 's') === undefined
    ) {
      const { ptr, offset } = em.address(e.buf as Buffer, e.idx[0]);
      return m.v128.load32_splat(offset, 4, ptr);
    }
    return m.f32x4.splat(em.expr(e));
  };
  const vec = (e: Expr): number => {
    if (!mentions(e, v)) return splat(e);
    const hoisted = em.cached(e, 'v');
    if (hoisted !== undefined) return hoisted;
    switch (e.k) {
      case 'load': {
        const buf = e.buf as Buffer;
        if (affineCoef(e.idx[0], v) === 2 && buf.scope !== 'local' && buf.dtype === 'float32') {
          // every other element (a stride-2 window): two vector loads and one shuffle of their even lanes. The
          // second load reads one element past the last lane, within the memory guard.
          const a = em.newLocal(binaryen.i32);
          const lo = m.v128.load(0, 4, m.local.tee(a, em.addr(buf, em.expr(at(e.idx[0], 0))), binaryen.i32));
          const hi = m.v128.load(16, 4, m.local.get(a, binaryen.i32));
          return m.i8x16.shuffle(lo, hi, [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27]);
        }
        if (stride(e.idx[0], v) !== 1) return lanes(e);
        if (buf.scope === 'local') {
          const c = at(e.idx[0], 0);
          if (c.k !== 'const' || Number(c.value) % 4) return lanes(e);
          return m.local.get(em.localBufs.get(buf)![Number(c.value) >> 2], binaryen.v128);
        }
        const { ptr, offset } = em.address(buf, at(e.idx[0], 0));
        return m.v128.load(offset, 4, ptr);
      }
      case 'select': {
        if (!mentions(e.c, v)) return m.if(em.expr(e.c), vec(e.a), vec(e.b));
        // both arms computed for all lanes, then blended: only when every load in them stays within the memory
        // guard for every lane (a padded window's border), so that no lane reads what would trap
        const mask = laneMask(em, e.c, v);
        if (mask === undefined || !speculatable(em, e.a) || !speculatable(em, e.b)) return lanes(e);
        return m.v128.bitselect(vec(e.a), vec(e.b), mask);
      }
      case 'bin': {
        if (em.relaxed && e.op === 'add') {
          // a*b + c in one relaxed_madd (fused or not, as the engine chooses)
          const [p, c] =
            e.a.k === 'bin' && e.a.op === 'mul' ? [e.a, e.b] : e.b.k === 'bin' && e.b.op === 'mul' ? [e.b, e.a] : [];
          if (p && p.k === 'bin') return relaxedMadd(m, vec(p.a), vec(p.b), vec(c!));
        }
        if ((e.op === 'min' || e.op === 'max') && (e.a.k === 'const' || e.b.k === 'const')) {
          // a clamp to a constant (relu, clip): pmin/pmax are one x86 instruction where min/max take several
          // for NaN rules; with the variable first, pmin(NaN, c) and pmax(NaN, c) still return the NaN
          const [x, c] = e.b.k === 'const' ? [e.a, e.b] : [e.b, e.a];
          if (c.k === 'const' && !Number.isNaN(Number(c.value)))
            return (e.op === 'min' ? m.f32x4.pmin : m.f32x4.pmax)(vec(x), vec(c));
        }
        const op = (
          {
            add: m.f32x4.add,
            sub: m.f32x4.sub,
            mul: m.f32x4.mul,
            div: m.f32x4.div,
            min: m.f32x4.min,
            max: m.f32x4.max,
          } as Record<string, (a: number, b: number) => number>
        )[e.op];
        return op ? op(vec(e.a), vec(e.b)) : lanes(e);
      }
      case 'un': {
        if (INLINE_F32_MATH.has(e.op) && e.a.dtype === 'float32')
          return inlineF32Math(m, e.op as InlineMathFn, vec(e.a), true, (t) => em.newLocal(t));
        const op = (
          {
            neg: m.f32x4.neg,
            abs: m.f32x4.abs,
            sqrt: m.f32x4.sqrt,
            floor: m.f32x4.floor,
            ceil: m.f32x4.ceil,
            round: m.f32x4.nearest,
          } as Record<string, (a: number) => number>
        )[e.op];
        return op ? op(vec(e.a)) : lanes(e);
      }
      case 'cast': {
        // an integer accumulator converted (the requantizing epilogue of an integer kernel)
        const i = e.a.dtype === 'int32' ? vectorizeInt(em, e.a, v) : undefined;
        return i === undefined ? lanes(e) : m.f32x4.convert_i32x4_s(i);
      }
      default:
        return lanes(e);
    }
  };
  return e.dtype === 'float32' ? vec(e) : undefined;
}

/** Whether evaluating `e` for any value of the variables in scope reads only memory inside the guard zone. */
function speculatable(em: ScalarEmitter, e: Expr): boolean {
  switch (e.k) {
    case 'const':
    case 'var':
      return true;
    case 'load': {
      const buf = e.buf as Buffer;
      if (buf.scope === 'local') return false;
      const r = bound(e.idx[0], em.ranges);
      const slack = Math.floor(SPECULATIVE_GUARD_BYTES / BYTES[buf.dtype]) - 4;
      return !!r && r.lo >= -slack && r.hi < buf.size + slack && speculatable(em, e.idx[0]);
    }
    case 'bin':
      return !['div', 'mod', 'floordiv', 'floormod'].includes(e.op) && speculatable(em, e.a) && speculatable(em, e.b);
    case 'un':
    case 'cast':
      return speculatable(em, e.a);
    case 'select':
      return speculatable(em, e.c) && speculatable(em, e.a) && speculatable(em, e.b);
    case 'reduce':
      return false;
  }
}

const INT_CMP = { lt: 'lt_s', le: 'le_s', gt: 'gt_s', ge: 'ge_s', eq: 'eq', ne: 'ne' } as const;
const F32_CMP = { lt: 'lt', le: 'le', gt: 'gt', ge: 'ge', eq: 'eq', ne: 'ne' } as const;

/** A boolean in lane variable `v` as a v128 lane mask (all ones where true), or undefined. */
function laneMask(em: ScalarEmitter, c: Expr, v: Var): number | undefined {
  const m = em.m;
  if (!mentions(c, v)) return m.i32x4.splat(m.i32.sub(m.i32.const(0), em.expr(c)));
  if (c.k !== 'bin') return undefined;
  if (c.op === 'and' || c.op === 'or') {
    const a = laneMask(em, c.a, v),
      b = laneMask(em, c.b, v);
    if (a === undefined || b === undefined) return undefined;
    return c.op === 'and' ? m.v128.and(a, b) : m.v128.or(a, b);
  }
  if (c.a.dtype === 'int32' && c.op in INT_CMP) {
    const a = laneInt(em, c.a, v),
      b = laneInt(em, c.b, v);
    if (a === undefined || b === undefined) return undefined;
    return (m.i32x4 as unknown as Record<string, (x: number, y: number) => number>)[
      INT_CMP[c.op as keyof typeof INT_CMP]
    ](a, b);
  }
  if (c.a.dtype === 'float32' && c.op in F32_CMP) {
    const a = vectorizeExpr(em, c.a, v),
      b = vectorizeExpr(em, c.b, v);
    if (a === undefined || b === undefined) return undefined;
    return (m.f32x4 as unknown as Record<string, (x: number, y: number) => number>)[
      F32_CMP[c.op as keyof typeof F32_CMP]
    ](a, b);
  }
  return undefined;
}

/** An int32 index expression in lane variable `v` as an i32x4 (lane l: v = l), or undefined. */
function laneInt(em: ScalarEmitter, e: Expr, v: Var): number | undefined {
  const m = em.m;
  if (!mentions(e, v)) return m.i32x4.splat(em.expr(e));
  if (e === v) return m.v128.const([0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
  if (e.k !== 'bin' || !['add', 'sub', 'mul'].includes(e.op)) return undefined;
  const a = laneInt(em, e.a, v),
    b = laneInt(em, e.b, v);
  if (a === undefined || b === undefined) return undefined;
  return e.op === 'add' ? m.i32x4.add(a, b) : e.op === 'sub' ? m.i32x4.sub(a, b) : m.i32x4.mul(a, b);
}

export function vectorizeLoop(em: ScalarEmitter, s: ForStmt): number | undefined {
  // a guard that is the same for every lane (a tile row past the end of its axis) wraps the vector code
  if (s.extent === 4 && s.body.k === 'if' && !s.body.else && !mentions(s.body.cond, s.v)) {
    // (values computed under the guard may not be there for later updates)
    const shared = em.tileValues;
    em.tileValues = undefined;
    const inner = vectorizeLoop(em, { ...s, body: s.body.then });
    em.tileValues = shared;
    return inner === undefined ? undefined : em.m.if(em.expr(s.body.cond), inner);
  }
  if (s.extent === 4 && s.body.k === 'store' && s.body.buf.dtype === 'int32') return vectorizeIntLoop(em, s);
  if (s.extent === 4 && s.body.k === 'store' && BYTE_TYPES.has(s.body.buf.dtype)) return vectorizeByteStore(em, s);
  if (s.extent !== 4 || s.body.k !== 'store' || s.body.buf.dtype !== 'float32') return undefined;
  const st = s.body,
    v = s.v,
    m = em.m;
  const base = (idx: Expr) => fixVar(idx, v, 0);
  if (stride(st.index, v) !== 1) {
    // strided global store (a tile written back along a non-contiguous axis): vector math, 4 scalar stores
    if (st.buf.scope === 'local') return undefined;
    const value = vectorizeExpr(em, st.value, v);
    if (value === undefined) return undefined;
    const tmp = em.newLocal(binaryen.v128);
    return m.block(
      null,
      [
        m.local.set(tmp, value),
        ...[0, 1, 2, 3].map((l) =>
          em.store(st.buf, fixVar(st.index, v, l), m.f32x4.extract_lane(m.local.get(tmp, binaryen.v128), l)),
        ),
      ],
      binaryen.none,
    );
  }
  let slot: number | undefined;
  if (st.buf.scope === 'local') {
    const c = base(st.index);
    if (c.k !== 'const' || Number(c.value) % 4) return undefined;
    slot = em.localBufs.get(st.buf)![Number(c.value) >> 2];
  }
  const value = vectorizeExpr(em, st.value, v);
  if (value === undefined) return undefined;
  if (slot !== undefined) return m.local.set(slot, value);
  const { ptr, offset } = em.address(st.buf, base(st.index));
  return m.v128.store(offset, 4, ptr, value);
}

const Bx = binaryen as unknown as {
  _BinaryenSIMDTernary(mod: number, op: number, a: number, b: number, c: number): number;
  RelaxedMaddVecF32x4: number;
};
/** f32x4.relaxed_madd(a, b, c) = a*b + c; binaryen.js has no wrapper for it, so call its C API. */
function relaxedMadd(m: binaryen.Module, a: number, b: number, c: number): number {
  return Bx._BinaryenSIMDTernary(m.ptr, Bx.RelaxedMaddVecF32x4, a, b, c);
}

/**
 * A 4-lane int32 store: an integer kernel's accumulator tile (tensor-expr/ops/quantized.ts) kept in v128 locals,
 * its update a sum of pair products computed by i32x4.dot_i16x8_s (integerTile), or an int32 store with unit stride.
 */
function vectorizeIntLoop(em: ScalarEmitter, s: ForStmt): number | undefined {
  const st = s.body as Extract<ForStmt['body'], { k: 'store' }>,
    v = s.v,
    m = em.m;
  if (stride(st.index, v) !== 1) return undefined;
  const base = fixVar(st.index, v, 0);
  let slot: number | undefined;
  if (st.buf.scope === 'local') {
    if (base.k !== 'const' || Number(base.value) % 4) return undefined;
    slot = em.localBufs.get(st.buf)![Number(base.value) >> 2];
  }
  const value = vectorizeInt(em, st.value, v);
  if (value === undefined) return undefined;
  if (slot !== undefined) return m.local.set(slot, value);
  const { ptr, offset } = em.address(st.buf, base);
  return m.v128.store(offset, 4, ptr, value);
}

/** An index as base + constant (the constant terms added at its top). */
function constOffset(e: Expr): [Expr, number] {
  if (e.k === 'bin' && e.op === 'add') {
    if (e.b.k === 'const') {
      const [b, c] = constOffset(e.a);
      return [b, c + Number(e.b.value)];
    }
    if (e.a.k === 'const') {
      const [b, c] = constOffset(e.b);
      return [b, c + Number(e.a.value)];
    }
  }
  return [e, 0];
}

/** A load of an 8- or 16-bit integer weight widened to int32, its index advancing by 2 per lane. */
function pairedWeight(e: Expr, v: Var): (Expr & { k: 'load' }) | undefined {
  if (e.k !== 'cast' || e.dtype !== 'int32' || e.a.k !== 'load') return undefined;
  const l = e.a,
    buf = l.buf as Buffer;
  if (buf.scope === 'local' || (buf.dtype !== 'int8' && buf.dtype !== 'int16')) return undefined;
  return affineCoef(l.idx[0], v) === 2 ? l : undefined;
}

/**
 * x0 * w0 + x1 * w1 with x0, x1 the same for all lanes (an activation pair, each within int16) and w0, w1 weights
 * adjacent in memory for each lane (lane l reads elements 2l and 2l + 1): one i32x4.dot_i16x8_s of the splatted pair
 * and the 8 weights widened to int16. Undefined when `e` is not of that form.
 */
function pairDot(em: ScalarEmitter, e: Expr, v: Var): number | undefined {
  if (e.k !== 'bin' || e.op !== 'add' || e.a.k !== 'bin' || e.a.op !== 'mul' || e.b.k !== 'bin' || e.b.op !== 'mul')
    return undefined;
  const term = (p: Expr & { k: 'bin' }) => {
    const w = pairedWeight(p.b, v) ?? pairedWeight(p.a, v);
    const x = w && (pairedWeight(p.b, v) ? p.a : p.b);
    return w && x && !mentions(x, v) ? { w, x } : undefined;
  };
  const t0 = term(e.a),
    t1 = term(e.b);
  if (!t0 || !t1 || t0.w.buf !== t1.w.buf) return undefined;
  const i0 = fixVar(t0.w.idx[0], v, 0),
    i1 = fixVar(t1.w.idx[0], v, 0);
  const [b0, c0] = constOffset(i0),
    [b1, c1] = constOffset(i1);
  if (c1 - c0 !== 1 || printExpr(b0) !== printExpr(b1)) return undefined;
  const m = em.m;
  // the activation pair, built once per tile step: every vector of the tile's row uses it
  const key = `pair|${printExpr(t0.x)}|${printExpr(t1.x)}`;
  const shared = em.tileValues?.get(key);
  let pair: number;
  if (shared !== undefined) pair = m.local.get(shared, binaryen.v128);
  else {
    const lo = m.i32.and(em.expr(t0.x), m.i32.const(0xffff));
    pair = m.i32x4.splat(m.i32.or(lo, m.i32.shl(em.expr(t1.x), m.i32.const(16))));
    if (em.tileValues) {
      const local = em.newLocal(binaryen.v128);
      em.tileValues.set(key, local);
      pair = m.local.tee(local, pair, binaryen.v128);
    }
  }
  const buf = t0.w.buf as Buffer;
  const { ptr, offset } = em.address(buf, i0);
  const w = buf.dtype === 'int8' ? m.v128.load8x8_s(offset, 1, ptr) : m.v128.load(offset, 2, ptr);
  return m.i32x4.dot_i16x8_s(pair, w);
}

/** A 4-lane int32 value of `e` in lane variable `v`: dot pairs, i32x4 arithmetic, splats, else lane by lane. */
function vectorizeInt(em: ScalarEmitter, e: Expr, v: Var): number | undefined {
  if (e.dtype !== 'int32') return undefined;
  const m = em.m;
  const lanes = (x: Expr): number => {
    let r = m.i32x4.splat(em.expr(fixVar(x, v, 0)));
    for (let l = 1; l < 4; l++) r = m.i32x4.replace_lane(r, l, em.expr(fixVar(x, v, l)));
    return r;
  };
  const vec = (x: Expr): number => {
    if (!mentions(x, v)) return m.i32x4.splat(em.expr(x));
    if (x.k === 'load' && stride(x.idx[0], v) === 1 && (x.buf as Buffer).dtype === 'int32') {
      const buf = x.buf as Buffer,
        c = fixVar(x.idx[0], v, 0);
      if (buf.scope === 'local') {
        if (c.k !== 'const' || Number(c.value) % 4) return lanes(x);
        return m.local.get(em.localBufs.get(buf)![Number(c.value) >> 2], binaryen.v128);
      }
      const { ptr, offset } = em.address(buf, c);
      return m.v128.load(offset, 4, ptr);
    }
    // (legalized, an unsigned byte widens through uint32: int32(uint32(x)))
    const widened = x.k === 'cast' ? (x.a.k === 'cast' && BYTES[x.a.dtype] === 4 ? x.a.a : x.a) : undefined;
    if (widened?.k === 'load' && stride(widened.idx[0], v) === 1) {
      // 4 consecutive 8- or 16-bit integers widened to int32 (a depthwise window's row)
      const buf = widened.buf as Buffer;
      const widen = WIDEN[buf.dtype];
      if (widen && buf.scope !== 'local') {
        const { ptr, offset } = em.address(buf, fixVar(widened.idx[0], v, 0));
        const raw = BYTES[buf.dtype] === 1 ? m.v128.load32_zero(offset, 1, ptr) : m.v128.load64_zero(offset, 2, ptr);
        return widen(m, raw);
      }
    }
    if (x.k === 'select') {
      if (!mentions(x.c, v)) return m.if(em.expr(x.c), vec(x.a), vec(x.b));
      const mask = laneMask(em, x.c, v);
      if (mask !== undefined && speculatable(em, x.a) && speculatable(em, x.b))
        return m.v128.bitselect(vec(x.a), vec(x.b), mask);
      return lanes(x);
    }
    if (x.k === 'bin') {
      const dot = pairDot(em, x, v);
      if (dot !== undefined) return dot;
      const op = (
        { add: m.i32x4.add, sub: m.i32x4.sub, mul: m.i32x4.mul } as Record<string, (a: number, b: number) => number>
      )[x.op];
      if (op) return op(vec(x.a), vec(x.b));
    }
    return lanes(x);
  };
  return vec(e);
}

const BYTE_TYPES = new Set(['uint8', 'int8']);

/**
 * The float32 value a store to a byte buffer converts, when it is clamped to constants within the byte's range
 * first (a requantizing epilogue: cast(uint8, clip(round(...), 0, 255)) as legalized, through int64 and a mask):
 * then the conversion is exact lane by lane with i32x4.trunc_sat_f32x4_s.
 */
function clampedByteValue(e: Expr): Expr | undefined {
  while (e.k === 'cast' || (e.k === 'bin' && e.op === 'and' && e.b.k === 'const' && Number(e.b.value) === 255)) {
    if (e.k === 'cast' && e.dtype === 'float32') break;
    e = e.a;
  }
  if (e.dtype !== 'float32' || e.k !== 'bin' || (e.op !== 'min' && e.op !== 'max')) return undefined;
  const inner = e.a;
  if (e.b.k !== 'const' || inner.k !== 'bin' || (inner.op !== 'min' && inner.op !== 'max') || inner.op === e.op)
    return undefined;
  if (inner.b.k !== 'const') return undefined;
  const bounds = [Number(e.b.value), Number(inner.b.value)];
  return bounds.every((b) => Number.isInteger(b) && b >= -128 && b <= 255) ? e : undefined;
}

/** A 4-lane store of requantized bytes: vector arithmetic, then one 4-byte store (unit stride) or four byte stores. */
function vectorizeByteStore(em: ScalarEmitter, s: ForStmt): number | undefined {
  const st = s.body as Extract<ForStmt['body'], { k: 'store' }>,
    v = s.v,
    m = em.m;
  if (st.buf.scope === 'local') return undefined;
  const f = clampedByteValue(st.value);
  const value = f && vectorizeExpr(em, f, v);
  if (value === undefined) return undefined;
  const ints = m.i32x4.trunc_sat_f32x4_s(value);
  if (stride(st.index, v) === 1) {
    // the low byte of each lane (the values are within the byte's range) gathered into lane 0: one 4-byte store
    const bytes = m.i8x16.shuffle(ints, m.v128.const(new Array(16).fill(0)), [0, 4, 8, 12, ...new Array(12).fill(16)]);
    const { ptr, offset } = em.address(st.buf, fixVar(st.index, v, 0));
    return m.i32.store(offset, 1, ptr, m.i32x4.extract_lane(bytes, 0));
  }
  const tmp = em.newLocal(binaryen.v128);
  return m.block(
    null,
    [
      m.local.set(tmp, ints),
      ...[0, 1, 2, 3].map((l) =>
        em.store(st.buf, fixVar(st.index, v, l), m.i32x4.extract_lane(m.local.get(tmp, binaryen.v128), l)),
      ),
    ],
    binaryen.none,
  );
}

/** Widening of the low 4 lanes of 8- or 16-bit integers to int32 lanes. */
const WIDEN: Partial<Record<string, (m: binaryen.Module, raw: number) => number>> = {
  uint8: (m, r) => m.i32x4.extend_low_i16x8_u(m.i16x8.extend_low_i8x16_u(r)),
  int8: (m, r) => m.i32x4.extend_low_i16x8_s(m.i16x8.extend_low_i8x16_s(r)),
  uint16: (m, r) => m.i32x4.extend_low_i16x8_u(r),
  int16: (m, r) => m.i32x4.extend_low_i16x8_s(r),
};
