// Weight pre-packing at compile time, so the vectors of a register tile read contiguous memory.
// A convolution with constant float32 weights [M, C, K...] gets them as
// [ceil(M/B), C, K..., B] (attribute weight_block = B, filters = M; missing filters are zeros), so the B output
// channels a SIMD vector computes read their weights with one vector load: B = 4 for WebAssembly's SIMD128, the
// vector width for native code (8 floats in AVX2, 16 in AVX-512; the WebAssembly kernels' 4-lane loads of the same
// artifact stay contiguous). Only ungrouped convolutions are packed; depthwise ones run their lanes along the output
// row and read one weight per tap, and so do pointwise ones and those over very few input channels (pixelLanes).
import { type Tensor, sizeOf } from '../../runtime/tensor.js';
import { FEW_CHANNELS, pointwiseConv } from '../../tensor-expr/ops/nn.js';
import {
  type CallNode,
  type ConstNode,
  type FuncNode,
  type GExpr,
  gcall,
  gconst,
  isFuncCall,
  mapFunc,
} from '../expr.js';
import type { OpSpec } from '../op.js';

export const WEIGHT_BLOCK = 4;

/** `block`: float32 lanes of the target's vectors (a multiple of 4). */
export function packWeights(fn: FuncNode, block = WEIGHT_BLOCK): FuncNode {
  return mapFunc(fn, (n) => {
    if (n.kind !== 'call' || isFuncCall(n) || n.attrs.weight_block) return undefined;
    const name = (n.op as OpSpec).name;
    if (name === 'matmul' || name === 'gemm') return packMatmul(n, block);
    if (name === 'qlinear_conv' || name === 'qlinear_matmul') return packPairs(n, name);
    if (name !== 'conv') return undefined;
    const w = n.args[1];
    if (w.kind !== 'const' || w.value.dtype !== 'float32') return undefined;
    const m = w.value.shape[0],
      group = Number(n.attrs.group ?? 1);
    // grouped convolutions, depthwise included, keep their layout: their lanes do not run over output channels
    if (group !== 1) return undefined;
    if (pixelLanes(n, block)) return undefined;
    return gcall(
      n.op as OpSpec,
      [n.args[0], gconst(packBlocks((w as ConstNode).value, block)), ...n.args.slice(2)],
      { ...n.attrs, weight_block: block, filters: m },
      n.origin,
    );
  });
}

/**
 * A pointwise convolution (1x1, stride 1, no padding) over few input channels and wide rows runs its lanes along
 * the output row instead of over output channels (rows of its register tile over filters, weights unpacked):
 * with a short reduction, the channel-lane tile's write-back (4 channels of a pixel are 4 planes apart: scalar
 * stores) costs about as much as its arithmetic, and row lanes store whole vectors. So does a stride-1 convolution
 * over FEW_CHANNELS input channels (super-resolution's first layer: one channel, 5x5 taps); strided ones (the
 * first layers of ResNet, MobileNetV2, SqueezeNet) keep channel lanes, as row lanes would read every other column.
 * With wide vectors (`block` lanes, native code) a pointwise convolution whose filters leave much of the last vector
 * empty (MobileNetV2's 24-filter projections at 16 lanes: a third of the tile padding, then a crop) takes row lanes,
 * and the reduction counts as short up to two vectors of channels: the write-back scatters `block` channels.
 */
function pixelLanes(n: CallNode, block: number): boolean {
  const x = n.args[0].type,
    w = n.args[1].type;
  if (x?.kind !== 'tensor' || w?.kind !== 'tensor' || x.shape.length !== 4) return false;
  const channels = Number(x.shape[1]),
    filters = Number(w.shape[0]);
  const pointwise = pointwiseConv(n.attrs, w.shape.slice(2).map(Number));
  const unitStride = ((n.attrs.strides as number[] | undefined) ?? []).every((s) => Number(s) === 1);
  return (
    Number(n.attrs.group ?? 1) === 1 &&
    Number(x.shape[3]) >= 8 &&
    ((channels <= FEW_CHANNELS && unitStride) ||
      (pointwise &&
        (channels <= Math.max(PIXEL_LANES_MAX_CHANNELS, 2 * block) ||
          Math.ceil(filters / block) * block > filters * (1 + MAX_PADDED_FILTERS))))
  );
}

/** MobileNetV2's 16- and 24-channel expansions and SqueezeNet's 16-channel ones (55 wide: last vector shifted
 * back) gain 8-12% per kernel with row lanes (A/B in one process). */
const PIXEL_LANES_MAX_CHANNELS = 24;
/** The share of padding filters beyond which a pointwise convolution takes row lanes (24 filters in 32: 1/3). */
const MAX_PADDED_FILTERS = 1 / 8;

