// Winograd F(m x m, 3x3) for the convolutions where it pays (tensor-expr/ops/winograd.ts has the math): a float32
// 3x3 stride-1 ungrouped 2-D convolution with constant weights becomes
//   winograd_input(x) -> matmul(U, V) -> winograd_output(M) [-> add bias]
// with U = the weights transformed at compile time. Per m x m output tile and channel pair it does (m+2)^2
// multiplies where direct convolution does 9 m^2 (m = 2: 16 for 36; m = 4: 36 for 144), and the (m+2)^2 batched
// matmuls run the register-tiled matmul schedule; the transforms cost memory traffic, so the rewrite needs enough
// channels and tiles to amortize them. m = 4 needs more tiles still: its matmuls are 4x narrower.
import type { Tensor } from '../../runtime/tensor.js';
import { type WinogradTile, winogradWeights } from '../../tensor-expr/ops/winograd.js';
import { type FuncNode, gcall, gconst, isFuncCall, mapFunc } from '../expr.js';
import { getOp, type OpSpec } from '../op.js';
import { isStatic } from '../types.js';

/** Smallest input and output channel counts worth the transforms (below, direct convolution is as fast). */
const MIN_CHANNELS = 16;
/** Smallest number of output tiles: with fewer, the matmuls are too narrow for their SIMD register tiles. */
const MIN_TILES = 16;
/**
 * Most output computed per output kept with F(4x4, 3x3) (tiles past the edge): 14x14 (16 tiles, 1.31) still
 * gains (ResNet-18's layer 3: 1.025x), 13x13 (1.51) no longer does.
 */
const MAX_WASTE_4 = 1.35;

/** The output tile size for an N x OH x OW convolution output, or undefined where Winograd does not pay. */
export function winogradTile(n: number, oh: number, ow: number): WinogradTile | undefined {
  const tiles = (m: number) => n * Math.ceil(oh / m) * Math.ceil(ow / m);
  if (tiles(4) >= MIN_TILES && (tiles(4) * 16) / (n * oh * ow) <= MAX_WASTE_4) return 4;
  return tiles(2) >= MIN_TILES ? 2 : undefined;
}

/** `tile` forces the output tile size wherever Winograd applies (tests, and users who measured better). */
export function winogradConv(fn: FuncNode, tile?: WinogradTile): FuncNode {
  return mapFunc(fn, (n) => {
    if (n.kind !== 'call' || isFuncCall(n) || (n.op as OpSpec).name !== 'conv') return undefined;
    const [x, w, bias] = n.args;
    if (
      x.type.kind !== 'tensor' ||
      n.type.kind !== 'tensor' ||
      w.kind !== 'const' ||
      w.value.dtype !== 'float32' ||
      x.type.dtype !== 'float32'
    )
      return undefined;
    if (n.attrs.weight_block || x.type.shape.length !== 4 || w.value.shape.length !== 4) return undefined;
    const [K, C, r1, r2] = w.value.shape;
    const ones = (k: string) => ((n.attrs[k] as readonly number[] | undefined) ?? [1, 1]).every((v) => v === 1);
    if (r1 !== 3 || r2 !== 3 || Number(n.attrs.group ?? 1) !== 1 || !ones('strides') || !ones('dilations'))
      return undefined;
    // (with a symbolic batch the choice waits until the graph is bound to sizes)
    if (!isStatic(n.type)) return undefined;
    const [N, , OH, OW] = n.type.shape as number[];
    const auto = winogradTile(N, OH, OW);
    if (C < MIN_CHANNELS || K < MIN_CHANNELS || !auto) return undefined;
    const m = tile ?? auto;
    if (bias && bias.kind !== 'const') return undefined;
    const pads = (n.attrs.pads as readonly number[] | undefined) ?? [0, 0, 0, 0];
    const output_size = [N, OH, OW];
    const v = gcall(getOp('winograd_input'), [x], { pads, output_size, tile: m }, n.origin);
    const prod = gcall(getOp('matmul'), [gconst(winogradWeights(w.value, m)), v], {}, n.origin);
    const y = gcall(getOp('winograd_output'), [prod], { output_size, tile: m }, n.origin);
    if (!bias) return y;
    const b = bias.value as Tensor;
    return gcall(getOp('add'), [y, gconst({ ...b, shape: [1, K, 1, 1] })], {}, n.origin);
  });
}
