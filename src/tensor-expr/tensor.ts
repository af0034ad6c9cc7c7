// Tensors of the tensor-expression level: placeholders (kernel inputs) and computes (a body over output indices).
import type { DType } from '../runtime/dtype.js';
import { KilnError } from '../runtime/errors.js';
import { type Buf, type Expr, type ExprLike, type IterVar, iterVar, load } from './expr.js';

export interface Tensor extends Buf {
  readonly kind: 'placeholder' | 'compute';
  /** One iteration variable per output dimension (compute only). */
  readonly axes: readonly IterVar[];
  readonly body?: Expr;
  /** Scheduling hints from the operator: which output axis to run in SIMD lanes and which to unroll as rows. */
  readonly hints?: ComputeHints;
}

export interface ComputeHints {
  readonly vectorAxis?: number;
  readonly rowAxis?: number;
  /** Axes ending at rowAxis that may be fused into one row axis (they are contiguous in every operand read). */
  readonly rowAxes?: number;
  /** Axes ending at vectorAxis that may be fused into one lane axis (contiguous in the output and every operand read). */
  readonly laneAxes?: number;
  /**
   * Register tiles of rows outside tiles of lanes: no operand read along the lanes is worth keeping in cache
   * across rows, and the tiles then sweep the output (and a window's input) in memory order.
   */
  readonly rowTilesOuter?: boolean;
  /** Computed into its own buffer even without a reduction: many consumers read each element (a transform). */
  readonly materialize?: boolean;
  /** The innermost axis is rows of this many elements fused into one: SIMD lanes run within a row. */
  readonly laneRowLength?: number;
  /**
   * The innermost axis interleaves this many phases (x = n*q + phase, e.g. the two columns of a 2x2 output
   * tile): one loop per phase, SIMD lanes along q.
   */
  readonly laneInterleave?: number;
  /**
   * The axis threads split, moved outermost: the one an earlier stage of the same kernel splits its work by, so
   * that each thread reads what it wrote (not the other core's cache lines).
   */
  readonly parallelAxis?: number;
  /**
   * A short spatial axis run unrolled: the body selects its terms by this index (a transform's row), and with the
   * index constant in each copy only that row's terms remain.
   */
  readonly unrollAxis?: number;
  /**
   * The unrollAxis split by this factor, its inner part run unrolled just outside the SIMD lanes, inside the loop
   * over vectors: its copies read the same operand vectors (a Winograd column transform's six outputs of one tile
   * row read the same six columns), which are then loaded once instead of once per copy.
   */
  readonly unrollNearLanes?: number;
  /**
   * An int32 sum of products of 8- or 16-bit integers (tensor-expr/ops/quantized.ts): register-tiled like a float32
   * sum, its lanes computed with integer SIMD (WebAssembly: i32x4.dot_i16x8_s where the reduction runs in pairs).
   */
  readonly integerTile?: boolean;
  /**
   * A recurrence along the innermost axis (see `recurrence`): each element reads the ones before it along that
   * axis, so the axis runs in order on one thread, never split, vectorized or spread over GPU threads.
   */
  readonly recurrence?: boolean;
}

let tensorCounter = 0;
const uniq = (hint: string) => `${hint.replace(/[^A-Za-z0-9_]/g, '_')}_${tensorCounter++}`;

export function placeholder(name: string, shape: readonly number[], dtype: DType): Tensor {
  return { kind: 'placeholder', name, shape: [...shape], dtype, axes: [] };
}

/** out[i0..in] = fn(i0..in). The body may contain reductions anywhere. */
export function compute(
  name: string,
  shape: readonly number[],
  fn: (idx: Expr[]) => Expr,
  hints?: ComputeHints,
): Tensor {
  const axes = shape.map((n, i) => iterVar(`i${i}_`, n));
  const body = fn(axes.map((a) => a.v));
  return { kind: 'compute', name: uniq(name), shape: [...shape], dtype: body.dtype, axes, body, hints };
}

export const at = (t: Tensor, ...idx: ExprLike[]): Expr => load(t, idx);
export const reduceAxis = (extent: number, hint = 'r'): IterVar => iterVar(hint, extent);

/**
 * out[..., i] = fn(idx, out): a compute whose body may read `out` itself at earlier positions of its innermost axis
 * (j < i), as a running state (greedy NMS: whether a box is kept depends on the boxes kept before it). Schedules
 * run that axis in order (ComputeHints.recurrence); the outer axes stay independent. Reads at j >= i are undefined.
 */
export function recurrence(
  name: string,
  shape: readonly number[],
  dtype: DType,
  fn: (idx: Expr[], self: Tensor) => Expr,
): Tensor {
  const axes = shape.map((n, i) => iterVar(`i${i}_`, n));
  const t: { -readonly [K in keyof Tensor]: Tensor[K] } = {
    kind: 'compute',
    name: uniq(name),
    shape: [...shape],
    dtype,
    axes,
    hints: { recurrence: true },
  };
  t.body = fn(
    axes.map((a) => a.v),
    t,
  );
  if (t.body.dtype !== dtype)
    throw new KilnError('E_INTERNAL', `recurrence ${name}: body is ${t.body.dtype}, declared ${dtype}`, {
      hint: 'please report this',
    });
  return t;
}
