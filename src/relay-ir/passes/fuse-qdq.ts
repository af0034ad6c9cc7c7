// QDQ fusion, as ONNX Runtime's QDQ transformer does it: a convolution or matrix product whose operands are
// dequantized (DequantizeLinear of a uint8/int8 activation and of a constant int8 weight, an int32 bias dequantized
// with the product of their scales) and whose result, after an optional ReLU or clip, is quantized again, becomes
// one integer operator (tensor-expr/ops/quantized.ts): int8 x int8 -> int32 accumulation with the requantization in
// its epilogue. The activation stays quantized between such operators; what no pattern covers keeps its
// dequantize -> float -> quantize form.
//
// The patterns are the compositions frontend/onnx/ops/quantize.ts builds for DequantizeLinear
// (mul(cast(sub(cast(q, int32), zp), float32), scale)) and QuantizeLinear
// (cast(clip(add(round(div(v, scale)), zp), lo, hi), to)). The pass runs before constant folding, while the
// weights are still their integer constants.
import { type DType, isFloat } from '../../runtime/dtype.js';
import { type Tensor, sizeOf, tensor } from '../../runtime/tensor.js';
import {
  type CallNode,
  type FuncNode,
  type GExpr,
  argumentUses,
  gcall,
  gconst,
  mapFunc,
  primitiveOp,
} from '../expr.js';
import { type Attrs, getOp } from '../op.js';
import type { TensorType } from '../types.js';

/** A compile-time value of `e` (a constant, or what constant folding makes of it), else undefined. */
export type ConstantOf = (e: GExpr) => Tensor | undefined;

const QRANGE: Partial<Record<DType, [number, number]>> = { uint8: [0, 255], int8: [-128, 127] };

interface Dequantized {
  q: GExpr;
  /** Scale values (1, or one per channel), as float32 numbers. */
  scale: number[];
  zp: number[];
}

interface Quantized {
  v: GExpr;
  scale: number;
  zp: number;
  to: DType;
  lo: number;
  hi: number;
  /** The calls of the chain below `v` (each must be read only by the next). */
  chain: GExpr[];
}

const call = (e: GExpr, op: string): CallNode | undefined => (primitiveOp(e) === op ? (e as CallNode) : undefined);
const values = (t: Tensor | undefined) => (t ? Array.from(t.data as ArrayLike<number | bigint>, Number) : undefined);

/** mul(cast(sub?(cast?(q, int32), zp), float32), scale), with the scale and zero point constant. */
function matchDequantize(e: GExpr, constOf: ConstantOf): Dequantized | undefined {
  const m = call(e, 'mul');
  if (m?.type.dtype !== 'float32') return undefined;
  const scale = values(constOf(m.args[1]));
  const f = call(m.args[0], 'cast');
  if (!scale || !f || f.args[0].type.kind !== 'tensor' || f.args[0].type.dtype !== 'int32') return undefined;
  let d = f.args[0];
  let zp = [0];
  const s = call(d, 'sub');
  if (s) {
    const z = values(constOf(s.args[1]));
    if (!z) return undefined;
    zp = z;
    d = s.args[0];
  }
  const widen = call(d, 'cast');
  const q = widen ? widen.args[0] : d;
  if (q.type.kind !== 'tensor' || (widen && !QRANGE[q.type.dtype]) || (!widen && q.type.dtype !== 'int32'))
    return undefined;
  return { q, scale, zp };
}

/** cast(clip(add?(round(div(v, scale)), zp), lo, hi), uint8|int8), the scale and zero point per tensor. */
function matchQuantize(e: GExpr, constOf: ConstantOf): Quantized | undefined {
  const c = call(e, 'cast');
  const to = c?.type.dtype;
  if (!c || !to || !QRANGE[to]) return undefined;
  const clip = call(c.args[0], 'clip');
  if (!clip) return undefined;
  const [lo, hi] = [values(constOf(clip.args[1])), values(constOf(clip.args[2]))];
  let r: GExpr = clip.args[0];
  let zp = 0;
  const chain: GExpr[] = [clip];
  const add = call(r, 'add');
  if (add) {
    const z = values(constOf(add.args[1]));
    if (z?.length !== 1) return undefined;
    zp = z[0];
    chain.push(add);
    r = add.args[0];
  }
  const round = call(r, 'round');
  const div = round && call(round.args[0], 'div');
  const scale = div && values(constOf(div.args[1]));
  if (!div || !scale || scale.length !== 1 || !lo || !hi || lo.length !== 1 || hi.length !== 1) return undefined;
  if (div.args[0].type.kind !== 'tensor' || div.args[0].type.dtype !== 'float32') return undefined;
  chain.push(round!, div);
  return { v: div.args[0], scale: scale[0], zp, to, lo: lo[0], hi: hi[0], chain };
}