/**
 * matmul / gemm with a constant float32 2-D right-hand operand [K, N] (gemm: transB applied first, transA = 0):
 * stored as [ceil(N/B), K, B] (weight_block = B, columns = N), so a register tile's columns are one contiguous
 * panel that streams through the cache once per row block.
 */
function packMatmul(n: CallNode, block: number): GExpr | undefined {
  const b = n.args[1];
  const gemm = (n.op as OpSpec).name === 'gemm';
  if (
    b.kind !== 'const' ||
    b.value.dtype !== 'float32' ||
    b.value.shape.length !== 2 ||
    n.args[0].type.kind !== 'tensor'
  )
    return undefined;
  if (gemm && Number(n.attrs.transA ?? 0)) return undefined;
  if (!gemm && n.args[0].type.shape.length < 2) return undefined;
  const kn = gemm && Number(n.attrs.transB ?? 0) ? transpose2d(b.value) : b.value;
  const cols = kn.shape[1];
  // [K, N] -> [N, K] rows, packed in blocks of B rows = [ceil(N/B), K, B]
  const packed = packBlocks(transpose2d(kn), block);
  return gcall(
    n.op as OpSpec,
    [n.args[0], gconst(packed), ...n.args.slice(2)],
    { ...n.attrs, ...(gemm ? { transB: 0 } : {}), weight_block: block, columns: cols },
    n.origin,
  );
}

function transpose2d(t: Tensor): Tensor {
  const [r, c] = t.shape,
    src = t.data as Float32Array,
    dst = new Float32Array(src.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) dst[j * r + i] = src[i * c + j];
  return { dtype: 'float32', shape: [c, r], data: dst };
}

function packBlocks(w: Tensor, b: number): Tensor {
  const [m, ...rest] = w.shape;
  const inner = sizeOf(rest),
    blocks = Math.ceil(m / b);
  const src = w.data as Float32Array,
    dst = new Float32Array(blocks * b * inner);
  for (let o = 0; o < m; o++)
    for (let i = 0; i < inner; i++) dst[(Math.floor(o / b) * inner + i) * b + (o % b)] = src[o * inner + i];
  return { dtype: 'float32', shape: [blocks, ...rest, b], data: dst };
}

/**
 * The integer operators' weights (tensor-expr/ops/quantized.ts): pairs of reduction elements of 4 adjacent output
 * channels adjacent, so that one 8-byte load widened to 8 int16 lanes feeds one i32x4.dot_i16x8_s. qlinear_conv
 * [M, C, K...] -> [ceil(M/4), ceil(C/2), K..., 4, 2] (ungrouped only: the lanes run over filters that read one
 * input channel pair); qlinear_matmul [K, N] -> [ceil(N/4), ceil(K/2), 4, 2]. Missing filters and channels are zeros.
 */
function packPairs(n: CallNode, name: string): GExpr | undefined {
  const w = n.args[1];
  if (w.kind !== 'const' || (name === 'qlinear_conv' && Number(n.attrs.group ?? 1) !== 1)) return undefined;
  const t = (w as ConstNode).value;
  const src = t.data as Int8Array | Int16Array;
  const B = WEIGHT_BLOCK;
  // as [M, C, inner]: conv filters x channels x taps; matmul columns x depth x 1 (b is [K, N])
  const conv = name === 'qlinear_conv';
  const [M, C] = conv ? [t.shape[0], t.shape[1]] : [t.shape[1], t.shape[0]];
  const inner = conv ? sizeOf(t.shape.slice(2)) : 1;
  const at = conv
    ? (m: number, c: number, k: number) => src[(m * C + c) * inner + k]
    : (m: number, c: number) => src[c * M + m];
  const mb = Math.ceil(M / B),
    cp = Math.ceil(C / 2);
  const dst = new (src.constructor as Int8ArrayConstructor | Int16ArrayConstructor)(mb * cp * inner * B * 2);
  for (let m = 0; m < M; m++)
    for (let c = 0; c < C; c++)
      for (let k = 0; k < inner; k++)
        dst[((Math.floor(m / B) * cp + (c >> 1)) * inner + k) * B * 2 + (m % B) * 2 + (c & 1)] = at(m, c, k);
  const shape = conv ? [mb, cp, ...t.shape.slice(2), B, 2] : [mb, cp, B, 2];
  const attrs: Record<string, number> = conv ? { filters: M, channels: C } : { columns: M, depth: C };
  return gcall(
    n.op as OpSpec,
    [n.args[0], gconst({ dtype: t.dtype, shape, data: dst }), ...n.args.slice(2)],
    { ...n.attrs, weight_block: B, ...attrs },
    n.origin,
  );
}
