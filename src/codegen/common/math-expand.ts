// Transcendentals as loop-IR expressions: one library of range reductions and polynomials, expanded before emission
// for the functions a target's caps do not list in `nativeMath` (WGSL lacks erf and a tanh that does not overflow;
// PTX has only ex2/lg2/sin/cos approximations, which its emitter wraps as exp, log, sin and cos). The forms are
// float32 (accuracy targets: rtol 1e-3 / atol 1e-4 against ONNX Runtime, most well below 1e-5); a target with
// `float64MathInFloat32` computes float64 math through them. The WebAssembly backend keeps its own inline SIMD forms
// (codegen/wasm/math-inline.ts) and host imports.
import { UNARY_MATH, type UnaryMathFn } from '../../runtime/math.js';
import { KilnError } from '../../runtime/errors.js';
import { type Expr, add, cast, constant, div, gt, lt, mul, select, sub, unary } from '../../tensor-expr/expr.js';
import type { LoopPass } from '../../schedule/loop-passes.js';
import { type BindContext, rewriteWithLets } from './bind.js';
import type { TargetCaps } from './target-caps.js';

/** How a form builds: the target's native functions, and lets for values it uses more than once. */
export interface MathContext {
  /** `op(x)`: the target's own when native, else this library's form. */
  call(op: UnaryMathFn, x: Expr): Expr;
  bind(e: Expr, hint?: string): Expr;
}

const F = (v: number): Expr => constant(v, 'float32');
const neg = (x: Expr) => unary('neg', x);
const abs = (x: Expr) => unary('abs', x);
const sqrt = (x: Expr) => unary('sqrt', x);
/** c0 + x*(c1 + x*(c2 + ...)) by Horner (each step a multiply-add: one fma where the target fuses). */
const poly = (x: Expr, cs: readonly number[]) =>
  cs.slice(0, -1).reduceRight((r, c) => add(mul(r, x), F(c)), F(cs[cs.length - 1]));
/** `mag` (>= 0) with the sign of `x`. */
const copysign = (m: MathContext, mag: Expr, x: Expr) => {
  const v = m.bind(mag, 'mg');
  return select(lt(x, F(0)), neg(v), v);
};

/** atan on x >= 0: reduce to [0, 1] by 1/x, then to |w| <= tan(pi/12) around pi/6, then a Taylor series. */
function atanPos(m: MathContext, ax: Expr): Expr {
  const inv = m.bind(gt(ax, F(1)), 'inv');
  const z = m.bind(select(inv, div(F(1), ax), ax), 'z');
  const big = m.bind(gt(z, F(0.2679491924311227)), 'big');
  const s3 = 1 / Math.sqrt(3);
  const w = m.bind(select(big, div(sub(z, F(s3)), add(mul(z, F(s3)), F(1))), z), 'w');
  const w2 = m.bind(mul(w, w), 'w2');
  const p = m.bind(mul(w, poly(w2, [1, -1 / 3, 1 / 5, -1 / 7, 1 / 9, -1 / 11])), 'p');
  const r = m.bind(select(big, add(p, F(Math.PI / 6)), p), 'r');
  return select(inv, sub(F(Math.PI / 2), r), r);
}

/** Odd function with a Taylor form below |x| < 0.125 (no cancellation) and `large(|x|)` above, signed as x. */
function oddWithSmallSeries(m: MathContext, x: Expr, series: readonly number[], large: (ax: Expr) => Expr): Expr {
  const ax = m.bind(abs(x), 'ax');
  const x2 = m.bind(mul(x, x), 'x2');
  const small = add(mul(mul(x, x2), poly(x2, series)), x);
  return select(lt(ax, F(0.125)), small, copysign(m, large(ax), x));
}

