// Narrow floats (float16, bfloat16 and the float8 family) stored as their bits and computed in float32, for the
// dtypes a target lists in its caps' `halfInFloat32` (every target for now). After the pass the loop IR holds no
// narrow float at all (below, "16-bit" reads "narrow"; a float8 is 8 bits, uint8, its formats in runtime/half.ts):
//   - a global or shared buffer of a 16-bit float becomes a uint16 buffer (the same bytes, the same name); a local
//     one (registers: accumulators, tiles) becomes float32, as do 16-bit float variables and constants;
//   - a load is the bits widened to uint32 and converted exactly to float32 (float16: subnormals through an integer
//     to float conversion, so no target's flushing of float32 subnormals can touch them; bfloat16: the bits shifted
//     into the high half of a float32);
//   - a store converts float32 to the bits with round-to-nearest-even (ONNX's and numpy's rounding), in integer
//     arithmetic: overflow to infinity, NaN stays NaN (quiet, payload kept where it fits), subnormals rounded;
//   - arithmetic on 16-bit floats is float32 arithmetic; a cast into a 16-bit float rounds (bits and back), except
//     where the cast is what a store of that dtype writes, which rounds once itself.
// Values are rounded where they are stored or cast, not after every operation inside a kernel: a fused chain of
// float16 elementwise ops is rounded once at its end (numpy rounds after each op; the results differ by at most an
// ulp of the last rounding).
import type { DType } from '../../runtime/dtype.js';
import { BYTES, isHalf } from '../../runtime/dtype.js';
import { NARROW_FORMAT, maxFiniteBits, nanBits, roundToHalf } from '../../runtime/half.js';
import {
  type Expr,
  type Var,
  add,
  and,
  bitcast,
  cast,
  constant,
  ge,
  gt,
  lt,
  min,
  mul,
  ne,
  or,
  select,
  shl,
  shr,
  sub,
  unary,
  visitExpr,
} from '../../tensor-expr/expr.js';
import { type Buffer, type PrimFunc, mapStmtParts, visitStmt, visitStmtExprs } from '../../schedule/loop-ir.js';
import type { LoopPass } from '../../schedule/loop-passes.js';
import { type BindContext, rewriteWithLets } from './bind.js';
import type { TargetCaps } from './target-caps.js';

const U = (v: number): Expr => constant(v >>> 0, 'uint32');

/** The float32 value of the bits `h` (a uint32 holding them) of narrow float `t`, exactly. */
export function halfToFloat32(t: DType, h: Expr, ctx: BindContext): Expr {
  if (t === 'bfloat16') return bitcast('float32', shl(h, U(16)));
  if (t !== 'float16') return float8ToFloat32(NARROW_FORMAT[t], h, ctx);
  const bits = ctx.bind(h, 'hb');
  const em = ctx.bind(and(bits, U(0x7fff)), 'he'); // exponent and fraction
  // normal numbers: the exponent rebiased (15 -> 127); infinities and NaNs: the exponent field all ones
  const wide = add(shl(em, U(13)), select(ge(em, U(0x7c00)), U(0x70000000), U(0x38000000)));
  // subnormals (and zero): the fraction times 2^-24
  const sub24 = mul(cast('float32', em), constant(2 ** -24, 'float32'));
  const mag = ctx.bind(select(lt(em, U(0x400)), sub24, bitcast('float32', wide)), 'hm');
  return select(ne(and(bits, U(0x8000)), U(0)), unary('neg', mag), mag);
}

/**
 * The bits (in a uint32) of float32 `x` as narrow float `t`, rounded to nearest even; beyond the largest finite
 * value: infinity, or NaN where the format has none (a saturating cast clamps before it: ops/elementwise.ts).
 */
