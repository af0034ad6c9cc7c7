// Winograd convolution F(m x m, 3x3) (Lavin & Gray, 2015), m = 2 or 4: a 3x3 stride-1 convolution computed per
// m x m output tile from an (m+2) x (m+2) input tile with (m+2)^2 multiplies per (input channel, filter) instead of
// 9 m^2 (F(2x2): 16 for 36; F(4x4): 36 for 144):
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A        (.) = elementwise, summed over input channels
// The graph pass relay-ir/passes/winograd-conv.ts rewrites such a convolution into three kernels (attribute
// `tile` = m; a = m + 2):
//   winograd_input   V[e, c, t]  = (B^T d B)[e]  for a x a input tile t of channel c    (e = a*row + column)
//   matmul           M[e, k, t]  = sum_c U[e, k, c] * V[e, c, t]  (a^2 independent matmuls; U = G g G^T, a constant
//                                  transformed at compile time by winogradWeights)
//   winograd_output  y[n, k, oy, ox] = (A^T M A) at tile (oy/m, ox/m), position (oy%m, ox%m)
// Each 2-D transform runs as two 1-D passes (rows, then columns) with a materialized intermediate. F(2x2): every
// row of B^T and A^T has at most three nonzeros of value +-1, written as closed forms in the row index, so a
// transform is two or three loads and an add per element. F(4x4): the rows of B^T and A^T have up to six
// nonzeros with other values; a transform row is a select over the matrix rows by the row index, and the schedule
// unrolls that index (hint unrollAxis), so each copy keeps only its own row's terms.
import type { Tensor as Constant } from '../../runtime/tensor.js';
import { KilnError } from '../../runtime/errors.js';
import { type Attrs, OpPattern } from '../../relay-ir/op.js';
import { tensorType } from '../../relay-ir/types.js';
import * as E from '../expr.js';
import { type Expr, constant, int } from '../expr.js';
import { at, compute } from '../tensor.js';
import { defineOp } from '../op-def.js';
import { ints, shapeError, staticDims, symbolicBatch } from './common.js';

/** Filter size r of F(m x m, r x r); a tile reads m + r - 1 inputs per dimension. */
export const WINOGRAD_R = 3;
/** Output tile sizes m the ops implement. */
export const WINOGRAD_TILES = [2, 4] as const;
export type WinogradTile = (typeof WINOGRAD_TILES)[number];

/** sum_i row[i] * v(i) over the nonzero entries (a positive one first), with +-1 as add/subtract. */
function rowTerms(row: readonly number[], v: (i: Expr) => Expr): Expr {
  const nonzero = row
    .map((c, i) => [c, i] as const)
    .filter(([c]) => c !== 0)
    .sort(([a], [b]) => +(b > 0) - +(a > 0));
  let out: Expr | undefined;
  for (const [c, i] of nonzero) {
    const x = v(int(i)),
      mag = Math.abs(c);
    const term = mag === 1 ? x : E.mul(constant(mag, 'float32'), x);
    out =
      out === undefined
        ? c < 0
          ? E.sub(constant(0, 'float32'), term)
          : term
        : c < 0
          ? E.sub(out, term)
          : E.add(out, term);
  }
  return out ?? constant(0, 'float32');
}
/** Row `index` of `matrix` applied to v(0..): a select over the rows (constant-folded once the index is). */
const matrixRow = (matrix: readonly (readonly number[])[], index: Expr, v: (i: Expr) => Expr): Expr =>
  matrix
    .slice(0, -1)
    .reduceRight<Expr>(
      (rest, row, r) => E.select(E.eq(index, r), rowTerms(row, v), rest),
      rowTerms(matrix[matrix.length - 1], v),
    );

