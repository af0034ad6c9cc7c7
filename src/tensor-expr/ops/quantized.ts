// Integer kernels of quantized models: qlinear_conv and qlinear_matmul. Both accumulate (x - x_zero_point) times
// the weight in int32 and requantize in their epilogue: y = saturate(round_half_even(float(acc + bias) * multiplier)
// + y_zero_point), clamped to [qmin, qmax] (a fused ReLU or clip narrows them), as ONNX Runtime's QLinearConv and
// its QDQ fusion compute. The weight is a constant with its zero point already subtracted (int8, or int16 where
// that does not fit). Graph passes make these from QDQ patterns (relay-ir/passes/fuse-qdq.ts) and the frontend from
// QLinearConv / QLinearMatMul.
//
// Packed weights (attribute weight_block = 4, made by pack-weights.ts): pairs of reduction elements of 4 adjacent
// output channels are adjacent, [ceil(M/4), ceil(C/2), K..., 4, 2], and the reduction runs over pairs: each step
// adds x[c] * w[m, c] + x[c+1] * w[m, c+1], which WebAssembly computes for 4 channels with one i32x4.dot_i16x8_s.
import type { DType } from '../../runtime/dtype.js';
import { sizeOf } from '../../runtime/tensor.js';
import { type Attrs, OpPattern } from '../../relay-ir/op.js';
import { type TensorType, tensorType } from '../../relay-ir/types.js';
import * as E from '../expr.js';
import { type Expr, type IterVar, constant, int } from '../expr.js';
import { type Tensor, at, compute, reduceAxis } from '../tensor.js';
import { defineOp } from '../op-def.js';
import { num, shapeError, staticDims, symbolicBatch } from './common.js';
import { convGeometry, isPointwise, windowPos } from './nn.js';

const QTYPES: readonly DType[] = ['uint8', 'int8'];
const WTYPES: readonly DType[] = ['int8', 'int16'];
export const QLINEAR_BLOCK = 4;

const i32 = (e: Expr) => E.cast('int32', e);
const scalarAt = (t: Tensor) => at(t, ...t.shape.map(() => 0));
/** A per-channel parameter (one element, or one per channel) at channel `m`. */
const channelAt = (t: Tensor, m: Expr) => (sizeOf(t.shape) === 1 ? scalarAt(t) : at(t, m));

/** Checks the quantization parameters both ops share; returns the output type. */
function checkParams(
  op: string,
  x: TensorType,
  w: TensorType,
  bias: TensorType,
  xz: TensorType,
  mult: TensorType,
  yz: TensorType,
  channels: number,
): DType {
  const n = (t: TensorType) => sizeOf(staticDims(t, op));
  if (!QTYPES.includes(x.dtype)) shapeError(`${op}: input must be uint8 or int8, got ${x.dtype}`);
  if (!WTYPES.includes(w.dtype)) shapeError(`${op}: weight must be int8 or int16, got ${w.dtype}`);
  if (xz.dtype !== x.dtype || n(xz) !== 1) shapeError(`${op}: input zero point must be one ${x.dtype}`);
  if (bias.dtype !== 'int32' || n(bias) !== channels) shapeError(`${op}: bias must be int32 [${channels}]`);
  if (mult.dtype !== 'float32' || (n(mult) !== 1 && n(mult) !== channels))
    shapeError(`${op}: multiplier must be float32 of 1 or ${channels} elements`);
  if (!QTYPES.includes(yz.dtype) || n(yz) !== 1) shapeError(`${op}: output zero point must be one uint8 or int8`);
  return yz.dtype;
}

/** The requantizing epilogue: acc (int32) + bias, scaled, rounded half to even, shifted by yz, saturated. */
function requantize(acc: Expr, bias: Expr, mult: Expr, yz: Expr, a: Attrs, to: DType): Expr {
  const scaled = E.mul(E.cast('float32', E.add(acc, bias)), mult);
  const y = E.add(E.unary('round', scaled), E.cast('float32', yz));
  const f = (v: number) => constant(v, 'float32');
  return E.cast(to, E.min(E.max(y, f(num(a, 'qmin'))), f(num(a, 'qmax'))));
}

// ---------------------------------------------------------------------------------------------------------------
// qlinear_conv(x, w, bias, x_zero_point, multiplier, y_zero_point) — x [N, C, D...] uint8/int8, w [M, C/group, K...]
// (or packed), bias int32 [M], multiplier float32 [M] or [1]; attrs strides, pads, dilations, group, qmin, qmax

/** The logical [M, C/group, K...] shape of a (possibly packed) qlinear_conv weight. */
function logicalConvWeight(w: readonly number[], a: Attrs): number[] {
  return num(a, 'weight_block', 0) ? [num(a, 'filters'), num(a, 'channels'), ...w.slice(2, -2)] : [...w];
}