/** The library: each function of x (float32), from the target's native ones and arithmetic. */
export const MATH_FORMS: Partial<Record<UnaryMathFn, (m: MathContext, x: Expr) => Expr>> = {
  tan: (m, x) => div(m.call('sin', x), m.call('cos', x)),
  // (1 - e^-2|x|) / (1 + e^-2|x|): no overflow for large |x|
  tanh: (m, x) =>
    oddWithSmallSeries(m, x, [-1 / 3, 2 / 15, -17 / 315], (ax) => {
      const e = m.bind(m.call('exp', mul(ax, F(-2))), 'e');
      return div(sub(F(1), e), add(F(1), e));
    }),
  sinh: (m, x) =>
    oddWithSmallSeries(m, x, [1 / 6, 1 / 120, 1 / 5040], (ax) => {
      const e = m.bind(m.call('exp', ax), 'e');
      return mul(sub(e, div(F(1), e)), F(0.5));
    }),
  cosh: (m, x) => {
    const e = m.bind(m.call('exp', abs(x)), 'e');
    return mul(add(e, div(F(1), e)), F(0.5));
  },
  atan: (m, x) => copysign(m, atanPos(m, m.bind(abs(x), 'ax')), x),
  // atan(|x| / sqrt((1 - |x|)(1 + |x|)))
  asin: (m, x) => {
    const ax = m.bind(abs(x), 'ax');
    const c = sqrt(mul(sub(F(1), ax), add(F(1), ax)));
    return select(gt(ax, F(1)), F(Number.NaN), copysign(m, atanPos(m, m.bind(div(ax, c), 'q')), x));
  },
  // 2 atan(sqrt((1 - x) / (1 + x)))
  acos: (m, x) => {
    const q = m.bind(sqrt(div(sub(F(1), x), add(F(1), x))), 'q');
    return select(gt(abs(x), F(1)), F(Number.NaN), mul(F(2), atanPos(m, q)));
  },
  asinh: (m, x) => {
    const ax = m.bind(abs(x), 'ax');
    return copysign(m, m.call('log', add(ax, sqrt(add(mul(ax, ax), F(1))))), x);
  },
  acosh: (m, x) => m.call('log', add(x, sqrt(mul(sub(x, F(1)), add(x, F(1)))))),
  atanh: (m, x) => mul(F(0.5), m.call('log', div(add(F(1), x), sub(F(1), x)))),
  // Numerical Recipes erfcc (fractional error < 1.2e-7), as src/runtime/math.ts
  erf: (m, x) => {
    const z = m.bind(abs(x), 'z');
    const t = m.bind(div(F(1), add(mul(z, F(0.5)), F(1))), 't');
    const p = poly(
      t,
      [
        -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587, -0.82215223,
        0.17087277,
      ],
    );
    const r = mul(t, m.call('exp', sub(p, mul(z, z))));
    return copysign(m, sub(F(1), r), x);
  },
};

const MATH_OPS: ReadonlySet<string> = new Set(Object.keys(UNARY_MATH));

/** `op(x)` for a target whose native functions are `native`: the form of the library where it is not native. */
export function expandMath(
  op: UnaryMathFn,
  x: Expr,
  native: ReadonlySet<UnaryMathFn>,
  ctx: Pick<BindContext, 'bind'>,
): Expr {
  const m: MathContext = {
    bind: (e, hint) => ctx.bind(e, hint),
    call: (o, y) => {
      if (native.has(o)) return unary(o, y);
      const form = MATH_FORMS[o];
      if (!form) throw new KilnError('E_INTERNAL', `no expansion of ${o} for a target without it`);
      return form(m, m.bind(y, 'x'));
    },
  };
  return m.call(op, x);
}

/** The pass: unary math the target lacks expanded (float64 math through float32 where the caps say so). */
export function mathExpandPass(caps: TargetCaps): LoopPass {
  const native = new Set(caps.nativeMath);
  return {
    name: 'expand-math',
    run: (f) =>
      rewriteWithLets(
        f,
        (e, ctx) => {
          if (e.k !== 'un' || !MATH_OPS.has(e.op)) return undefined;
          const op = e.op as UnaryMathFn;
          if (e.dtype === 'float64' && caps.float64MathInFloat32)
            return cast('float64', expandMath(op, cast('float32', e.a), native, ctx));
          if (native.has(op)) return undefined;
          if (e.dtype !== 'float32')
            throw new KilnError('E_UNSUPPORTED', `${op} on ${e.dtype} for target ${caps.name}`);
          return expandMath(op, e.a, native, ctx);
        },
        { hint: 'm', speculation: caps.speculation },
      ),
  };
}