interface WinogradMath {
  /** Row e of B^T applied to the m + 2 values d(0..m+1). */
  inputRow(e: Expr, d: (i: Expr) => Expr): Expr;
  /** Row p of A^T applied to the m + 2 values v(0..m+1). */
  outputRow(p: Expr, v: (a: Expr) => Expr): Expr;
  /** The filter transform G, (m + 2) x 3. */
  G: readonly (readonly number[])[];
  /** Whether the transforms' row index should run unrolled (hint unrollAxis). */
  unrollRows: boolean;
}

// F(2x2, 3x3). B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]: row e is d[ia(e)] + sb(e) * d[ib(e)] with
// ia = [0,1,2,1], ib = [2,2,1,3], sb = [-1,1,-1,-1] (floor division on e in 0..3).
// A^T = [1 1 1 0; 0 1 -1 -1]: row p is m(1) + (1 - 2p) * (m(2p) + m(2 + p)).
const inA = (e: Expr): Expr => E.sub(e, E.mul(E.floordiv(e, 3), 2));
const inB = (e: Expr): Expr => E.add(E.sub(int(2), E.floordiv(e, 2)), E.mul(E.floordiv(e, 3), 2));
const inSign = (e: Expr): Expr => E.cast('float32', E.sub(E.mul(E.sub(E.floormod(e, 2), E.floordiv(e, 3)), 2), int(1)));
const F2: WinogradMath = {
  inputRow: (e, d) => E.add(d(inA(e)), E.mul(inSign(e), d(inB(e)))),
  outputRow: (p, m) =>
    E.add(m(int(1)), E.mul(E.cast('float32', E.sub(int(1), E.mul(p, 2))), E.add(m(E.mul(p, 2)), m(E.add(p, 2))))),
  G: [
    [1, 0, 0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0, 0, 1],
  ],
  unrollRows: false,
};

// F(4x4, 3x3) with interpolation points 0, +-1, +-2 (Lavin & Gray's choice: small entries). Float32 rounding is
// ~1e-5 of a layer's largest output (F(2x2): a few 1e-7).
const BT4 = [
  [4, 0, -5, 0, 1, 0],
  [0, -4, -4, 1, 1, 0],
  [0, 4, -4, -1, 1, 0],
  [0, -2, -1, 2, 1, 0],
  [0, 2, -1, -2, 1, 0],
  [0, 4, 0, -5, 0, 1],
];
const AT4 = [
  [1, 1, 1, 1, 1, 0],
  [0, 1, -1, 2, -2, 0],
  [0, 1, 1, 4, 4, 0],
  [0, 1, -1, 8, -8, 1],
];
const F4: WinogradMath = {
  inputRow: (e, d) => matrixRow(BT4, e, d),
  outputRow: (p, m) => matrixRow(AT4, p, m),
  G: [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
  ],
  unrollRows: true,
};
const MATH: Record<WinogradTile, WinogradMath> = { 2: F2, 4: F4 };

/**
 * The unrollAxis hint for a transform stage whose row index is `axis` (of `rows` values), where the math wants its
 * rows unrolled; the copies run next to the lanes (unrollNearLanes), as they read the same operand vectors.
 */
const rowUnroll = (math: WinogradMath, axis: number, rows: number) =>
  math.unrollRows ? { unrollAxis: axis, unrollNearLanes: rows } : {};

/** The attribute `tile` (default 2), checked. */
function tileOf(a: Attrs): { m: WinogradTile; alpha: number; math: WinogradMath } {
  const m = Number(a.tile ?? 2) as WinogradTile;
  if (!WINOGRAD_TILES.includes(m)) shapeError(`winograd: tile ${a.tile} is not one of ${WINOGRAD_TILES.join(', ')}`);
  return { m, alpha: m + WINOGRAD_R - 1, math: MATH[m] };
}

