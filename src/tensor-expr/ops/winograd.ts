// Winograd convolution F(2x2, 3x3) (Lavin & Gray, 2015): a 3x3 stride-1 convolution computed per 2x2 output tile
// from a 4x4 input tile with 16 multiplies per (input channel, filter) instead of 36:
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A        (.) = elementwise, summed over input channels
// The graph pass relay-ir/passes/winograd-conv.ts rewrites such a convolution into three kernels:
//   winograd_input   V[e, c, t]  = (B^T d B)[e]  for 4x4 input tile t of channel c    (e = 4*row + column)
//   matmul           M[e, k, t]  = sum_c U[e, k, c] * V[e, c, t]  (16 independent matmuls; U = G g G^T, a constant
//                                  transformed at compile time by winogradWeights)
//   winograd_output  y[n, k, oy, ox] = (A^T M A) at tile (oy/2, ox/2), position (oy%2, ox%2)
// Each 2-D transform runs as two 1-D passes (rows, then columns) with a materialized intermediate; every row of
// B^T and A^T has at most three nonzeros of value +-1, written below as closed forms in the row index so a
// transform is two or three loads and an add per element.
import type { Tensor as Constant } from '../../runtime/tensor.js';
import { type Attrs, OpPattern } from '../../relay-ir/op.js';
import { tensorType } from '../../relay-ir/types.js';
import * as E from '../expr.js';
import { type Expr, constant, int } from '../expr.js';
import { at, compute } from '../tensor.js';
import { defineOp } from '../op-def.js';
import { ints, shapeError, staticDims } from './common.js';

/** Output tile size m and filter size r of F(m x m, r x r); a tile reads m + r - 1 = 4 inputs per dimension. */
export const WINOGRAD_M = 2;
export const WINOGRAD_R = 3;
const ALPHA = WINOGRAD_M + WINOGRAD_R - 1;

// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]: row e is d[ia(e)] + sb(e) * d[ib(e)] with
// ia = [0,1,2,1], ib = [2,2,1,3], sb = [-1,1,-1,-1] (floor division on e in 0..3)
const inA = (e: Expr): Expr => E.sub(e, E.mul(E.floordiv(e, 3), 2));
const inB = (e: Expr): Expr => E.add(E.sub(int(2), E.floordiv(e, 2)), E.mul(E.floordiv(e, 3), 2));
const inSign = (e: Expr): Expr => E.cast('float32', E.sub(E.mul(E.sub(E.floormod(e, 2), E.floordiv(e, 3)), 2), int(1)));
/** Row e of B^T applied to the 4 values d(0..3). */
const inputRow = (e: Expr, d: (i: Expr) => Expr): Expr => E.add(d(inA(e)), E.mul(inSign(e), d(inB(e))));

// A^T = [1 1 1 0; 0 1 -1 -1]: row p is m(1) + (1 - 2p) * (m(2p) + m(2 + p))
const outputRow = (p: Expr, m: (a: Expr) => Expr): Expr =>
  E.add(m(int(1)), E.mul(E.cast('float32', E.sub(int(1), E.mul(p, 2))), E.add(m(E.mul(p, 2)), m(E.add(p, 2)))));

/** Tiles along each output dimension (an odd extent's last tile is half outside: computed, never stored). */
function tiling(a: Attrs): { n: number; oh: number; ow: number; th: number; tw: number } {
  const [n, oh, ow] = ints(a, 'output_size');
  if (!(n > 0 && oh > 0 && ow > 0)) shapeError(`winograd: output_size [${n}, ${oh}, ${ow}] must be positive`);
  return { n, oh, ow, th: Math.ceil(oh / WINOGRAD_M), tw: Math.ceil(ow / WINOGRAD_M) };
}

/**
 * winograd_input(x) -> V [16, C, N*th*tw]: x [N, C, H, W] read with `pads` [top, left, bottom, right] of zeros;
 * attribute output_size [N, OH, OW] is the convolution's output.
 */
