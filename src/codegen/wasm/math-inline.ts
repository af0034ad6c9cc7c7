// float32 exp, erf and tanh computed inline, for one value (f32) or four (f32x4), instead of calling the
// "math" import (a call out to JavaScript per element, which dominated softmax and GELU). One definition serves
// both widths through the F32Ops interface. Accuracy: exp within 2 ulp (Cephes expf: range reduction by ln 2,
// degree-6 polynomial); erf within 4e-7 absolute (a rational function, below; Numerical Recipes' erfcc on this exp
// was as accurate at 2.5x the cost);
// tanh within 1e-7 absolute (1 - 2 / (exp(2|x|) + 1), sign restored). float64 keeps the exact imports.
import binaryen from 'binaryen';

type Ref = number;

/**
 * Arithmetic on one f32 or on f32x4 lanes; `let` evaluates a value once into a local and returns a getter. The
 * constant folder's interpreter implements it on JavaScript numbers (src/compiler/te-interpreter.ts), so folding
 * computes these functions bit for bit as the kernels do.
 */
export interface F32Ops {
  k(c: number): Ref;
  add(a: Ref, b: Ref): Ref;
  sub(a: Ref, b: Ref): Ref;
  mul(a: Ref, b: Ref): Ref;
  div(a: Ref, b: Ref): Ref;
  /** min/max of a value (first) and a constant bound; a NaN value stays NaN. */
  min(a: Ref, b: Ref): Ref;
  max(a: Ref, b: Ref): Ref;
  abs(a: Ref): Ref;
  /** |a| with the sign of b. */
  copysign(a: Ref, b: Ref): Ref;
  /** 2^(n-1) from t = n + EXP_ROUND computed in float32 (n an integer in [-126, 128]; n = -126 gives +0). */
  halfPow2(t: Ref): Ref;
  let(v: Ref): () => Ref;
}

export type InlineMathFn = 'exp' | 'erf' | 'tanh';
export const INLINE_F32_MATH: ReadonlySet<string> = new Set<InlineMathFn>(['exp', 'erf', 'tanh']);

function exp(o: F32Ops, x0: Ref): Ref {
  // exp(88.72) overflows to inf and exp(-87.33) is the smallest normal: clamping keeps 2^n within [2^-126, 2^128]
  const x = o.let(o.min(o.max(x0, o.k(EXP_MIN_NORMAL)), o.k(88.72284)));
  // n = round(x / ln 2) by adding 1.5 * 2^23: the sum's low mantissa bits are n, so 2^n needs no float-to-int
  // conversion (a multi-instruction sequence on x86)
  const t = o.let(o.add(o.mul(x(), o.k(Math.LOG2E)), o.k(EXP_ROUND)));
  const n = o.let(o.sub(t(), o.k(EXP_ROUND)));
  const r = o.let(o.sub(o.sub(x(), o.mul(n(), o.k(0.693359375))), o.mul(n(), o.k(-2.1219444e-4))));
  let p = o.k(1.98756915e-4);
  for (const c of [1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1])
    p = o.add(o.mul(p, r()), o.k(c));
  const e = o.add(o.add(o.mul(o.mul(p, r()), r()), r()), o.k(1));
  // e * 2 * 2^(n-1): n reaches 128 (exp(88.5) is finite though 2^128 is not). At n = -126 (x < -86.99) the scale is
  // +0, so results below ~1.8e-38 flush to zero: subnormal results would make every later multiplication by them slow
  // (x86 microcode assists; WebAssembly cannot set FTZ/DAZ), e.g. softmax over masked attention scores
  return o.mul(o.mul(e, o.k(2)), o.halfPow2(t()));
}
const EXP_ROUND = 12582912; // 1.5 * 2^23
const EXP_MIN_NORMAL = -87.33654;

// erf(x) = x P(x^2) / Q(x^2) on [-4, 4] (beyond, erf is 1 in float32): a rational fit of erf made for Kiln (weighted
// least squares on Chebyshev nodes, iterated on the denominator), 25 operations and no exp.
const ERF_P = [1.1283787, 0.21377817, 0.052411135, 0.004283622, 0.00015512366, -1.9850718e-6, 1.9160414e-8];
const ERF_Q = [1, 0.5227839, 0.120729946, 0.015535261, 0.0010950916];

