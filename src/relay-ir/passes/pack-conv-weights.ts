// Weight pre-packing at compile time: a convolution with constant float32 weights [M, C, K...] gets them as
// [ceil(M/4), C, K..., 4] (attribute weight_block = 4, filters = M; missing filters are zeros), so the 4 output
// channels a SIMD lane group computes read their weights with one vector load. Plain and depthwise
// convolutions are packed (depthwise only when M is a multiple of 4); other grouped ones keep their layout.
import type { Tensor } from '../../runtime/tensor.js';
import { type ConstNode, type FuncNode, gcall, gconst, isFuncCall, mapFunc } from '../expr.js';
import type { OpSpec } from '../op.js';

export const WEIGHT_BLOCK = 4;

export function packConvWeights(fn: FuncNode): FuncNode {
  return mapFunc(fn, (n) => {
    if (n.kind !== 'call' || isFuncCall(n) || (n.op as OpSpec).name !== 'conv' || n.attrs.weight_block) return undefined;
    const w = n.args[1];
    if (w.kind !== 'const' || w.value.dtype !== 'float32') return undefined;
    const [m, cpg] = w.value.shape, group = Number(n.attrs.group ?? 1);
    const depthwise = group > 1 && cpg === 1 && group === m && m % WEIGHT_BLOCK === 0;
    if (group !== 1 && !depthwise) return undefined;
    return gcall(n.op as OpSpec, [n.args[0], gconst(packBlocks((w as ConstNode).value, WEIGHT_BLOCK)), ...n.args.slice(2)],
      { ...n.attrs, weight_block: WEIGHT_BLOCK, filters: m }, n.origin);
  });
}

function packBlocks(w: Tensor, b: number): Tensor {
  const [m, ...rest] = w.shape;
  const inner = rest.reduce((p, q) => p * q, 1), blocks = Math.ceil(m / b);
  const src = w.data as Float32Array, dst = new Float32Array(blocks * b * inner);
  for (let o = 0; o < m; o++) for (let i = 0; i < inner; i++) dst[(Math.floor(o / b) * inner + i) * b + (o % b)] = src[o * inner + i];
  return { dtype: 'float32', shape: [blocks, ...rest, b], data: dst };
}