/** Tiles along each output dimension (a last tile past the edge is computed, never stored). */
function tiling(a: Attrs): {
  n: number;
  oh: number;
  ow: number;
  th: number;
  tw: number;
  m: WinogradTile;
  alpha: number;
  math: WinogradMath;
} {
  const [n, oh, ow] = ints(a, 'output_size');
  if (!(n > 0 && oh > 0 && ow > 0)) shapeError(`winograd: output_size [${n}, ${oh}, ${ow}] must be positive`);
  const t = tileOf(a);
  return { n, oh, ow, th: Math.ceil(oh / t.m), tw: Math.ceil(ow / t.m), ...t };
}

/**
 * winograd_input(x) -> V [a^2, C, N*th*tw]: x [N, C, H, W] read with `pads` [top, left, bottom, right] of zeros;
 * attribute output_size [N, OH, OW] is the convolution's output, `tile` the output tile size m (a = m + 2).
 */
defineOp({
  name: 'winograd_input',
  pattern: OpPattern.Injective,
  inferType: symbolicBatch(([x], a) => {
    const dims = staticDims(x, 'winograd_input');
    const { n, oh, ow, th, tw, alpha } = tiling(a);
    const [pt, pl, pb, pr] = ints(a, 'pads');
    if (
      x.dtype !== 'float32' ||
      dims.length !== 4 ||
      dims[0] !== n ||
      dims[2] + pt + pb - 2 !== oh ||
      dims[3] + pl + pr - 2 !== ow
    ) {
      shapeError(
        `winograd_input: a float32 [${n}, C, H, W] input padded by [${pt}, ${pl}, ${pb}, ${pr}] must give a ${oh}x${ow} 3x3 convolution output, got ${x.dtype} [${dims}]`,
      );
    }
    return tensorType([alpha * alpha, dims[1], n * th * tw], x.dtype);
  }),
  compute: ([x], a) => {
    const { n, th, tw, m: M, alpha: ALPHA, math } = tiling(a);
    const [pt, pl] = ints(a, 'pads');
    const [, C, H, W] = x.shape;
    const width = M * tw + WINOGRAD_R - 1;
    const padded = (nn: Expr, c: Expr, y: Expr, xx: Expr): Expr => {
      const yy = E.sub(y, pt),
        xs = E.sub(xx, pl);
      return E.select(
        E.all([E.ge(yy, 0), E.lt(yy, H), E.ge(xs, 0), E.lt(xs, W)]),
        at(x, nn, c, yy, xs),
        constant(0, 'float32'),
      );
    };
    // rows: R[c, e1, tile row r, x] = (B^T d)[e1] over the 4 input rows of tile row r, whole padded rows wide
    // (channels outermost: the loop that threads split has many iterations)
    const rows = compute(
      'winograd_input_rows',
      [C, ALPHA, n * th, width],
      ([c, e1, r, xx]) => {
        const nn = E.floordiv(r, th),
          y0 = E.mul(E.floormod(r, th), M);
        return math.inputRow(e1, (i) => padded(nn, c, E.add(y0, i), xx));
      },
      { materialize: true, ...rowUnroll(math, 1, ALPHA) },
    );
    // columns: V[e, c, t] = (R B)[e2] over the 4 columns of tile t; lanes run along one row of tiles; threads
    // split the channels, as for the rows (each thread reads the rows it computed); unrolled, the a values of e2
    // run next to the lanes: they read the same a columns of R
    return compute(
      'winograd_input',
      [ALPHA * ALPHA, C, n * th * tw],
      ([e, c, t]) => {
        const e1 = E.floordiv(e, ALPHA),
          e2 = E.floormod(e, ALPHA);
        const r = E.floordiv(t, tw),
          x0 = E.mul(E.floormod(t, tw), M);
        return math.inputRow(e2, (j) => at(rows, c, e1, r, E.add(x0, j)));
      },
      { laneRowLength: tw, parallelAxis: 1, ...rowUnroll(math, 0, ALPHA) },
    );
  },
});

/**
 * winograd_output(M) -> y [N, K, OH, OW] from M [a^2, K, N*th*tw] (attributes output_size [N, OH, OW] and tile m).
 * An anchor (like the convolution it finishes): the bias, activation and residual add fuse into its kernel.
 */