/**
 * A ReLU or a clip between the product and its quantization: the range [lo, hi] of real values it lets through
 * (the integer operator narrows its saturation bounds to it), and what it reads.
 */
function matchActivation(e: GExpr, constOf: ConstantOf): { x: GExpr; lo: number; hi: number } | undefined {
  const relu = call(e, 'relu');
  if (relu) return { x: relu.args[0], lo: 0, hi: Number.POSITIVE_INFINITY };
  const clip = call(e, 'clip');
  if (!clip) return undefined;
  const lo = values(constOf(clip.args[1])),
    hi = values(constOf(clip.args[2]));
  if (!lo || !hi || lo.length !== 1 || hi.length !== 1) return undefined;
  return { x: clip.args[0], lo: lo[0], hi: hi[0] };
}

const f32 = Math.fround;

export function fuseQdq(fn: FuncNode, constOf: ConstantOf): FuncNode {
  const uses = argumentUses(fn);
  for (const o of fn.body.kind === 'tuple' ? fn.body.fields : [fn.body]) uses.set(o, (uses.get(o) ?? 0) + 1);
  const once = (n: GExpr) => (uses.get(n) ?? 0) === 1;
  return mapFunc(fn, (n, orig) => {
    // match on the original (use counts) and build from the rebuilt node (producers already fused)
    const qo = matchQuantize(orig, constOf),
      qn = qo && matchQuantize(n, constOf);
    if (!qo || !qn || !qo.chain.every(once)) return undefined;
    let prodO = qo.v,
      prodN = qn.v,
      lo = Number.NEGATIVE_INFINITY,
      hi = Number.POSITIVE_INFINITY;
    const act = matchActivation(prodO, constOf);
    if (act && once(prodO)) {
      ({ lo, hi } = act);
      prodO = act.x;
      prodN = matchActivation(prodN, constOf)!.x;
    }
    if (!once(prodO)) return undefined;
    const op = primitiveOp(prodN);
    if (op !== 'conv' && op !== 'matmul' && op !== 'gemm') return undefined;
    return fuseProduct(prodN as CallNode, op, qn, lo, hi, constOf);
  });
}

function fuseProduct(
  p: CallNode,
  op: 'conv' | 'matmul' | 'gemm',
  y: Quantized,
  actLo: number,
  actHi: number,
  constOf: ConstantOf,
): GExpr | undefined {
  if (p.attrs.weight_block) return undefined;
  const x = matchDequantize(p.args[0], constOf),
    w = matchDequantize(p.args[1], constOf);
  if (!x || !w || x.scale.length !== 1 || x.zp.length !== 1 || !QRANGE[(x.q.type as TensorType).dtype])
    return undefined;
  const wq = constOf(w.q);
  if (!wq || !QRANGE[wq.dtype] || isFloat(wq.dtype)) return undefined;
  // gemm: A [M, K] times B (or its transpose), plus C broadcast along rows; no scaling
  if (op === 'gemm') {
    const a = p.attrs;
    if (Number(a.transA ?? 0) || Number(a.alpha ?? 1) !== 1 || Number(a.beta ?? 1) !== 1) return undefined;
  }
  if (op === 'matmul' && wq.shape.length !== 2) return undefined;
  const transB = op === 'gemm' && Number(p.attrs.transB ?? 0) === 1;
  // channels: conv filters (weight axis 0), product columns (axis 1 of [K, N], axis 0 when transposed)
  const channels = op === 'conv' || transB ? wq.shape[0] : wq.shape[1];
  const perChannel = (v: number[]) =>
    v.length === 1 ? Array(channels).fill(v[0]) : v.length === channels ? v : undefined;
  const ws = perChannel(w.scale),
    wz = perChannel(w.zp);
  if (!ws || !wz) return undefined;
  const xs = x.scale[0],
    xz = x.zp[0];
  // the bias: int32, dequantized with x_scale * w_scale (what the quantizer writes); anything else keeps the float path
  const biasArg = op === 'conv' ? p.args[2] : op === 'gemm' ? p.args[2] : undefined;
  let bias = new Int32Array(channels);
  if (biasArg) {
    const b = matchDequantize(biasArg, constOf);
    const bq = b && constOf(b.q);
    if (!b || !bq || bq.dtype !== 'int32' || sizeOf(bq.shape) !== channels || b.zp.some((z) => z !== 0))
      return undefined;
    const bs = b.scale.length === 1 ? Array(channels).fill(b.scale[0]) : b.scale;
    if (bs.length !== channels || bs.some((s, i) => Math.abs(s - f32(xs * ws[i])) > 1e-6 * Math.abs(s)))
      return undefined;
    bias = Int32Array.from(bq.data as Int32Array);
  }
  // the weight laid out [M, ...] for conv and [K, N] for a product
  let wv = values(wq)!;
  let wshape = wq.shape;
  if (transB) {
    const [n, k] = wq.shape;
    wv = Array.from({ length: k * n }, (_, i) => wv[(i % n) * k + Math.floor(i / n)]);
    wshape = [k, n];
  }
  const [tlo, thi] = QRANGE[y.to]!;
  const clampQ = (v: number) => Math.min(thi, Math.max(tlo, v));
  // the activation's real-valued range in the output's quantized values (relu: from the zero point up)
  const qmin = Math.max(tlo, Math.max(y.lo, Number.isFinite(actLo) ? clampQ(Math.round(actLo / y.scale) + y.zp) : tlo));
  const qmax = Math.min(thi, Math.min(y.hi, Number.isFinite(actHi) ? clampQ(Math.round(actHi / y.scale) + y.zp) : thi));
  if (Number.isFinite(actLo) && Math.abs(actLo / y.scale - Math.round(actLo / y.scale)) > 1e-4) return undefined;
  if (Number.isFinite(actHi) && Math.abs(actHi / y.scale - Math.round(actHi / y.scale)) > 1e-4) return undefined;
  const conv = Object.fromEntries(
    ['strides', 'pads', 'dilations', 'group'].filter((k) => p.attrs[k] !== undefined).map((k) => [k, p.attrs[k]]),
  );
  return integerProduct({
    kind: op === 'conv' ? 'conv' : 'matmul',
    x: x.q,
    xScale: xs,
    xZero: xz,
    weight: wv,
    weightShape: wshape,
    wScale: ws,
    wZero: wz,
    bias,
    yScale: y.scale,
    yZero: y.zp,
    yType: y.to,
    qmin,
    qmax,
    conv,
    origin: p.origin,
  });
}

