// Weight pre-packing at compile time: a convolution with constant float32 weights [M, C, K...] and M divisible
// by 4 gets them as [M/4, C, K..., 4] (attribute weight_block = 4), so the 4 output channels a SIMD lane group
// computes read their weights with one vector load. Depthwise/grouped convolutions keep their layout.
import type { Tensor } from '../../runtime/tensor.js';
import { type ConstNode, type FuncNode, gcall, gconst, isFuncCall, mapFunc } from '../expr.js';
import type { OpSpec } from '../op.js';

export const WEIGHT_BLOCK = 4;

export function packConvWeights(fn: FuncNode): FuncNode {
  return mapFunc(fn, (n) => {
    if (n.kind !== 'call' || isFuncCall(n) || (n.op as OpSpec).name !== 'conv' || n.attrs.weight_block) return undefined;
    const w = n.args[1];
    if (w.kind !== 'const' || w.value.dtype !== 'float32' || Number(n.attrs.group ?? 1) !== 1) return undefined;
    const [m] = w.value.shape;
    if (m % WEIGHT_BLOCK !== 0) return undefined;
    return gcall(n.op as OpSpec, [n.args[0], gconst(packBlocks((w as ConstNode).value, WEIGHT_BLOCK)), ...n.args.slice(2)],
      { ...n.attrs, weight_block: WEIGHT_BLOCK }, n.origin);
  });
}

function packBlocks(w: Tensor, b: number): Tensor {
  const [m, ...rest] = w.shape;
  const inner = rest.reduce((p, q) => p * q, 1);
  const src = w.data as Float32Array, dst = new Float32Array(src.length);
  for (let o = 0; o < m; o++) for (let i = 0; i < inner; i++) dst[(Math.floor(o / b) * inner + i) * b + (o % b)] = src[o * inner + i];
  return { dtype: 'float32', shape: [m / b, ...rest, b], data: dst };
}