export function float32ToHalf(t: DType, x: Expr, ctx: BindContext): Expr {
  if (t !== 'float16' && t !== 'bfloat16') return float32ToFloat8(NARROW_FORMAT[t], x, ctx);
  const u = ctx.bind(bitcast('uint32', x), 'fb');
  const abs = ctx.bind(and(u, U(0x7fffffff)), 'fa');
  const nan = gt(abs, U(0x7f800000));
  if (t === 'bfloat16') {
    const rounded = shr(add(add(u, U(0x7fff)), and(shr(u, U(16)), U(1))), U(16));
    return select(nan, or(shr(u, U(16)), U(0x40)), rounded);
  }
  const sign = and(shr(u, U(16)), U(0x8000));
  // normal float16 (|x| >= 2^-14): rebias the exponent (127 -> 15), round the 13 dropped bits (a carry may reach
  // the exponent: the next binade, or infinity)
  const normal = shr(add(add(sub(abs, U(0x38000000)), U(0xfff)), and(shr(abs, U(13)), U(1))), U(13));
  // subnormal float16: the significand with its implicit bit, shifted right by 126 - exponent (at most 25: zero)
  const shift = ctx.bind(min(sub(U(126), shr(abs, U(23))), U(25)), 'fs');
  const sig = ctx.bind(or(and(abs, U(0x7fffff)), U(0x800000)), 'fm');
  const half = sub(shl(U(1), sub(shift, U(1))), U(1));
  const subnormal = shr(add(add(sig, half), and(shr(sig, shift), U(1))), shift);
  const nanInf = select(nan, or(U(0x7e00), and(shr(abs, U(13)), U(0x3ff))), U(0x7c00));
  const mag = select(
    ge(abs, U(0x7f800000)),
    nanInf,
    select(ge(abs, U(0x477ff000)), U(0x7c00), select(ge(abs, U(0x38800000)), normal, subnormal)),
  );
  return or(sign, mag);
}

type Format = (typeof NARROW_FORMAT)[string];

/** float8 bits -> float32, exactly: normals rebiased into float32's exponent, subnormals as a product, NaN kept. */
function float8ToFloat32(f: Format, h: Expr, ctx: BindContext): Expr {
  const { m, e, bias } = f;
  const bits = ctx.bind(h, 'qb');
  const em = ctx.bind(and(bits, U((1 << (m + e)) - 1)), 'qe'); // exponent and fraction
  const topExp = ((1 << e) - 1) << m;
  // normal: the exponent rebiased (bias -> 127), the fraction moved to float32's top bits; IEEE infinities and NaNs
  // take float32's top exponent
  const rebias = (127 - bias) << 23;
  const wide =
    f.nan === 'ieee'
      ? add(shl(em, U(23 - m)), select(ge(em, U(topExp)), U((255 - ((1 << e) - 1)) << 23), U(rebias)))
      : add(shl(em, U(23 - m)), U(rebias));
  const sub = mul(cast('float32', em), constant(2 ** (1 - bias - m), 'float32'));
  const mag = ctx.bind(select(lt(em, U(1 << m)), sub, bitcast('float32', wide)), 'qm');
  const value = select(ne(and(bits, U(1 << (m + e))), U(0)), unary('neg', mag), mag);
  // (built from the bits, not a constant: WGSL has no NaN literal)
  const quietNaN = bitcast('float32', or(shl(em, U(23 - m)), U(0x7fc00000)));
  if (f.nan === 'fn') return select(ge(em, U((1 << (m + e)) - 1)), quietNaN, value);
  if (f.nan === 'uz') return select(ge(bits, U(1 << (m + e))), select(ne(em, U(0)), value, quietNaN), value);
  return value;
}

/** float32 -> float8 bits, rounded to nearest even (as float32ToHalf, for the float8 formats). */
function float32ToFloat8(f: Format, x: Expr, ctx: BindContext): Expr {
  const { m, e, bias } = f;
  const u = ctx.bind(bitcast('uint32', x), 'qf');
  const abs = ctx.bind(and(u, U(0x7fffffff)), 'qa');
  const nan = gt(abs, U(0x7f800000));
  const drop = 23 - m;
  // normal: rebias the exponent (127 -> bias), round the dropped bits (a carry may reach the next binade)
  const normal = ctx.bind(
    shr(add(add(sub(abs, U((127 - bias) << 23)), U((1 << (drop - 1)) - 1)), and(shr(abs, U(drop)), U(1))), U(drop)),
    'qn',
  );
  // subnormal: the significand with its implicit bit, shifted right by (151 - bias - m) - exponent (at most 25: 0)
  const shift = ctx.bind(min(sub(U(151 - bias - m), shr(abs, U(23))), U(25)), 'qs');
  const sig = ctx.bind(or(and(abs, U(0x7fffff)), U(0x800000)), 'qm');
  const half = sub(shl(U(1), sub(shift, U(1))), U(1));
  const subnormal = shr(add(add(sig, half), and(shr(sig, shift), U(1))), shift);
  const max = maxFiniteBits(f);
  const rounded = ctx.bind(select(ge(abs, U((128 - bias) << 23)), normal, subnormal), 'qr');
  const over = or(ge(abs, U(0x7f800000)), gt(rounded, U(max)));
  const signBit = and(shr(u, U(31 - m - e)), U(1 << (m + e)));
  const overflow = f.nan === 'ieee' ? ((1 << e) - 1) << m : nanBits(f);
  if (f.nan === 'uz') {
    // no negative zero; NaN and what overflows are 0x80
    const signed = select(ne(rounded, U(0)), or(signBit, rounded), U(0));
    return select(or(nan, over), U(nanBits(f)), signed);
  }
  return select(nan, U(nanBits(f)), or(signBit, select(over, U(overflow), rounded)));
}

