// Folds an inference batch-norm into the convolution before it: W' = W * s, b' = (b - mean) * s + beta with
// s = gamma / sqrt(var + eps) per output channel. Applies when the conv has no other consumer and all
// parameters are constants.
import { ARRAY } from '../../runtime/dtype.js';
import type { Tensor } from '../../runtime/tensor.js';
import {
  type CallNode,
  type ConstNode,
  type FuncNode,
  type GExpr,
  argumentUses,
  gcall,
  gconst,
  mapFunc,
  primitiveOp as opOf,
} from '../expr.js';
import type { OpSpec } from '../op.js';

const cvals = (e: GExpr): Float64Array | undefined =>
  e.kind === 'const' && (e as ConstNode).value.dtype === 'float32'
    ? Float64Array.from((e as ConstNode).value.data as Float32Array)
    : undefined;

export function foldBatchNorm(fn: FuncNode): FuncNode {
  const uses = argumentUses(fn);
  return mapFunc(fn, (n) => {
    if (opOf(n) !== 'batch_norm') return undefined;
    const bn = n as CallNode;
    const conv = bn.args[0] as CallNode;
    if (opOf(conv) !== 'conv' || (uses.get(conv) ?? 0) > 1) return undefined;
    const [gamma, beta, mean, variance] = bn.args.slice(1).map(cvals);
    const w = conv.args[1].kind === 'const' ? (conv.args[1] as ConstNode).value : undefined;
    const b = conv.args[2] ? cvals(conv.args[2]) : undefined;
    if (!gamma || !beta || !mean || !variance || !w || w.dtype !== 'float32' || (conv.args[2] && !b)) return undefined;
    const eps = Number(bn.attrs.epsilon ?? 1e-5);
    const k = w.shape[0],
      per = w.data.length / k;
    const wd = new ARRAY.float32(w.data.length) as Float32Array,
      bd = new ARRAY.float32(k) as Float32Array;
    for (let c = 0; c < k; c++) {
      const s = gamma[c] / Math.sqrt(variance[c] + eps);
      for (let i = 0; i < per; i++) wd[c * per + i] = (w.data as Float32Array)[c * per + i] * s;
      bd[c] = ((b ? b[c] : 0) - mean[c]) * s + beta[c];
    }
    const W: Tensor = { dtype: 'float32', shape: w.shape, data: wd },
      Bv: Tensor = { dtype: 'float32', shape: [k], data: bd };
    return gcall(conv.op as OpSpec, [conv.args[0], gconst(W), gconst(Bv)], conv.attrs, [...conv.origin, ...bn.origin]);
  });
}
