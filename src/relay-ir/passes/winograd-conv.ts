// Winograd F(2x2, 3x3) for the convolutions where it pays (tensor-expr/ops/winograd.ts has the math): a float32
// 3x3 stride-1 ungrouped 2-D convolution with constant weights becomes
//   winograd_input(x) -> matmul(U, V) -> winograd_output(M) [-> add bias]
// with U = the weights transformed at compile time. It does 16 multiplies per output tile and channel pair where
// direct convolution does 36, and the 16 batched matmuls run the register-tiled matmul schedule; the transforms
// cost memory traffic, so the rewrite needs enough channels and tiles to amortize them.
import type { Tensor } from '../../runtime/tensor.js';
import { winogradWeights, WINOGRAD_M } from '../../tensor-expr/ops/winograd.js';
import { type FuncNode, gcall, gconst, isFuncCall, mapFunc } from '../expr.js';
import { getOp, type OpSpec } from '../op.js';

/** Smallest input and output channel counts worth the transforms (below, direct convolution is as fast). */
const MIN_CHANNELS = 16;
/** Smallest number of 2x2 output tiles: with fewer, the matmuls are too narrow for their SIMD register tiles. */
const MIN_TILES = 16;

export function winogradConv(fn: FuncNode): FuncNode {
  return mapFunc(fn, (n) => {
    if (n.kind !== 'call' || isFuncCall(n) || (n.op as OpSpec).name !== 'conv') return undefined;
    const [x, w, bias] = n.args;
    if (x.type.kind !== 'tensor' || n.type.kind !== 'tensor' || w.kind !== 'const' || w.value.dtype !== 'float32' || x.type.dtype !== 'float32') return undefined;
    if (n.attrs.weight_block || x.type.shape.length !== 4 || w.value.shape.length !== 4) return undefined;
    const [K, C, r1, r2] = w.value.shape;
    const ones = (k: string) => ((n.attrs[k] as readonly number[] | undefined) ?? [1, 1]).every((v) => v === 1);
    if (r1 !== 3 || r2 !== 3 || Number(n.attrs.group ?? 1) !== 1 || !ones('strides') || !ones('dilations')) return undefined;
    const [N, , OH, OW] = n.type.shape as number[];
    if (C < MIN_CHANNELS || K < MIN_CHANNELS || N * Math.ceil(OH / WINOGRAD_M) * Math.ceil(OW / WINOGRAD_M) < MIN_TILES) return undefined;
    if (bias && bias.kind !== 'const') return undefined;
    const pads = (n.attrs.pads as readonly number[] | undefined) ?? [0, 0, 0, 0];
    const output_size = [N, OH, OW];
    const v = gcall(getOp('winograd_input'), [x], { pads, output_size }, n.origin);
    const m = gcall(getOp('matmul'), [gconst(winogradWeights(w.value)), v], {}, n.origin);
    const y = gcall(getOp('winograd_output'), [m], { output_size }, n.origin);
    if (!bias) return y;
    const b = bias.value as Tensor;
    return gcall(getOp('add'), [y, gconst({ ...b, shape: [1, K, 1, 1] })], {}, n.origin);
  });
}