/** The pass: narrow floats of `caps.halfInFloat32` stored as their bits, computed in float32. */
export function halfFloatPass(caps: TargetCaps): LoopPass {
  const half = new Set(caps.halfInFloat32);
  return { name: 'half-floats', run: (f) => (usesHalf(f, half) ? lowerHalf(f, half, caps) : f) };
}

function usesHalf(f: PrimFunc, half: ReadonlySet<DType>): boolean {
  if ([...f.inputs, ...f.outputs, ...f.temps].some((b) => half.has(b.dtype))) return true;
  let found = false;
  visitStmt(f.body, (s) => {
    if ((s.k === 'alloc' || s.k === 'store') && half.has(s.buf.dtype)) found = true;
    if ((s.k === 'decl' || s.k === 'assign') && half.has(s.v.dtype)) found = true;
  });
  visitStmtExprs(f.body, (e) =>
    visitExpr(e, (x) => {
      if (half.has(x.dtype)) found = true;
    }),
  );
  return found;
}

/** The unsigned integer type of a narrow float's bits. */
const bitsOf = (t: DType): DType => (BYTES[t] === 1 ? 'uint8' : 'uint16');

function lowerHalf(f: PrimFunc, half: ReadonlySet<DType>, caps: TargetCaps): PrimFunc {
  const isH = (t: DType) => half.has(t) && isHalf(t);
  const bufs = new Map<Buffer, Buffer>();
  const B = (b: Buffer): Buffer => {
    if (!isH(b.dtype)) return b;
    let y = bufs.get(b);
    if (!y) bufs.set(b, (y = { ...b, dtype: b.scope === 'local' ? 'float32' : bitsOf(b.dtype) }));
    return y;
  };
  const vars = new Map<Var, Var>();
  const V = (x: Var): Var => {
    if (!isH(x.dtype)) return x;
    let y = vars.get(x);
    if (!y) vars.set(x, (y = { ...x, dtype: 'float32' }));
    return y;
  };
  /** `x` (float32) rounded to a value of 16-bit float `t`. */
  const round = (t: DType, x: Expr, ctx: BindContext) => halfToFloat32(t, float32ToHalf(t, x, ctx), ctx);
  const lowered = rewriteWithLets(
    f,
    (e, ctx, before) => {
      const s = ctx.stmt;
      // the value a store into a 16-bit float buffer writes: its bits
      const storeOf =
        s.k === 'store' && before === s.value && isH(s.buf.dtype) && s.buf.scope !== 'local' ? s.buf.dtype : undefined;
      let y: Expr | undefined;
      switch (e.k) {
        case 'const':
          if (isH(e.dtype)) y = constant(roundToHalf(e.dtype, Number(e.value)), 'float32');
          break;
        case 'var':
          y = V(e);
          break;
        case 'load': {
          const buf = e.buf as Buffer;
          if (!isH(buf.dtype)) break;
          if (buf.scope === 'local') y = { ...e, buf: B(buf), dtype: 'float32' };
          else {
            const bits = cast('uint32', { ...e, buf: B(buf), dtype: bitsOf(buf.dtype) });
            y = halfToFloat32(buf.dtype, ctx.bind(bits, 'h'), ctx);
          }
          break;
        }
        case 'cast': {
          const to = e.dtype;
          if (isH(to)) {
            const x = cast('float32', e.a);
            // a store of `to` rounds once itself
            if (storeOf === to) return cast(bitsOf(to), float32ToHalf(to, x, ctx));
            y = round(to, x, ctx);
          } else if (before.k === 'cast' && isH(before.a.dtype)) y = cast(to, e.a);
          break;
        }
        case 'bin':
        case 'un':
        case 'select':
          if (isH(e.dtype)) y = { ...e, dtype: 'float32' };
          break;
        default:
          break;
      }
      if (storeOf) return cast(bitsOf(storeOf), float32ToHalf(storeOf, y ?? e, ctx));
      return y;
    },
    { speculation: caps.speculation, hint: 'hf' },
  );
  return {
    ...f,
    inputs: f.inputs.map(B),
    outputs: f.outputs.map(B),
    temps: f.temps.map(B),
    body: mapStmtParts(lowered.body, { buf: B, v: V }),
  };
}
