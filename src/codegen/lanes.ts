// Index facts the GPU backends use to move four consecutive float32s as one 16-byte access (PTX ld/st.v4, WGSL
// vec4<f32>): an index must advance by one per lane and be a multiple of 4 at lane 0. Both are proved
// syntactically from the loop IR; kernel buffers start 16-byte aligned (each is its own allocation or binding).
import { type Expr, type Var, mentions } from '../tensor-expr/expr.js';
import { fixVar } from '../tensor-expr/simplify.js';

/** The coefficient of `v` in `e` when `e` is linear in it through adds and subtracts (undefined otherwise). */
export function laneCoef(e: Expr, v: Var): number | undefined {
  if (e === v) return 1;
  if (!mentions(e, v)) return 0;
  if (e.k === 'bin' && (e.op === 'add' || e.op === 'sub') && e.dtype === 'int32') {
    const a = laneCoef(e.a, v),
      b = laneCoef(e.b, v);
    return a === undefined || b === undefined ? undefined : e.op === 'add' ? a + b : a - b;
  }
  return undefined;
}

/** An index's value at lane 0 when it reads 4 consecutive elements from a multiple of 4 across `lane`, else undefined. */
export function alignedLaneBase(e: Expr, lane: Var): Expr | undefined {
  if (laneCoef(e, lane) !== 1) return undefined;
  const e0 = fixVar(e, lane, 0);
  return aligned4(e0) ? e0 : undefined;
}

/** Whether an int32 index is a multiple of 4 for every value of its variables (syntactically). */
export function aligned4(e: Expr): boolean {
  if (e.k === 'const') return Number(e.value) % 4 === 0;
  if (e.k !== 'bin') return false;
  switch (e.op) {
    case 'add':
    case 'sub':
      return aligned4(e.a) && aligned4(e.b);
    case 'mul':
      return aligned4(e.a) || aligned4(e.b);
    // floor or truncated remainder (floor division is legalized into div/mod before emission: common/legalize.ts)
    case 'floormod':
    case 'mod':
      return e.b.k === 'const' && Number(e.b.value) % 4 === 0 && aligned4(e.a);
    default:
      return false;
  }
}