/** An integer convolution or matrix product with its quantization parameters, all known at compile time. */
export interface IntegerProductSpec {
  kind: 'conv' | 'matmul';
  /** The quantized input (uint8 or int8) and its per-tensor scale and zero point. */
  x: GExpr;
  xScale: number;
  xZero: number;
  /** The integer weight: conv [M, C/group, K...], matmul [K, N]; scale and zero point per output channel. */
  weight: readonly number[];
  weightShape: readonly number[];
  wScale: readonly number[];
  wZero: readonly number[];
  /** int32, in units of xScale * wScale (one per output channel). */
  bias: Int32Array;
  yScale: number;
  yZero: number;
  yType: DType;
  /** Saturation bounds of the output's quantized values (a fused ReLU or clip narrows them). */
  qmin: number;
  qmax: number;
  /** conv: strides, pads, dilations, group. */
  conv?: Attrs;
  origin: readonly string[];
}

/**
 * The qlinear_conv / qlinear_matmul call for `p`: the weight minus its zero point (int8 where it fits, else
 * int16), the requantization multiplier in ONNX Runtime's order (x_scale * w_scale / y_scale, float32).
 */
export function integerProduct(p: IntegerProductSpec): GExpr {
  const channels = p.kind === 'conv' ? p.weightShape[0] : p.weightShape[1];
  const inner = sizeOf(p.weightShape) / channels;
  const channelOf = (i: number) => (p.kind === 'conv' ? Math.floor(i / inner) : i % channels);
  const wd = p.weight.map((v, i) => v - p.wZero[channelOf(i)]);
  // Without padding, sum((x - xz) w) = sum(x w) - xz sum(w): the zero point's part is a constant of each channel,
  // moved into the bias, and the kernel multiplies x as it is (padding, by contrast, must read as xz).
  let xzKernel = p.xZero;
  let bias = Int32Array.from(p.bias);
  const pads = (p.conv?.pads as readonly number[] | undefined) ?? [];
  if (p.kind !== 'conv' || pads.every((v) => Number(v) === 0)) {
    const sums = new Array<number>(channels).fill(0);
    wd.forEach((v, i) => {
      sums[channelOf(i)] += v;
    });
    bias = bias.map((b, c) => b - p.xZero * sums[c]);
    xzKernel = 0;
  }
  const narrow = wd.every((v) => v >= -128 && v <= 127);
  const mult = p.wScale.map((s) => f32(f32(p.xScale * s) / p.yScale));
  const args = [
    p.x,
    gconst(tensor(narrow ? 'int8' : 'int16', [...p.weightShape], wd)),
    gconst(tensor('int32', [channels], bias)),
    gconst(tensor((p.x.type as TensorType).dtype, [], [xzKernel])),
    gconst(tensor('float32', [channels], mult)),
    gconst(tensor(p.yType, [], [p.yZero])),
  ];
  const range = { qmin: p.qmin, qmax: p.qmax };
  if (p.kind === 'conv') return gcall(getOp('qlinear_conv'), args, { ...p.conv, ...range }, p.origin);
  return gcall(getOp('qlinear_matmul'), args, range, p.origin);
}