defineOp({
  name: 'winograd_input',
  pattern: OpPattern.Injective,
  inferType: ([x], a) => {
    const dims = staticDims(x, 'winograd_input');
    const { n, oh, ow, th, tw } = tiling(a);
    const [pt, pl, pb, pr] = ints(a, 'pads');
    if (x.dtype !== 'float32' || dims.length !== 4 || dims[0] !== n || dims[2] + pt + pb - 2 !== oh || dims[3] + pl + pr - 2 !== ow) {
      shapeError(`winograd_input: a float32 [${n}, C, H, W] input padded by [${pt}, ${pl}, ${pb}, ${pr}] must give a ${oh}x${ow} 3x3 convolution output, got ${x.dtype} [${dims}]`);
    }
    return tensorType([ALPHA * ALPHA, dims[1], n * th * tw], x.dtype);
  },
  compute: ([x], a) => {
    const { n, th, tw } = tiling(a);
    const [pt, pl] = ints(a, 'pads');
    const [, C, H, W] = x.shape;
    const width = WINOGRAD_M * tw + WINOGRAD_R - 1;
    const padded = (nn: Expr, c: Expr, y: Expr, xx: Expr): Expr => {
      const yy = E.sub(y, pt), xs = E.sub(xx, pl);
      return E.select(E.all([E.ge(yy, 0), E.lt(yy, H), E.ge(xs, 0), E.lt(xs, W)]), at(x, nn, c, yy, xs), constant(0, 'float32'));
    };
    // rows: R[c, e1, tile row r, x] = (B^T d)[e1] over the 4 input rows of tile row r, whole padded rows wide
    // (channels outermost: the loop that threads split has many iterations)
    const rows = compute('winograd_input_rows', [C, ALPHA, n * th, width], ([c, e1, r, xx]) => {
      const nn = E.floordiv(r, th), y0 = E.mul(E.floormod(r, th), WINOGRAD_M);
      return inputRow(e1, (i) => padded(nn, c, E.add(y0, i), xx));
    }, { materialize: true });
    // columns: V[e, c, t] = (R B)[e2] over the 4 columns of tile t; lanes run along one row of tiles; threads
    // split the channels, as for the rows (each thread reads the rows it computed)
    return compute('winograd_input', [ALPHA * ALPHA, C, n * th * tw], ([e, c, t]) => {
      const e1 = E.floordiv(e, ALPHA), e2 = E.floormod(e, ALPHA);
      const r = E.floordiv(t, tw), x0 = E.mul(E.floormod(t, tw), WINOGRAD_M);
      return inputRow(e2, (j) => at(rows, c, e1, r, E.add(x0, j)));
    }, { laneRowLength: tw, parallelAxis: 1 });
  },
});

/**
 * winograd_output(M) -> y [N, K, OH, OW] from M [16, K, N*th*tw] (attribute output_size [N, OH, OW]). An anchor
 * (like the convolution it finishes): the bias, activation and residual add fuse into its kernel.
 */
defineOp({
  name: 'winograd_output',
  pattern: OpPattern.OutEWiseFusable,
  inferType: ([m], a) => {
    const dims = staticDims(m, 'winograd_output');
    const { n, oh, ow, th, tw } = tiling(a);
    if (m.dtype !== 'float32' || dims.length !== 3 || dims[0] !== ALPHA * ALPHA || dims[2] !== n * th * tw) {
      shapeError(`winograd_output: needs float32 [${ALPHA * ALPHA}, K, ${n * th * tw}] for a ${oh}x${ow} output, got ${m.dtype} [${dims}]`);
    }
    return tensorType([n, dims[1], oh, ow], m.dtype);
  },
  compute: ([m], a) => {
    const { n, oh, ow, th, tw } = tiling(a);
    const K = m.shape[1];
    // rows: Z[k, p, b, t] = (A^T M)[p] along column b of the tile (filters outermost, for threads)
    const rows = compute('winograd_output_rows', [K, WINOGRAD_M, ALPHA, n * th * tw], ([k, p, b, t]) =>
      outputRow(p, (a1) => at(m, E.add(E.mul(a1, ALPHA), b), k, t)), { materialize: true });
    // columns: y = (Z A)[q] at output position (p, q) = (oy % 2, ox % 2) of tile (oy / 2, ox / 2); the two
    // column positions are interleaved in memory, so lanes run over tiles, one loop per position
    return compute('winograd_output', [n, K, oh, ow], ([nn, k, oy, ox]) => {
      const t = E.add(E.mul(E.add(E.mul(nn, th), E.floordiv(oy, WINOGRAD_M)), tw), E.floordiv(ox, WINOGRAD_M));
      const p = E.floormod(oy, WINOGRAD_M);
      return outputRow(E.floormod(ox, WINOGRAD_M), (b) => at(rows, k, p, b, t));
    }, { laneInterleave: WINOGRAD_M });
  },
});

/**
 * The transformed filters U = G g G^T of a float32 weight [K, C, 3, 3], laid out [16, K, C] (the left operand of
 * the 16 matmuls), with G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]. Computed once at compile time.
 */
export function winogradWeights(w: Constant): Constant {
  const [K, C, r1, r2] = w.shape;
  if (r1 !== WINOGRAD_R || r2 !== WINOGRAD_R || w.dtype !== 'float32') throw new Error(`winogradWeights: expected float32 [K, C, 3, 3], got ${w.dtype} [${w.shape}]`);
  const G = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]];
  const src = w.data as Float32Array, dst = new Float32Array(ALPHA * ALPHA * K * C);
  const g = new Float64Array(9), gg = new Float64Array(ALPHA * WINOGRAD_R);
  for (let k = 0; k < K; k++) {
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < 9; i++) g[i] = src[(k * C + c) * 9 + i];
      // G g: [4, 3], then (G g) G^T: [4, 4]
      for (let i = 0; i < ALPHA; i++) for (let j = 0; j < WINOGRAD_R; j++) gg[i * WINOGRAD_R + j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
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