function erf(o: F32Ops, x0: Ref): Ref {
  const x = o.let(o.min(o.max(x0, o.k(-4)), o.k(4)));
  const s = o.let(o.mul(x(), x()));
  const s2 = o.let(o.mul(s(), s())),
    s4 = o.let(o.mul(s2(), s2()));
  // Estrin's scheme (up to 8 coefficients): pairs c0 + c1 s combined by s^2 and s^4, a dependency chain half as
  // long as Horner's (in a matmul's GELU epilogue the chains, not the arithmetic, bound the time)
  const estrin = (c: readonly number[]): Ref => {
    const pair = (i: number): Ref => (i + 1 < c.length ? o.add(o.mul(o.k(c[i + 1]), s()), o.k(c[i])) : o.k(c[i]));
    const quad = (i: number): Ref => (i + 2 < c.length ? o.add(o.mul(pair(i + 2), s2()), pair(i)) : pair(i));
    return c.length > 4 ? o.add(o.mul(quad(4), s4()), quad(0)) : quad(0);
  };
  // the fit overshoots 1 by an ulp near 4
  return o.min(o.max(o.div(o.mul(x(), estrin(ERF_P)), estrin(ERF_Q)), o.k(-1)), o.k(1));
}

function tanh(o: F32Ops, x0: Ref): Ref {
  const x = o.let(x0);
  const e = exp(o, o.mul(o.k(2), o.abs(x())));
  return o.copysign(o.sub(o.k(1), o.div(o.k(2), o.add(e, o.k(1)))), x());
}

/** Each function's one definition, over any F32Ops. */
export const INLINE_F32_FORMS: Record<InlineMathFn, (o: F32Ops, x: Ref) => Ref> = { exp, erf, tanh };

/** Emits fn(x) for one f32 value or (vector) four lanes; `newLocal` allocates a function local of a type. */
export function inlineF32Math(
  m: binaryen.Module,
  fn: InlineMathFn,
  x: Ref,
  vector: boolean,
  newLocal: (type: number) => number,
): Ref {
  const type = vector ? binaryen.v128 : binaryen.f32;
  const sets: Ref[] = [];
  const letOp = (v: Ref) => {
    const l = newLocal(type);
    sets.push(m.local.set(l, v));
    return () => m.local.get(l, type);
  };
  const o: F32Ops = vector
    ? {
        k: (c) => m.f32x4.splat(m.f32.const(c)),
        add: m.f32x4.add,
        sub: m.f32x4.sub,
        mul: m.f32x4.mul,
        div: m.f32x4.div,
        // pmin/pmax (one x86 instruction each; min/max take several for NaN rules): every use clamps its first operand,
        // and pmax(NaN, c) and pmin(NaN, c) return the NaN
        min: m.f32x4.pmin,
        max: m.f32x4.pmax,
        abs: m.f32x4.abs,
        copysign: (a, b) => m.v128.bitselect(b, a, m.i32x4.splat(m.i32.const(-0x80000000))),
        // t's bits are those of 1.5 * 2^23 plus n: adding 126 and shifting by 23 leaves the exponent field n + 126
        halfPow2: (t) => m.i32x4.shl(m.i32x4.add(t, m.i32x4.splat(m.i32.const(126))), m.i32.const(23)),
        let: letOp,
      }
    : {
        k: (c) => m.f32.const(c),
        add: m.f32.add,
        sub: m.f32.sub,
        mul: m.f32.mul,
        div: m.f32.div,
        min: m.f32.min,
        max: m.f32.max,
        abs: m.f32.abs,
        copysign: m.f32.copysign,
        halfPow2: (t) =>
          m.f32.reinterpret(m.i32.shl(m.i32.add(m.i32.reinterpret(t), m.i32.const(126)), m.i32.const(23))),
        let: letOp,
      };
  const result = INLINE_F32_FORMS[fn](o, x);
  return m.block(null, [...sets, result], type);
}
