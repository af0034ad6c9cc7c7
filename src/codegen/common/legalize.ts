// Floor division and modulo of signed integers, legalized before emission for the targets whose caps list the dtype
// in `floorDivLowered`: every target has truncating division (div: C's /, mod: C's %), and floor semantics are one
// correction away. WGSL and PTX emitted this sequence each in their own syntax before; now they see only div/mod.
//   divisor a positive constant c:  a >= 0 provable from the loop ranges -> a / c, a % c
//                                   c a power of two                    -> a >> log2 c, a - ((a >> log2 c) << log2 c)
//                                   otherwise  q = a / c, r = a - q * c -> select(r < 0, q - 1, q)
//                                              r = a % c                -> select(r < 0, r + c, r)
//   any divisor b:  a >= 0 and b >= 1 provable (ranges of loops and buffers) -> a / b, a % b
//                   q = a / b, r = a - q * b, fix = r != 0 && (r ^ b) < 0 -> select(fix, q - 1, q)
//                   r = a % b, fix as above                               -> select(fix, r + b, r)
// Floor division takes its remainder from the quotient: one division, not two (a division is a slow instruction,
// or a 64-step loop for int64 on WebGPU). The dividend, divisor, quotient and remainder used more than once are
// bound to lets (common/bind.ts).
import type { DType } from '../../runtime/dtype.js';
import { isWide } from '../../runtime/dtype.js';
import {
  type Expr,
  add,
  and,
  constant,
  div,
  lt,
  mod,
  mul,
  ne,
  select,
  shl,
  shr,
  sub,
  xor,
} from '../../tensor-expr/expr.js';
import { bound } from '../../tensor-expr/simplify.js';
import type { LoopPass } from '../../schedule/loop-passes.js';
import { type BindContext, rewriteWithLets } from './bind.js';
import type { TargetCaps } from './target-caps.js';

const INT32_MAX = 2 ** 31 - 1;

/** The value of an integer constant, or undefined. */
const constValue = (e: Expr): bigint | undefined =>
  e.k === 'const' ? (typeof e.value === 'bigint' ? e.value : BigInt(e.value)) : undefined;

/**
 * `floordiv(a, b)` / `floormod(a, b)` of a signed integer dtype with truncating div/mod only. `original`: the
 * dividend before its own floor divisions were legalized (interval reasoning knows floordiv, not div).
 */
export function legalizeFloorDivMod(
  op: 'floordiv' | 'floormod',
  a: Expr,
  b: Expr,
  ctx: BindContext,
  original = a,
): Expr {
  const t: DType = a.dtype;
  const k = (v: bigint) => constant(isWide(t) ? v : Number(v), t);
  const zero = k(0n),
    one = k(1n);
  const c = constValue(b);
  // a dividend >= 0 over a positive divisor (a constant, or a run-time size whose range the symbols' buffer gives):
  // truncating division is floor division
  const ra = bound(original, ctx.ranges);
  const positive = c !== undefined ? c > 0n : (bound(b, ctx.ranges)?.lo ?? 0) >= 1;
  if (positive && ra && ra.lo >= 0 && ra.hi <= INT32_MAX) return op === 'floordiv' ? div(a, b) : mod(a, b);
  if (c !== undefined && c > 0n) {
    if ((c & (c - 1n)) === 0n) {
      const shift = c.toString(2).length - 1;
      // (not a & (c - 1): the index simplifier reads `and` with a constant as logical)
      if (op === 'floordiv') return shr(a, k(BigInt(shift)));
      const x = ctx.bind(a, 'fa');
      return sub(x, shl(shr(x, k(BigInt(shift))), k(BigInt(shift))));
    }
    const x = ctx.bind(a, 'fa');
    if (op === 'floordiv') {
      const q = ctx.bind(div(x, b), 'fq');
      return select(lt(sub(x, mul(q, b)), zero), sub(q, one), q);
    }
    const rem = ctx.bind(mod(x, b), 'fr');
    return select(lt(rem, zero), add(rem, b), rem);
  }
  const x = ctx.bind(a, 'fa'),
    y = ctx.bind(b, 'fb');
  const fix = (rem: Expr) => and(ne(rem, zero), lt(xor(rem, y), zero));
  if (op === 'floordiv') {
    const q = ctx.bind(div(x, y), 'fq');
    return select(fix(ctx.bind(sub(x, mul(q, y)), 'fr')), sub(q, one), q);
  }
  const rem = ctx.bind(mod(x, y), 'fr');
  return select(fix(rem), add(rem, y), rem);
}

/** The pass: floordiv/floormod of the dtypes in `caps.floorDivLowered` become div/mod and a correction. */
export function floorDivPass(caps: TargetCaps): LoopPass {
  const lowered = new Set(caps.floorDivLowered);
  return {
    name: 'legalize-floordiv',
    run: (f) =>
      rewriteWithLets(
        f,
        (e, ctx, before) =>
          e.k === 'bin' && (e.op === 'floordiv' || e.op === 'floormod') && lowered.has(e.dtype)
            ? legalizeFloorDivMod(e.op, e.a, e.b, ctx, before.k === 'bin' ? before.a : e.a)
            : undefined,
        { speculation: caps.speculation },
      ),
  };
}