defineOp({
  name: 'qlinear_conv',
  pattern: OpPattern.OutEWiseFusable,
  inferType: symbolicBatch(([x, w, bias, xz, mult, yz], a) => {
    const ws = logicalConvWeight(staticDims(w, 'qlinear_conv weight'), a);
    const { out } = convGeometry(staticDims(x, 'qlinear_conv input'), ws, a);
    return tensorType(out, checkParams('qlinear_conv', x, w, bias, xz, mult, yz, ws[0]));
  }),
  compute: ([x, w, bias, xz, mult, yz], a, outT) => {
    const ws = logicalConvWeight(w.shape, a);
    const { win, out, group } = convGeometry(x.shape, ws, a);
    const cpg = ws[1],
      mpg = ws[0] / group;
    const block = num(a, 'weight_block', 0);
    const pointwise = isPointwise(win);
    const depthwise = cpg === 1 && mpg === 1 && out.length >= 4;
    // the float conv's lane and row choices (nn.ts convCompute): channel lanes when packed, row lanes when depthwise
    const hints = block
      ? {
          vectorAxis: 1,
          rowAxis: out.length - 1,
          ...(pointwise && out.length > 3 ? { rowAxes: out.length - 2 } : {}),
          integerTile: true,
        }
      : depthwise
        ? { vectorAxis: out.length - 1, rowAxis: out.length - 2, integerTile: true }
        : undefined;
    const padded = block ? [out[0], Math.ceil(ws[0] / block) * block, ...out.slice(2)] : out;
    const xzero = i32(scalarAt(xz));
    const acc = compute(
      'qconv_acc',
      padded,
      ([n, m, ...o]) => {
        const rk = win.kernel.map((kk, i) => (kk === 1 ? undefined : reduceAxis(kk, `rk${i}_`)));
        const kv = rk.map((r) => (r ? r.v : int(0)));
        const conds: Expr[] = [];
        const pos = o.map((oi, i) => {
          const p = windowPos(win, i, oi, kv[i], out[2 + i], 0, x.shape[2 + i]);
          conds.push(...p.conds);
          return p.pos;
        });
        // (x - x_zero_point), zero in the padding (ONNX pads a quantized input with its zero point)
        const xv = (c: Expr, extra: Expr[] = []) =>
          E.select(E.all([...conds, ...extra]), E.sub(i32(E.load(x, [n, c, ...pos])), xzero), int(0));
        const kernelAxes = rk.filter((r): r is IterVar => !!r);
        if (block) {
          const rp = reduceAxis(Math.ceil(cpg / 2), 'rp');
          const term = (t: number) => {
            const c = E.add(E.mul(rp.v, 2), t);
            const wv = E.load(w, [E.floordiv(m, block), rp.v, ...kv, E.floormod(m, block), int(t)]);
            return E.mul(xv(c, t === 1 && cpg % 2 ? [E.lt(c, cpg)] : []), i32(wv));
          };
          return E.sum(E.add(term(0), term(1)), [rp, ...kernelAxes]);
        }
        const rc = reduceAxis(cpg, 'rc');
        const c = group === 1 ? rc.v : E.add(E.mul(E.floordiv(m, mpg), cpg), rc.v);
        return E.sum(E.mul(xv(c), i32(E.load(w, [m, rc.v, ...kv]))), [rc, ...kernelAxes]);
      },
      hints,
    );
    return compute('qconv', outT.shape, (idx) =>
      requantize(E.load(acc, idx), channelAt(bias, idx[1]), channelAt(mult, idx[1]), scalarAt(yz), a, outT.dtype),
    );
  },
});

// ---------------------------------------------------------------------------------------------------------------
// qlinear_matmul(a, b, bias, a_zero_point, multiplier, y_zero_point) — a [..., M, K] uint8/int8, b [K, N] (or
// packed), bias int32 [N], multiplier float32 [N] or [1]

function logicalMatmulWeight(b: readonly number[], a: Attrs): number[] {
  return num(a, 'weight_block', 0) ? [num(a, 'depth'), num(a, 'columns')] : [...b];
}

defineOp({
  name: 'qlinear_matmul',
  pattern: OpPattern.OutEWiseFusable,
  inferType: ([x, w, bias, xz, mult, yz], a) => {
    const [k, n] = logicalMatmulWeight(staticDims(w, 'qlinear_matmul weight'), a);
    const xs = x.shape;
    if (xs.length < 1 || xs[xs.length - 1] !== k)
      shapeError(`qlinear_matmul: input [${xs}] does not end with the weight's depth ${k}`);
    return tensorType([...xs.slice(0, -1), n], checkParams('qlinear_matmul', x, w, bias, xz, mult, yz, n));
  },
  compute: ([x, w, bias, xz, mult, yz], a, outT) => {
    const [K, N] = logicalMatmulWeight(w.shape, a);
    const block = num(a, 'weight_block', 0);
    const lead = x.shape.slice(0, -1);
    const padded = [...lead, block ? Math.ceil(N / block) * block : N];
    const xzero = i32(scalarAt(xz));
    const acc = compute(
      'qmatmul_acc',
      padded,
      (idx) => {
        const rows = idx.slice(0, -1),
          n = idx[idx.length - 1];
        const xv = (k: Expr, extra: Expr[] = []) => {
          const v = E.sub(i32(E.load(x, [...rows, k])), xzero);
          return extra.length ? E.select(E.all(extra), v, int(0)) : v;
        };
        if (block) {
          const kp = reduceAxis(Math.ceil(K / 2), 'kp');
          const term = (t: number) => {
            const k = E.add(E.mul(kp.v, 2), t);
            const wv = E.load(w, [E.floordiv(n, block), kp.v, E.floormod(n, block), int(t)]);
            return E.mul(xv(k, t === 1 && K % 2 ? [E.lt(k, K)] : []), i32(wv));
          };
          return E.sum(E.add(term(0), term(1)), [kp]);
        }
        const k = reduceAxis(K, 'k');
        return E.sum(E.mul(xv(k.v), i32(E.load(w, [k.v, n]))), [k]);
      },
      block ? { integerTile: true } : undefined,
    );
    return compute('qmatmul', outT.shape, (idx) => {
      const n = idx[idx.length - 1];
      return requantize(E.load(acc, idx), channelAt(bias, n), channelAt(mult, n), scalarAt(yz), a, outT.dtype);
    });
  },
});