defineOp({
  name: 'winograd_output',
  pattern: OpPattern.OutEWiseFusable,
  inferType: symbolicBatch(([m], a) => {
    const dims = staticDims(m, 'winograd_output');
    const { n, oh, ow, th, tw, alpha } = tiling(a);
    if (m.dtype !== 'float32' || dims.length !== 3 || dims[0] !== alpha * alpha || dims[2] !== n * th * tw) {
      shapeError(
        `winograd_output: needs float32 [${alpha * alpha}, K, ${n * th * tw}] for a ${oh}x${ow} output, got ${m.dtype} [${dims}]`,
      );
    }
    return tensorType([n, dims[1], oh, ow], m.dtype);
  }),
  compute: ([m], a) => {
    const { n, oh, ow, th, tw, m: M, alpha: ALPHA, math } = tiling(a);
    const K = m.shape[1];
    // rows: Z[k, p, b, t] = (A^T M)[p] along column b of the tile (filters outermost, for threads)
    const rows = compute(
      'winograd_output_rows',
      [K, M, ALPHA, n * th * tw],
      ([k, p, b, t]) => math.outputRow(p, (a1) => at(m, E.add(E.mul(a1, ALPHA), b), k, t)),
      { materialize: true, ...rowUnroll(math, 1, M) },
    );
    // columns: y = (Z A)[q] at output position (p, q) = (oy % m, ox % m) of tile (oy / m, ox / m); the m column
    // positions are interleaved in memory, so lanes run over tiles, one loop per position
    return compute(
      'winograd_output',
      [n, K, oh, ow],
      ([nn, k, oy, ox]) => {
        const t = E.add(E.mul(E.add(E.mul(nn, th), E.floordiv(oy, M)), tw), E.floordiv(ox, M));
        const p = E.floormod(oy, M);
        return math.outputRow(E.floormod(ox, M), (b) => at(rows, k, p, b, t));
      },
      { laneInterleave: M },
    );
  },
});

/**
 * The transformed filters U = G g G^T of a float32 weight [K, C, 3, 3] for output tile m, laid out [a^2, K, C]
 * (the left operand of the a^2 matmuls; a = m + 2). Computed once at compile time, in float64.
 */
export function winogradWeights(w: Constant, tile: WinogradTile = 2): Constant {
  const [K, C, r1, r2] = w.shape;
  if (r1 !== WINOGRAD_R || r2 !== WINOGRAD_R || w.dtype !== 'float32')
    throw new KilnError('E_INTERNAL', `winogradWeights: expected float32 [K, C, 3, 3], got ${w.dtype} [${w.shape}]`, {
      hint: 'please report this with the model',
    });
  const G = MATH[tile].G,
    ALPHA = G.length;
  const src = w.data as Float32Array,
    dst = new Float32Array(ALPHA * ALPHA * K * C);
  const g = new Float64Array(9),
    gg = new Float64Array(ALPHA * WINOGRAD_R);
  for (let k = 0; k < K; k++) {
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < 9; i++) g[i] = src[(k * C + c) * 9 + i];
      // G g: [a, 3], then (G g) G^T: [a, a]
      for (let i = 0; i < ALPHA; i++)
        for (let j = 0; j < WINOGRAD_R; j++)
          gg[i * WINOGRAD_R + j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
      for (let i = 0; i < ALPHA; i++) {
        for (let j = 0; j < ALPHA; j++) {
          const u = gg[i * WINOGRAD_R] * G[j][0] + gg[i * WINOGRAD_R + 1] * G[j][1] + gg[i * WINOGRAD_R + 2] * G[j][2];
          dst[((i * ALPHA + j) * K + k) * C + c] = u;
        }
      }
    }
  }
  return { dtype: 'float32', shape: [ALPHA * ALPHA, K, C], data: dst };
}
