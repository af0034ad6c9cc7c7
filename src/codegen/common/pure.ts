// What may be evaluated where the program did not ask for it: both arms of a select computed before choosing, a
// value bound to a `let` before the statement instead of inside a select arm. One rule for every backend.
import { isFloat } from '../../runtime/dtype.js';
import { type Expr, visitExpr } from '../../tensor-expr/expr.js';
import type { Buffer } from '../../schedule/loop-ir.js';
import type { TargetCaps } from './target-caps.js';

/** Whether a divisor is a constant that can neither be zero nor -1 (INT_MIN / -1 traps on WebAssembly). */
const safeDivisor = (b: Expr) =>
  b.k === 'const' && b.value !== 0 && b.value !== 0n && b.value !== -1 && b.value !== -1n;

/**
 * Whether evaluating `e` needlessly is harmless on every target: it reads no memory but registers (local buffers,
 * indexed by constants), divides integers only by constants that cannot trap, and computes no pow (a loop or a
 * host call: too costly to run for an arm that is not taken).
 */
export function isPure(e: Expr): boolean {
  let pure = true;
  visitExpr(e, (x) => {
    if (x.k === 'reduce' || (x.k === 'load' && (x.buf as Buffer).scope !== 'local')) pure = false;
    else if (x.k === 'bin') {
      if (x.op === 'pow') pure = false;
      const division = x.op === 'div' || x.op === 'mod' || x.op === 'floordiv' || x.op === 'floormod';
      if (division && !isFloat(x.dtype) && !safeDivisor(x.b)) pure = false;
    }
  });
  return pure;
}

/** Whether the target may evaluate `e` needlessly: anything where nothing traps (caps.speculation), else pure ones. */
export const canSpeculate = (e: Expr, caps: Pick<TargetCaps, 'speculation'>): boolean =>
  caps.speculation === 'any' || isPure(e);
