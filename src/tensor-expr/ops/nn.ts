// Neural-network operators: convolution, transposed convolution, pooling and normalizations.
//
// Convolutions and pools are one reduction per output element over (input channel, kernel dims); padding is a
// bounds test (a select) around the input load, never a materialized padded copy. Normalizations compute their
// statistics as separate (materialized) reduction computes and the normalization itself as the output compute,
// so the cost stays linear in the input size.
import type { DType } from '../../runtime/dtype.js';
import { isFloat } from '../../runtime/dtype.js';
import { sizeOf } from '../../runtime/tensor.js';
import { OpPattern, type Attrs } from '../../relay-ir/op.js';
import { type TensorType, tensorType } from '../../relay-ir/types.js';
import * as E from '../expr.js';
import { type Expr, type IterVar, constant, int, reduceInit } from '../expr.js';
import { type Tensor, at, compute, reduceAxis } from '../tensor.js';
import { defineOp } from '../op-def.js';
import { ints, normAxis, num, sameDtype, shapeError, staticDim, staticDims, str, symbolicBatch } from './common.js';

const k = (x: Expr, v: number): Expr => constant(v, x.dtype);
const fk = (dt: DType, v: number): Expr => constant(v, dt);
const sq = (x: Expr): Expr => E.mul(x, x);
const rsqrt = (x: Expr): Expr => E.div(k(x, 1), E.unary('sqrt', x));

function needFloat(what: string, t: TensorType): void {
  if (!isFloat(t.dtype)) shapeError(`${what} needs a float input, got ${t.dtype}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Window geometry shared by conv and pooling
// ---------------------------------------------------------------------------------------------------------------

export interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  /** begin..., end... */
  pads: number[];
}

/** `negativePads`: conv_transpose's output_shape may ask for an output larger than the full one (pads < 0 add zeros). */
function windowAttrs(a: Attrs, nsp: number, kernel: number[], negativePads = false): Window {
  const strides = ints(a, 'strides', new Array(nsp).fill(1));
  const dilations = ints(a, 'dilations', new Array(nsp).fill(1));
  const pads = ints(a, 'pads', new Array(2 * nsp).fill(0));
  if (strides.length !== nsp || dilations.length !== nsp || pads.length !== 2 * nsp || kernel.length !== nsp) {
    shapeError(
      `window attributes do not match ${nsp} spatial dims (kernel [${kernel}], strides [${strides}], dilations [${dilations}], pads [${pads}])`,
    );
  }
  // a zero or negative stride / dilation / kernel extent would divide by zero or make a window that reads nowhere
  const whole = (v: readonly number[], min: number) => v.every((x) => Number.isSafeInteger(x) && x >= min);
  if (!whole(kernel, 1)) shapeError(`kernel_shape [${kernel}] must hold whole numbers >= 1`);
  if (!whole(strides, 1)) shapeError(`strides [${strides}] must be whole numbers >= 1`);
  if (!whole(dilations, 1)) shapeError(`dilations [${dilations}] must be whole numbers >= 1`);
  if (!whole(pads, negativePads ? -Infinity : 0))
    shapeError(`pads [${pads}] must be whole numbers${negativePads ? '' : ' >= 0'}`);
  return { kernel, strides, dilations, pads };
}

/**
 * Whether a window is pointwise (1x1, stride 1, no padding): it reads the input at the output's own position.
 * Dilation cannot matter for a 1x1 window.
 */
export const isPointwise = (win: Window): boolean =>
  win.kernel.every((kk) => kk === 1) && win.strides.every((s) => s === 1) && win.pads.every((p) => p === 0);

/** Whether a convolution's attributes and kernel extents make it pointwise (graph passes decide layouts by it). */
export const pointwiseConv = (a: Attrs, kernel: number[]): boolean =>
  isPointwise(windowAttrs(a, kernel.length, kernel));

/** Output extent of a sliding window; ceil mode drops a last window that would start in the end padding. */
function windowOut(inp: number, w: Window, i: number, ceil = false): number {
  const nsp = w.kernel.length;
  const eff = (w.kernel[i] - 1) * w.dilations[i] + 1;
  const span = inp + w.pads[i] + w.pads[nsp + i] - eff;
  let o = (ceil ? Math.ceil(span / w.strides[i]) : Math.floor(span / w.strides[i])) + 1;
  if (ceil && (o - 1) * w.strides[i] >= inp + w.pads[i]) o -= 1;
  if (o <= 0)
    shapeError(`window of extent ${eff} does not fit input extent ${inp} (pads ${w.pads[i]}, ${w.pads[nsp + i]})`);
  return o;
}

/**
 * Input position of window element `kk` for output position `o` in spatial dim i, plus the conditions that keep
 * it in [lo, hi) (only those that can fail, judged from the output/kernel extents).
 */
export function windowPos(
  w: Window,
  i: number,
  o: Expr,
  kk: Expr,
  outExtent: number,
  lo: number,
  hi: number,
): { pos: Expr; conds: Expr[] } {
  const s = w.strides[i],
    d = w.dilations[i],
    pb = w.pads[i];
  const pos = E.sub(E.add(E.mul(o, s), E.mul(kk, d)), pb);
  const minPos = -pb,
    maxPos = (outExtent - 1) * s + (w.kernel[i] - 1) * d - pb;
  const conds: Expr[] = [];
  if (minPos < lo) conds.push(E.ge(pos, lo));
  if (maxPos >= hi) conds.push(E.lt(pos, hi));
  return { pos, conds };
}

// ---------------------------------------------------------------------------------------------------------------
// conv(x, w, bias?) — x [N, C, D...], w [M, C/group, K...], bias [M]; attrs strides, pads, dilations, group
// ---------------------------------------------------------------------------------------------------------------

export function convGeometry(
  x: readonly number[],
  w: readonly number[],
  a: Attrs,
): { win: Window; out: number[]; group: number } {
  const nsp = x.length - 2;
  if (nsp < 1) shapeError(`conv: input must have rank >= 3, got [${x}]`);
  if (w.length !== x.length) shapeError(`conv: weight rank ${w.length} differs from input rank ${x.length}`);
  const group = num(a, 'group', 1);
  if (!Number.isSafeInteger(group) || group < 1) shapeError(`conv: group ${group} must be a whole number >= 1`);
  if (x[1] % group !== 0 || w[0] % group !== 0)
    shapeError(`conv: channels ${x[1]} / filters ${w[0]} not divisible by group ${group}`);
  if (w[1] * group !== x[1])
    shapeError(`conv: weight has ${w[1]} channels per group, input ${x[1]} channels with group ${group}`);
  const win = windowAttrs(a, nsp, w.slice(2));
  const out = [x[0], w[0], ...x.slice(2).map((d, i) => windowOut(d, win, i))];
  return { win, out, group };
}

/** Input channels of an unpacked convolution whose lanes run along its output row whatever its kernel. */
export const FEW_CHANNELS = 4;

/**
 * The convolution reduction: out[n, m, o...] = sum over (c, k...) of xv(n, c, pos) * wv(m, c, k...), where padding
 * positions contribute zero (a select around the input load). Kernel axes of extent 1 get no loop.
 */
function convCompute(
  name: string,
  x: Tensor,
  w: Tensor,
  a: Attrs,
  zero: Expr,
  xv: (idx: Expr[]) => Expr,
  wv: (idx: Expr[]) => Expr,
): Tensor {
  const ws = logicalWeightShape(w.shape, a);
  const { win, out, group } = convGeometry(x.shape, ws, a);
  const cpg = ws[1],
    mpg = ws[0] / group;
  // Packed weights: lanes run over output channels, rows over output columns. When the filter count is not a
  // multiple of the block, the packing pads it with zero filters: compute those too, then crop.
  const block = num(a, 'weight_block', 0);
  // Depthwise (one input channel per filter): no input value is shared across filters, so lanes run along the
  // output row instead (contiguous input loads when the stride is 1), rows along the output column, tiles of rows
  // outermost (each channel's plane read top to bottom once, not once per column tile).
  const depthwise = cpg === 1 && mpg === 1 && out.length >= 4;
  // A pointwise convolution reads the input at the output's own position: its output rows and columns are one
  // contiguous axis, tiled as one.
  const pointwise = isPointwise(win);
  // An unpacked pointwise convolution (few input channels: pack-weights.ts pixelLanes; or weights computed at run
  // time), or one over FEW_CHANNELS input channels, runs its lanes along the output row, rows over filters: one
  // input vector serves every filter of the tile, one broadcast weight every lane. A pointwise one's lanes run
  // along its rows and columns as one axis (H*W: no partial vector at each row's end, tiles as wide as the
  // registers allow).
  const hints = block
    ? { vectorAxis: 1, rowAxis: out.length - 1, ...(pointwise && out.length > 3 ? { rowAxes: out.length - 2 } : {}) }
    : depthwise
      ? { vectorAxis: out.length - 1, rowAxis: out.length - 2, rowTilesOuter: true }
      : (pointwise || cpg <= FEW_CHANNELS) && group === 1 && out.length === 4
        ? { vectorAxis: 3, rowAxis: 1, ...(pointwise ? { laneAxes: 2 } : {}) }
        : undefined;
  const padded = block ? [out[0], w.shape[0] * block, ...out.slice(2)] : out;
  const full = compute(
    name,
    padded,
    ([n, m, ...o]) => {
      const rc = reduceAxis(cpg, 'rc');
      const rk = win.kernel.map((kk, i) => (kk === 1 ? undefined : reduceAxis(kk, `rk${i}_`)));
      const kv = rk.map((r) => (r ? r.v : int(0)));
      const conds: Expr[] = [];
      const pos = o.map((oi, i) => {
        const p = windowPos(win, i, oi, kv[i], out[2 + i], 0, x.shape[2 + i]);
        conds.push(...p.conds);
        return p.pos;
      });
      const c = group === 1 ? rc.v : E.add(E.mul(E.floordiv(m, mpg), cpg), rc.v);
      const xe = E.select(E.all(conds), xv([n, c, ...pos]), zero);
      return E.sum(E.mul(xe, wv([m, rc.v, ...kv])), [rc, ...rk.filter((r): r is IterVar => !!r)]);
    },
    hints,
  );
  return padded[1] === out[1] ? full : compute(`${name}_crop`, out, (idx) => E.load(full, idx));
}

/**
 * Weights pre-packed at compile time (relay-ir/passes/pack-weights.ts) have shape [M/B, C, K..., B] for
 * attribute weight_block = B, so that B consecutive output channels of one tap are adjacent in memory.
 */
function logicalWeightShape(w: readonly number[], a: Attrs): number[] {
  const b = num(a, 'weight_block', 0);
  return b ? [num(a, 'filters', w[0] * b), ...w.slice(1, -1)] : [...w];
}

/** Loads a (possibly packed) weight at logical index [m, c, k...]. */
function weightLoad(w: Tensor, a: Attrs, idx: Expr[]): Expr {
  const b = num(a, 'weight_block', 0);
  if (!b) return E.load(w, idx);
  const [m, ...rest] = idx;
  return E.load(w, [E.floordiv(m, b), ...rest, E.floormod(m, b)]);
}

defineOp({
  name: 'conv',
  pattern: OpPattern.OutEWiseFusable,
  inferType: symbolicBatch(([x, w, b], a) => {
    needFloat('conv', x);
    if (w.dtype !== x.dtype) shapeError(`conv: weight dtype ${w.dtype} differs from input ${x.dtype}`);
    const xs = staticDims(x, 'conv input'),
      ws = logicalWeightShape(staticDims(w, 'conv weight'), a);
    const { out } = convGeometry(xs, ws, a);
    if (b && (b.shape.length !== 1 || b.shape[0] !== ws[0]))
      shapeError(`conv: bias shape [${b.shape}] must be [${ws[0]}]`);
    return tensorType(out, x.dtype);
  }),
  compute: ([x, w, b], a, outT) => {
    const conv = convCompute(
      'conv',
      x,
      w,
      a,
      fk(x.dtype, 0),
      (i) => E.load(x, i),
      (i) => weightLoad(w, a, i),
    );
    if (!b) return conv;
    return compute('conv_bias', outT.shape, (idx) => E.add(E.load(conv, idx), at(b, idx[1])));
  },
});

/** conv_integer(x, w, x_zero_point, w_zero_point): int32 convolution of (x - xz) and (w - wz); wz scalar or per filter. */
defineOp({
  name: 'conv_integer',
  pattern: OpPattern.OutEWiseFusable,
  inferType: symbolicBatch(([x, w, xz, wz], a) => {
    if (isFloat(x.dtype) || isFloat(w.dtype))
      shapeError(`conv_integer needs integer inputs, got ${x.dtype}, ${w.dtype}`);
    const xs = staticDims(x, 'conv_integer input'),
      ws = staticDims(w, 'conv_integer weight');
    const { out } = convGeometry(xs, ws, a);
    const n = (t: TensorType) => sizeOf(t.shape as number[]);
    if (n(xz) !== 1) shapeError(`conv_integer: x_zero_point must be a scalar, got [${xz.shape}]`);
    if (n(wz) !== 1 && n(wz) !== ws[0])
      shapeError(`conv_integer: w_zero_point shape [${wz.shape}] for ${ws[0]} filters`);
    return tensorType(out, 'int32');
  }),
  compute: ([x, w, xz, wz], a) => {
    const scalar = (t: Tensor) => at(t, ...t.shape.map(() => 0));
    const i32 = (e: Expr) => E.cast('int32', e);
    const wzAt = (m: Expr) =>
      sizeOf(wz.shape) === 1 ? scalar(wz) : at(wz, ...wz.shape.map((d) => (d === 1 ? int(0) : m)));
    return convCompute(
      'conv_integer',
      x,
      w,
      a,
      int(0),
      (i) => E.sub(i32(E.load(x, i)), i32(scalar(xz))),
      (i) => E.sub(i32(E.load(w, i)), i32(wzAt(i[0]))),
    );
  },
});

// ---------------------------------------------------------------------------------------------------------------
// conv_transpose(x, w, bias?) — x [N, C, D...], w [C, M/group, K...]; attrs strides, pads, dilations, group,
// output_padding. out = s*(D-1) + output_padding + (K-1)*d + 1 - pad_begin - pad_end.
// ---------------------------------------------------------------------------------------------------------------

function convTGeometry(
  x: readonly number[],
  w: readonly number[],
  a: Attrs,
): { win: Window; out: number[]; group: number } {
  const nsp = x.length - 2;
  if (nsp < 1) shapeError(`conv_transpose: input must have rank >= 3, got [${x}]`);
  if (w.length !== x.length) shapeError(`conv_transpose: weight rank ${w.length} differs from input rank ${x.length}`);
  const group = num(a, 'group', 1);
  if (!Number.isSafeInteger(group) || group < 1)
    shapeError(`conv_transpose: group ${group} must be a whole number >= 1`);
  if (w[0] !== x[1] || x[1] % group !== 0)
    shapeError(`conv_transpose: weight [${w}] does not match input channels ${x[1]} with group ${group}`);
  const win = windowAttrs(a, nsp, w.slice(2), true);
  const opad = ints(a, 'output_padding', new Array(nsp).fill(0));
  if (opad.length !== nsp || opad.some((p) => !Number.isSafeInteger(p) || p < 0))
    shapeError(`conv_transpose: output_padding [${opad}] must be ${nsp} whole numbers >= 0`);
  const out = [
    x[0],
    w[1] * group,
    ...x
      .slice(2)
      .map(
        (d, i) =>
          win.strides[i] * (d - 1) +
          opad[i] +
          (win.kernel[i] - 1) * win.dilations[i] +
          1 -
          win.pads[i] -
          win.pads[nsp + i],
      ),
  ];
  if (out.some((d) => d <= 0)) shapeError(`conv_transpose: non-positive output shape [${out}]`);
  return { win, out, group };
}

defineOp({
  name: 'conv_transpose',
  pattern: OpPattern.OutEWiseFusable,
  inferType: symbolicBatch(([x, w, b], a) => {
    needFloat('conv_transpose', x);
    sameDtype('conv_transpose', x, w, b);
    const xs = staticDims(x, 'conv_transpose input'),
      ws = staticDims(w, 'conv_transpose weight');
    const { out } = convTGeometry(xs, ws, a);
    if (b && (b.shape.length !== 1 || b.shape[0] !== out[1]))
      shapeError(`conv_transpose: bias shape [${b.shape}] must be [${out[1]}]`);
    return tensorType(out, x.dtype);
  }),
  compute: ([x, w, b], a, outT) => {
    const { win, out, group } = convTGeometry(x.shape, w.shape, a);
    const cpg = x.shape[1] / group,
      mpg = w.shape[1];
    const conv = compute('conv_transpose', out, ([n, m, ...o]) => {
      const rc = reduceAxis(cpg, 'rc');
      const rk = win.kernel.map((kk, i) => reduceAxis(kk, `rk${i}_`));
      const conds: Expr[] = [];
      // out position o = i*s + kk*d - pb  =>  i = (o + pb - kk*d) / s when divisible
      const pos = o.map((oi, i) => {
        const s = win.strides[i],
          d = win.dilations[i],
          pb = win.pads[i];
        const t = E.sub(E.add(oi, pb), E.mul(rk[i].v, d));
        const tMin = pb - (win.kernel[i] - 1) * d,
          tMax = out[2 + i] - 1 + pb;
        if (s !== 1) conds.push(E.eq(E.floormod(t, s), 0));
        const q = s === 1 ? t : E.floordiv(t, s);
        if (tMin < 0) conds.push(E.ge(t, 0));
        if (Math.floor(tMax / s) >= x.shape[2 + i]) conds.push(E.lt(q, x.shape[2 + i]));
        return q;
      });
      const c = group === 1 ? rc.v : E.add(E.mul(E.floordiv(m, mpg), cpg), rc.v);
      const ml = group === 1 ? m : E.floormod(m, mpg);
      const xv = E.select(E.all(conds), at(x, n, c, ...pos), fk(x.dtype, 0));
      return E.sum(E.mul(xv, at(w, c, ml, ...rk.map((r) => r.v))), [rc, ...rk]);
    });
    if (!b) return conv;
    return compute('conv_transpose_bias', outT.shape, (idx) => E.add(E.load(conv, idx), at(b, idx[1])));
  },
});

// ---------------------------------------------------------------------------------------------------------------
// Pooling: max_pool, avg_pool, lp_pool (attrs kernel_shape, strides, pads, dilations, ceil_mode,
// count_include_pad, p), max_pool_indices, global_{avg,max,lp}_pool
// ---------------------------------------------------------------------------------------------------------------

function poolGeometry(x: readonly number[], a: Attrs, what: string): { win: Window; out: number[] } {
  const nsp = x.length - 2;
  if (nsp < 1) shapeError(`${what}: input must have rank >= 3, got [${x}]`);
  const win = windowAttrs(a, nsp, ints(a, 'kernel_shape'));
  // a pad as wide as the (dilated) window makes windows that see padding only (onnxruntime rejects it too)
  win.pads.forEach((p, j) => {
    const i = j % nsp,
      eff = (win.kernel[i] - 1) * win.dilations[i] + 1;
    if (p >= eff)
      shapeError(
        `${what}: pads [${win.pads}] must be smaller than the window (kernel_shape [${win.kernel}], dilations [${win.dilations}])`,
      );
  });
  const ceil = !!num(a, 'ceil_mode', 0);
  return { win, out: [x[0], x[1], ...x.slice(2).map((d, i) => windowOut(d, win, i, ceil))] };
}

function poolInfer(what: string, floatOnly: boolean) {
  return ([x]: readonly TensorType[], a: Attrs): TensorType => {
    if (floatOnly) needFloat(what, x);
    return tensorType(poolGeometry(staticDims(x, `${what} input`), a, what).out, x.dtype);
  };
}

interface PoolWin {
  axes: IterVar[];
  /** input index for the window element */
  idx: Expr[];
  /** in-bounds (of the unpadded input) */
  valid: Expr;
  /** positions in the window per spatial dim (for index outputs) */
  pos: Expr[];
}

/** The window of output position `o`; window dim i is tensor dim `dim0 + i` of x and of the output shape `out`. */
function poolWindow(
  x: Tensor,
  win: Window,
  out: readonly number[],
  n: Expr,
  c: Expr,
  o: readonly Expr[],
  dim0 = 2,
): PoolWin {
  const axes = win.kernel.map((kk, i) => reduceAxis(kk, `rk${i}_`));
  const conds: Expr[] = [];
  const pos = o.map((oi, i) => {
    const p = windowPos(win, i, oi, axes[i].v, out[dim0 + i], 0, x.shape[dim0 + i]);
    conds.push(...p.conds);
    return p.pos;
  });
  return { axes, idx: [n, c, ...pos], valid: E.all(conds), pos };
}

/**
 * Number of window positions whose input position lies in [lo_i, hi_i) per spatial dim, as an int32 expression
 * of the output position (closed form: no reduction).
 */
function windowCount(win: Window, o: readonly Expr[], lo: readonly number[], hi: readonly number[]): Expr {
  let cnt: Expr = int(1);
  o.forEach((oi, i) => {
    const s = win.strides[i],
      d = win.dilations[i],
      K = win.kernel[i];
    const p0 = E.sub(E.mul(oi, s), win.pads[i]);
    // smallest k with p0 + k*d >= lo: ceil((lo - p0) / d); largest k with p0 + k*d <= hi - 1: floor((hi-1-p0)/d)
    const kLo = E.max(int(0), E.floordiv(E.add(E.sub(int(lo[i]), p0), d - 1), d));
    const kHi = E.min(int(K - 1), E.floordiv(E.sub(int(hi[i] - 1), p0), d));
    cnt = E.mul(cnt, E.max(int(0), E.add(E.sub(kHi, kLo), 1)));
  });
  return cnt;
}

/**
 * max_pool: the max over each window. A window of at least 3 along the last dim and 3 over the others is
 * separable: first the max over the other dims for every input column (rows, unit-stride loads), then the max
 * along the last dim (9 strided taps of a 3x3 window become 3 + 3).
 */
defineOp({
  name: 'max_pool',
  pattern: OpPattern.CommReduce,
  inferType: symbolicBatch(poolInfer('max_pool', false)),
  compute: ([x], a, outT) => {
    const { win } = poolGeometry(x.shape, a, 'max_pool');
    const lowest = reduceInit('max', x.dtype);
    const nsp = x.shape.length - 2,
      last = nsp - 1;
    const others = sizeOf(win.kernel.slice(0, last));
    if (nsp >= 2 && win.kernel[last] >= 3 && others >= 3) {
      const lead: Window = {
        kernel: win.kernel.slice(0, last),
        strides: win.strides.slice(0, last),
        dilations: win.dilations.slice(0, last),
        pads: [...win.pads.slice(0, last), ...win.pads.slice(nsp, nsp + last)],
      };
      const outShape = outT.shape as readonly number[];
      const rowsShape = [...outShape.slice(0, -1), x.shape[x.shape.length - 1]];
      const rows = compute('max_pool_rows', rowsShape, ([n, c, ...o]) => {
        const pw = poolWindow(x, lead, rowsShape, n, c, o.slice(0, -1));
        return E.rmax(E.select(pw.valid, E.load(x, [...pw.idx, o[last]]), lowest), pw.axes);
      });
      const tail: Window = {
        kernel: [win.kernel[last]],
        strides: [win.strides[last]],
        dilations: [win.dilations[last]],
        pads: [win.pads[last], win.pads[nsp + last]],
      };
      return compute('max_pool', outT.shape, ([n, c, ...o]) => {
        const pw = poolWindow(rows, tail, outShape, n, c, [o[last]], 2 + last);
        return E.rmax(E.select(pw.valid, E.load(rows, [n, c, ...o.slice(0, -1), ...pw.pos]), lowest), pw.axes);
      });
    }
    return compute('max_pool', outT.shape, ([n, c, ...o]) => {
      const pw = poolWindow(x, win, outT.shape, n, c, o);
      return E.rmax(E.select(pw.valid, E.load(x, pw.idx), lowest), pw.axes);
    });
  },
});

/** Flat index (int64) of the max of each window; storage_order 1 orders spatial dims column-major. */
defineOp({
  name: 'max_pool_indices',
  pattern: OpPattern.CommReduce,
  inferType: symbolicBatch((args, a) => tensorType(poolInfer('max_pool_indices', false)(args, a).shape, 'int64')),
  compute: ([x], a, outT) => {
    const { win } = poolGeometry(x.shape, a, 'max_pool');
    const lowest = reduceInit('max', x.dtype);
    const colMajor = num(a, 'storage_order', 0) === 1;
    const sp = x.shape.slice(2);
    const spSize = sizeOf(sp);
    const mx = compute('max_pool', outT.shape, ([n, c, ...o]) => {
      const pw = poolWindow(x, win, outT.shape, n, c, o);
      return E.rmax(E.select(pw.valid, E.load(x, pw.idx), lowest), pw.axes);
    });
    const big = 2 ** 31 - 1;
    const arg = compute('max_pool_arg', outT.shape, (idx) => {
      const [n, c, ...o] = idx;
      const pw = poolWindow(x, win, outT.shape, n, c, o);
      let flat: Expr = E.mul(E.add(E.mul(n, x.shape[1]), c), spSize);
      const order = colMajor ? [...sp.keys()].reverse() : [...sp.keys()];
      let stride = 1;
      for (let j = order.length - 1; j >= 0; j--) {
        const i = order[j];
        flat = E.add(flat, E.mul(pw.pos[i], stride));
        stride *= sp[i];
      }
      // select, not and: the load must not run for padding positions
      const hit = E.select(pw.valid, E.eq(E.load(x, pw.idx), E.load(mx, idx)), constant(0, 'bool'));
      return E.rmin(E.select(hit, flat, int(big)), pw.axes);
    });
    return compute('max_pool_indices', outT.shape, (idx) => E.cast('int64', E.load(arg, idx)));
  },
});

defineOp({
  name: 'avg_pool',
  pattern: OpPattern.CommReduce,
  inferType: symbolicBatch(poolInfer('avg_pool', true)),
  compute: ([x], a, outT) => {
    const { win } = poolGeometry(x.shape, a, 'avg_pool');
    const nsp = x.shape.length - 2;
    const inclPad = !!num(a, 'count_include_pad', 0);
    const sp = x.shape.slice(2);
    const lo = inclPad ? win.pads.slice(0, nsp).map((p) => -p) : sp.map(() => 0);
    const hi = inclPad ? sp.map((d, i) => d + win.pads[nsp + i]) : sp;
    return compute('avg_pool', outT.shape, ([n, c, ...o]) => {
      const pw = poolWindow(x, win, outT.shape, n, c, o);
      const s = E.sum(E.select(pw.valid, E.load(x, pw.idx), fk(x.dtype, 0)), pw.axes);
      return E.div(s, E.cast(x.dtype, windowCount(win, o, lo, hi)));
    });
  },
});

function lpPow(v: Expr, p: number): Expr {
  const av = E.unary('abs', v);
  if (p === 1) return av;
  if (p === 2) return sq(v);
  if (Number.isInteger(p) && p > 0 && p <= 4) {
    let r = av;
    for (let i = 1; i < p; i++) r = E.mul(r, av);
    return r;
  }
  return E.pow(av, k(v, p));
}
const lpRoot = (s: Expr, p: number): Expr => (p === 1 ? s : p === 2 ? E.unary('sqrt', s) : E.pow(s, k(s, 1 / p)));

defineOp({
  name: 'lp_pool',
  pattern: OpPattern.CommReduce,
  inferType: symbolicBatch(poolInfer('lp_pool', true)),
  compute: ([x], a, outT) => {
    const { win } = poolGeometry(x.shape, a, 'lp_pool');
    const p = num(a, 'p', 2);
    return compute('lp_pool', outT.shape, ([n, c, ...o]) => {
      const pw = poolWindow(x, win, outT.shape, n, c, o);
      return lpRoot(E.sum(E.select(pw.valid, lpPow(E.load(x, pw.idx), p), fk(x.dtype, 0)), pw.axes), p);
    });
  },
});

function globalInfer(what: string, floatOnly: boolean) {
  return ([x]: readonly TensorType[]): TensorType => {
    if (floatOnly) needFloat(what, x);
    if (x.shape.length < 3) shapeError(`${what}: input must have rank >= 3, got [${x.shape}]`);
    return tensorType([x.shape[0], x.shape[1], ...x.shape.slice(2).map(() => 1)], x.dtype);
  };
}

function globalPool(name: string, floatOnly: boolean, f: (x: Tensor, n: Expr, c: Expr, a: Attrs) => Expr): void {
  defineOp({
    name,
    pattern: OpPattern.CommReduce,
    inferType: globalInfer(name, floatOnly),
    compute: ([x], a, outT) => compute(name, outT.shape, ([n, c]) => f(x, n, c, a)),
  });
}
const spatialAxes = (x: Tensor): IterVar[] => x.shape.slice(2).map((d, i) => reduceAxis(d, `rs${i}_`));
const spatialSize = (x: Tensor): number => sizeOf(x.shape.slice(2));

globalPool('global_avg_pool', true, (x, n, c) => {
  const r = spatialAxes(x);
  return E.div(E.sum(at(x, n, c, ...r.map((v) => v.v)), r), fk(x.dtype, spatialSize(x)));
});
globalPool('global_max_pool', false, (x, n, c) => {
  const r = spatialAxes(x);
  return E.rmax(at(x, n, c, ...r.map((v) => v.v)), r);
});
globalPool('global_lp_pool', true, (x, n, c, a) => {
  const r = spatialAxes(x),
    p = num(a, 'p', 2);
  return lpRoot(E.sum(lpPow(at(x, n, c, ...r.map((v) => v.v)), p), r), p);
});

// ---------------------------------------------------------------------------------------------------------------
// Normalizations
// ---------------------------------------------------------------------------------------------------------------

/**
 * Statistics over a set of reduced positions per "statistics index": mean and a function of the (population)
 * variance, computed two-pass, each materialized.
 * `xAt(s, r)` loads x at statistics index s and reduction index r.
 */
function moments(
  name: string,
  statShape: readonly number[],
  redExtents: readonly number[],
  dtype: DType,
  xAt: (s: Expr[], r: Expr[]) => Expr,
  finishVar: (v: Expr) => Expr,
): { mean: Tensor; dev: Tensor } {
  const cnt = sizeOf(redExtents);
  // each sum is a top-level reduction (the divides are elementwise stages inlined where used), so the schedule
  // vectorizes it along the reduced axis
  const sum = compute(`${name}_sum`, statShape, (s) => {
    const r = redExtents.map((d, i) => reduceAxis(d, `rn${i}_`));
    return E.sum(
      xAt(
        s,
        r.map((v) => v.v),
      ),
      r,
    );
  });
  const mean = compute(`${name}_mean`, statShape, (s) => E.div(E.load(sum, s), fk(dtype, cnt)));
  const sqDev = compute(`${name}_sqdev`, statShape, (s) => {
    const r = redExtents.map((d, i) => reduceAxis(d, `rn${i}_`));
    return E.sum(
      sq(
        E.sub(
          xAt(
            s,
            r.map((q) => q.v),
          ),
          E.load(mean, s),
        ),
      ),
      r,
    );
  });
  const dev = compute(`${name}_dev`, statShape, (s) => finishVar(E.div(E.load(sqDev, s), fk(dtype, cnt))));
  return { mean, dev };
}

/** Loads a tensor broadcast (numpy rules, right-aligned) against an index of higher or equal rank. */
function bload(t: Tensor, idx: readonly Expr[]): Expr {
  const r = t.shape.length,
    R = idx.length;
  return at(t, ...t.shape.map((d, j) => (d === 1 ? int(0) : idx[R - r + j])));
}

/** Loads a per-channel (axis 1) vector at the channel of idx. */
const chan = (t: Tensor, idx: readonly Expr[]): Expr => (t.shape[0] === 1 ? at(t, 0) : at(t, idx[1]));

function checkChannelVec(what: string, x: TensorType, vs: readonly (TensorType | undefined)[]): void {
  const C = x.shape[1];
  for (const v of vs) {
    if (!v) continue;
    if (v.shape.length !== 1 || (v.shape[0] !== C && v.shape[0] !== 1))
      shapeError(`${what}: per-channel parameter of shape [${v.shape}] for ${C} channels`);
    if (v.dtype !== x.dtype) shapeError(`${what}: parameter dtype ${v.dtype} differs from input ${x.dtype}`);
  }
}

/** batch_norm(x, scale, bias, mean, var; epsilon): inference form, per channel (axis 1). */
defineOp({
  name: 'batch_norm',
  pattern: OpPattern.Broadcast,
  inferType: ([x, ...ps]) => {
    needFloat('batch_norm', x);
    if (x.shape.length < 2) shapeError(`batch_norm: input must have rank >= 2, got [${x.shape}]`);
    checkChannelVec('batch_norm', x, ps);
    return tensorType(x.shape, x.dtype);
  },
  compute: ([x, scale, bias, mean, variance], a, outT) => {
    const eps = num(a, 'epsilon', 1e-5);
    return compute('batch_norm', outT.shape, (idx) => {
      const xv = E.load(x, idx);
      const inv = rsqrt(E.add(chan(variance, idx), k(xv, eps)));
      return E.add(E.mul(E.mul(E.sub(xv, chan(mean, idx)), inv), chan(scale, idx)), chan(bias, idx));
    });
  },
});

/** Batch statistics of x per channel: mean (which=0) or population variance (which=1), shape [C]. */
function batchStats(x: Tensor): { mean: Tensor; dev: Tensor } {
  const sp = [x.shape[0], ...x.shape.slice(2)];
  return moments(
    'bn',
    [x.shape[1]],
    sp,
    x.dtype,
    ([c], r) => at(x, r[0], c, ...r.slice(1)),
    (v) => v,
  );
}

/** batch_norm_train(x, scale, bias; epsilon): normalizes with the batch's own statistics. */
defineOp({
  name: 'batch_norm_train',
  pattern: OpPattern.CommReduce,
  inferType: ([x, ...ps]) => {
    needFloat('batch_norm_train', x);
    checkChannelVec('batch_norm_train', x, ps);
    return tensorType(x.shape, x.dtype);
  },
  compute: ([x, scale, bias], a, outT) => {
    const eps = num(a, 'epsilon', 1e-5);
    const { mean, dev } = batchStats(x);
    return compute('batch_norm_train', outT.shape, (idx) => {
      const xv = E.load(x, idx);
      const inv = rsqrt(E.add(at(dev, idx[1]), k(xv, eps)));
      return E.add(E.mul(E.mul(E.sub(xv, at(mean, idx[1])), inv), chan(scale, idx)), chan(bias, idx));
    });
  },
});

/** batch_norm_running(x, running; momentum, which: 0 mean / 1 var): running * momentum + batch * (1 - momentum). */
defineOp({
  name: 'batch_norm_running',
  pattern: OpPattern.CommReduce,
  inferType: ([x, r]) => tensorType(r.shape, x.dtype),
  compute: ([x, running], a, outT) => {
    const m = num(a, 'momentum', 0.9),
      which = num(a, 'which', 0);
    const { mean, dev } = batchStats(x);
    const st = which === 0 ? mean : dev;
    return compute('batch_norm_running', outT.shape, ([c]) =>
      E.add(E.mul(at(running, c), fk(x.dtype, m)), E.mul(at(st, c), fk(x.dtype, 1 - m))),
    );
  },
});

/** instance_norm(x, scale, bias; epsilon): statistics per (n, c) over the spatial dims. */
defineOp({
  name: 'instance_norm',
  pattern: OpPattern.CommReduce,
  inferType: ([x, ...ps]) => {
    needFloat('instance_norm', x);
    if (x.shape.length < 3) shapeError(`instance_norm: input must have rank >= 3, got [${x.shape}]`);
    checkChannelVec('instance_norm', x, ps);
    return tensorType(x.shape, x.dtype);
  },
  compute: ([x, scale, bias], a, outT) => {
    const eps = num(a, 'epsilon', 1e-5);
    const { mean, dev } = moments(
      'instance_norm',
      x.shape.slice(0, 2),
      x.shape.slice(2),
      x.dtype,
      ([n, c], r) => at(x, n, c, ...r),
      (v) => rsqrt(E.add(v, k(v, eps))),
    );
    return compute('instance_norm', outT.shape, (idx) => {
      const [n, c] = idx;
      const norm = E.mul(E.sub(E.load(x, idx), at(mean, n, c)), at(dev, n, c));
      return E.add(E.mul(norm, chan(scale, idx)), chan(bias, idx));
    });
  },
});

/** group_norm(x, scale, bias; num_groups, epsilon): scale/bias per channel ([C]) or per group ([G], opset 18). */
defineOp({
  name: 'group_norm',
  pattern: OpPattern.CommReduce,
  inferType: ([x, s, b], a) => {
    needFloat('group_norm', x);
    sameDtype('group_norm', x, s, b);
    const G = num(a, 'num_groups');
    if (x.shape.length < 2) shapeError(`group_norm: input must have rank >= 2, got [${x.shape}]`);
    const C = staticDim(x.shape[1], 'group_norm channels');
    if (C % G !== 0) shapeError(`group_norm: ${C} channels not divisible by ${G} groups`);
    for (const v of [s, b])
      if (v.shape.length !== 1 || (v.shape[0] !== C && v.shape[0] !== G))
        shapeError(`group_norm: parameter shape [${v.shape}]`);
    return tensorType(x.shape, x.dtype);
  },
  compute: ([x, scale, bias], a, outT) => {
    const eps = num(a, 'epsilon', 1e-5),
      G = num(a, 'num_groups');
    const [N, C, ...sp] = x.shape;
    const cpg = C / G;
    const { mean, dev } = moments(
      'group_norm',
      [N, G],
      [cpg, ...sp],
      x.dtype,
      ([n, g], [rc, ...r]) => at(x, n, E.add(E.mul(g, cpg), rc), ...r),
      (v) => rsqrt(E.add(v, k(v, eps))),
    );
    const param = (t: Tensor, c: Expr, g: Expr) => (t.shape[0] === C ? at(t, c) : at(t, g));
    return compute('group_norm', outT.shape, (idx) => {
      const [n, c] = idx;
      const g = E.floordiv(c, cpg);
      const norm = E.mul(E.sub(E.load(x, idx), at(mean, n, g)), at(dev, n, g));
      return E.add(E.mul(norm, param(scale, c, g)), param(bias, c, g));
    });
  },
});

/** Layer-norm style split: statistics per x[:axis], reduced over x[axis:]. */
function lastAxesStats(name: string, x: Tensor, axis: number, fn: (v: Expr) => Expr, centered: boolean) {
  const lead = x.shape.slice(0, axis),
    rest = x.shape.slice(axis);
  if (centered) return moments(name, lead, rest, x.dtype, (s, r) => at(x, ...s, ...r), fn);
  // uncentered: mean of squares only
  const cnt = sizeOf(rest);
  const sqSum = compute(`${name}_sqsum`, lead, (s) => {
    const r = rest.map((d, i) => reduceAxis(d, `rn${i}_`));
    return E.sum(sq(at(x, ...s, ...r.map((q) => q.v))), r);
  });
  const dev = compute(`${name}_ms`, lead, (s) => fn(E.div(E.load(sqSum, s), fk(x.dtype, cnt))));
  return { mean: undefined, dev };
}

function lnInfer(what: string) {
  return ([x, ...ps]: readonly TensorType[], a: Attrs): TensorType => {
    needFloat(what, x);
    sameDtype(what, x, ...ps);
    const axis = normAxis(num(a, 'axis', -1), x.shape.length);
    const rest = x.shape.slice(axis);
    for (const p of ps) {
      if (
        p.shape.length > rest.length ||
        p.shape.some((d, j) => d !== 1 && d !== rest[rest.length - p.shape.length + j])
      ) {
        shapeError(`${what}: parameter shape [${p.shape}] does not broadcast to normalized shape [${rest}]`);
      }
    }
    return tensorType(x.shape, x.dtype);
  };
}

/** layer_norm(x, scale, bias?; axis, epsilon) */
defineOp({
  name: 'layer_norm',
  pattern: OpPattern.CommReduce,
  inferType: lnInfer('layer_norm'),
  compute: ([x, scale, bias], a, outT) => {
    const axis = normAxis(num(a, 'axis', -1), x.shape.length),
      eps = num(a, 'epsilon', 1e-5);
    const { mean, dev } = lastAxesStats('layer_norm', x, axis, (v) => rsqrt(E.add(v, k(v, eps))), true);
    return compute('layer_norm', outT.shape, (idx) => {
      const s = idx.slice(0, axis);
      const norm = E.mul(E.sub(E.load(x, idx), E.load(mean!, s)), E.load(dev, s));
      const y = E.mul(norm, bload(scale, idx));
      return bias ? E.add(y, bload(bias, idx)) : y;
    });
  },
});

/** layer_norm_stat(x; axis, epsilon, which: 0 mean / 1 inv std dev): shape x[:axis] + [1]*(rank-axis). */
defineOp({
  name: 'layer_norm_stat',
  pattern: OpPattern.CommReduce,
  inferType: ([x], a) => {
    needFloat('layer_norm_stat', x);
    const axis = normAxis(num(a, 'axis', -1), x.shape.length);
    return tensorType([...x.shape.slice(0, axis), ...x.shape.slice(axis).map(() => 1)], x.dtype);
  },
  compute: ([x], a, outT) => {
    const axis = normAxis(num(a, 'axis', -1), x.shape.length),
      eps = num(a, 'epsilon', 1e-5);
    const { mean, dev } = lastAxesStats('layer_norm', x, axis, (v) => rsqrt(E.add(v, k(v, eps))), true);
    const t = num(a, 'which', 0) === 0 ? mean! : dev;
    return compute('layer_norm_stat', outT.shape, (idx) => E.load(t, idx.slice(0, axis)));
  },
});

/** rms_norm(x, scale; axis, epsilon) */
defineOp({
  name: 'rms_norm',
  pattern: OpPattern.CommReduce,
  inferType: lnInfer('rms_norm'),
  compute: ([x, scale], a, outT) => {
    const axis = normAxis(num(a, 'axis', -1), x.shape.length),
      eps = num(a, 'epsilon', 1e-5);
    const { dev } = lastAxesStats('rms_norm', x, axis, (v) => rsqrt(E.add(v, k(v, eps))), false);
    return compute('rms_norm', outT.shape, (idx) =>
      E.mul(E.mul(E.load(x, idx), E.load(dev, idx.slice(0, axis))), bload(scale, idx)),
    );
  },
});

/** mean_variance_norm(x; axes): (x - mean) / (sqrt(var) + 1e-9), statistics over `axes`. */
defineOp({
  name: 'mean_variance_norm',
  pattern: OpPattern.CommReduce,
  inferType: ([x], a) => {
    needFloat('mean_variance_norm', x);
    ints(a, 'axes').forEach((ax) => normAxis(ax, x.shape.length));
    return tensorType(x.shape, x.dtype);
  },
  compute: ([x], a, outT) => {
    const R = x.shape.length;
    const red = new Set(ints(a, 'axes').map((ax) => normAxis(ax, R)));
    const keep = [...x.shape.keys()].filter((d) => !red.has(d)),
      rd = [...red].sort((p, q) => p - q);
    const gather = (s: Expr[], r: Expr[]) => {
      const idx: Expr[] = new Array(R);
      keep.forEach((d, j) => {
        idx[d] = s[j];
      });
      rd.forEach((d, j) => {
        idx[d] = r[j];
      });
      return at(x, ...idx);
    };
    const { mean, dev } = moments(
      'mvn',
      keep.map((d) => x.shape[d]),
      rd.map((d) => x.shape[d]),
      x.dtype,
      gather,
      (v) => E.div(k(v, 1), E.add(E.unary('sqrt', v), k(v, 1e-9))),
    );
    return compute('mean_variance_norm', outT.shape, (idx) => {
      const s = keep.map((d) => idx[d]);
      return E.mul(E.sub(E.load(x, idx), E.load(mean, s)), E.load(dev, s));
    });
  },
});

/** lp_norm(x; axis, p): x / ||x||_p along axis (0 where the norm is 0). */
defineOp({
  name: 'lp_norm',
  pattern: OpPattern.CommReduce,
  inferType: ([x], a) => {
    needFloat('lp_norm', x);
    normAxis(num(a, 'axis', -1), x.shape.length);
    return tensorType(x.shape, x.dtype);
  },
  compute: ([x], a, outT) => {
    const axis = normAxis(num(a, 'axis', -1), x.shape.length),
      p = num(a, 'p', 2);
    const nshape = x.shape.filter((_, d) => d !== axis);
    const norm = compute('lp_norm_norm', nshape, (s) => {
      const r = reduceAxis(x.shape[axis], 'rn');
      const idx = [...s.slice(0, axis), r.v, ...s.slice(axis)];
      return lpRoot(E.sum(lpPow(E.load(x, idx), p), [r]), p);
    });
    return compute('lp_norm', outT.shape, (idx) => {
      const nv = E.load(
        norm,
        idx.filter((_, d) => d !== axis),
      );
      return E.select(E.eq(nv, k(nv, 0)), k(nv, 0), E.div(E.load(x, idx), nv));
    });
  },
});

/** lrn(x; size, alpha, beta, bias): cross-channel local response normalization. */
defineOp({
  name: 'lrn',
  pattern: OpPattern.CommReduce,
  inferType: ([x], a) => {
    needFloat('lrn', x);
    if (x.shape.length < 3) shapeError(`lrn: input must have rank >= 3, got [${x.shape}]`);
    const size = num(a, 'size');
    if (!Number.isSafeInteger(size) || size < 1) shapeError(`lrn: size ${size} must be a whole number >= 1`);
    return tensorType(x.shape, x.dtype);
  },
  compute: ([x], a, outT) => {
    const size = num(a, 'size'),
      alpha = num(a, 'alpha', 1e-4),
      beta = num(a, 'beta', 0.75),
      bias = num(a, 'bias', 1);
    const C = x.shape[1];
    const before = Math.floor((size - 1) / 2);
    const sqsum = compute('lrn_sqsum', outT.shape, (idx) => {
      const r = reduceAxis(size, 'rc');
      const c = E.add(E.sub(idx[1], before), r.v);
      const v = E.select(E.and(E.ge(c, 0), E.lt(c, C)), sq(at(x, idx[0], c, ...idx.slice(2))), fk(x.dtype, 0));
      return E.sum(v, [r]);
    });
    return compute('lrn', outT.shape, (idx) => {
      const base = E.add(fk(x.dtype, bias), E.mul(fk(x.dtype, alpha / size), E.load(sqsum, idx)));
      const den =
        beta === 0.75
          ? E.mul(E.unary('sqrt', base), E.unary('sqrt', E.unary('sqrt', base)))
          : beta === 0.5
            ? E.unary('sqrt', base)
            : beta === 1
              ? base
              : E.pow(base, fk(x.dtype, beta));
      return E.div(E.load(x, idx), den);
    });
  },
});

// ---------------------------------------------------------------------------------------------------------
// col2im(x [N, C * prod(block), L]) -> [N, C, ...image]: the inverse of im2col. Each image element sums the column
// entries whose block position covers it: for a kernel offset k, the block b with b * stride - pad + k * dilation
// equal to the element's coordinate, where that b exists.

function col2imGeometry(a: Attrs) {
  const image = ints(a, 'image_shape'),
    block = ints(a, 'block_shape'),
    nd = image.length;
  const strides = ints(a, 'strides', new Array<number>(nd).fill(1)),
    dilations = ints(a, 'dilations', new Array<number>(nd).fill(1)),
    pads = ints(a, 'pads', new Array<number>(2 * nd).fill(0));
  const blocks = image.map(
    (d, i) => Math.floor((d + pads[i] + pads[nd + i] - (dilations[i] * (block[i] - 1) + 1)) / strides[i]) + 1,
  );
  return { image, block, strides, dilations, pads, blocks, nd };
}

defineOp({
  name: 'col2im',
  pattern: OpPattern.CommReduce,
  inferType: ([x], a) => {
    const xs = staticDims(x, 'col2im');
    const g = col2imGeometry(a);
    const K = sizeOf(g.block);
    if (g.block.length !== g.nd || xs.length !== 3 || xs[1] % K !== 0)
      shapeError(`col2im: input [${xs}] for blocks [${g.block}] over an image [${g.image}]`);
    if (g.blocks.some((b) => b < 1) || sizeOf(g.blocks) !== xs[2])
      shapeError(`col2im: ${xs[2]} columns, but the image [${g.image}] holds [${g.blocks}] blocks`);
    return tensorType([xs[0], xs[1] / K, ...g.image], x.dtype);
  },
  compute: ([x], a, out) => {
    const g = col2imGeometry(a);
    const K = sizeOf(g.block);
    return compute('col2im', out.shape, ([n, c, ...y]) => {
      const ks = g.block.map((b, i) => reduceAxis(b, `k${i}`));
      const conds: Expr[] = [];
      let ch: Expr = E.mul(c, int(K)),
        col: Expr = int(0);
      g.block.forEach((_, i) => {
        const pos = E.sub(E.add(y[i], int(g.pads[i])), E.mul(ks[i].v, int(g.dilations[i])));
        let blk = pos;
        if (g.strides[i] > 1) {
          conds.push(E.eq(E.floormod(pos, int(g.strides[i])), int(0)));
          blk = E.floordiv(pos, int(g.strides[i]));
        }
        conds.push(E.ge(blk, int(0)), E.lt(blk, int(g.blocks[i])));
        ch = E.add(ch, E.mul(ks[i].v, int(sizeOf(g.block.slice(i + 1)))));
        const clamped = E.min(E.max(blk, int(0)), int(g.blocks[i] - 1));
        col = E.add(E.mul(col, int(g.blocks[i])), clamped);
      });
      return E.sum(E.select(E.all(conds), E.load(x, [n, ch, col]), fk(x.dtype, 0)), ks);
    });
  },
});

// ---------------------------------------------------------------------------------------------------------
// deform_im2col(x [N, C, H, W], offset [N, G*kH*kW*2, oH, oW], mask? [N, G*kH*kW, oH, oW])
//   -> [N, C, kH, kW, oH, oW]: the columns of a deformable convolution (the frontend multiplies them by the
// weights). Each kernel tap samples x bilinearly at its grid position plus the learned offset of its offset group
// (channels split into G groups), zero outside the image, times the mask.

defineOp({
  name: 'deform_im2col',
  pattern: OpPattern.Injective,
  inferType: ([x, off, mask], a) => {
    const xs = staticDims(x, 'deform_im2col'),
      os = staticDims(off, 'deform_im2col offset');
    const [kh, kw] = ints(a, 'kernel_shape'),
      G = num(a, 'offset_group', 1);
    if (xs.length !== 4 || os.length !== 4 || os[0] !== xs[0] || os[1] !== G * kh * kw * 2 || xs[1] % G !== 0)
      shapeError(`deform_im2col: offset [${os}] for input [${xs}], kernel ${kh}x${kw} and ${G} offset groups`);
    if (mask) {
      const ms = staticDims(mask, 'deform_im2col mask');
      if (ms.join() !== [xs[0], G * kh * kw, os[2], os[3]].join())
        shapeError(`deform_im2col: mask [${ms}] should be [${[xs[0], G * kh * kw, os[2], os[3]]}]`);
    }
    sameDtype('deform_im2col', x, off, mask);
    return tensorType([xs[0], xs[1], kh, kw, os[2], os[3]], x.dtype);
  },
  compute: ([x, off, mask], a, out) => {
    const [, C, H, W] = x.shape;
    const [kh, kw] = ints(a, 'kernel_shape'),
      [sh, sw] = ints(a, 'strides', [1, 1]),
      [dh, dw] = ints(a, 'dilations', [1, 1]),
      [ph, pw] = ints(a, 'pads', [0, 0, 0, 0]);
    const perGroup = C / num(a, 'offset_group', 1);
    const F = 'float64';
    return compute('deform_im2col', out.shape, ([n, c, ky, kx, oy, ox]) => {
      const g = perGroup === C ? int(0) : E.floordiv(c, int(perGroup));
      const tap = E.add(E.mul(g, int(kh * kw)), E.add(E.mul(ky, int(kw)), kx));
      const at2 = (t: Tensor, ch: Expr) => E.cast(F, E.load(t, [n, ch, oy, ox]));
      const py = E.add(
        E.cast(F, E.add(E.sub(E.mul(oy, int(sh)), int(ph)), E.mul(ky, int(dh)))),
        at2(off, E.mul(tap, int(2))),
      );
      const px = E.add(
        E.cast(F, E.add(E.sub(E.mul(ox, int(sw)), int(pw)), E.mul(kx, int(dw)))),
        at2(off, E.add(E.mul(tap, int(2)), int(1))),
      );
      const y0 = E.unary('floor', py),
        x0 = E.unary('floor', px);
      const ly = E.sub(py, y0),
        lx = E.sub(px, x0);
      const iy = E.cast('int32', y0),
        ix = E.cast('int32', x0);
      const one = constant(1, F),
        zero = constant(0, F);
      // a corner outside the image reads as 0
      const corner = (yy: Expr, xx: Expr, wt: Expr) => {
        const ok = E.all([E.ge(yy, int(0)), E.lt(yy, int(H)), E.ge(xx, int(0)), E.lt(xx, int(W))]);
        const cy = E.min(E.max(yy, int(0)), int(H - 1)),
          cx = E.min(E.max(xx, int(0)), int(W - 1));
        return E.mul(wt, E.select(ok, E.cast(F, E.load(x, [n, c, cy, cx])), zero));
      };
      const iy1 = E.add(iy, int(1)),
        ix1 = E.add(ix, int(1));
      const hy = E.sub(one, ly),
        hx = E.sub(one, lx);
      let v = E.add(
        E.add(corner(iy, ix, E.mul(hy, hx)), corner(iy, ix1, E.mul(hy, lx))),
        E.add(corner(iy1, ix, E.mul(ly, hx)), corner(iy1, ix1, E.mul(ly, lx))),
      );
      if (mask) v = E.mul(v, at2(mask, tap));
      return E.cast(x.dtype, v);
    });
  },
});

// ---------------------------------------------------------------------------------------------------------
// roi_align(x [N, C, H, W], rois [R, 4], batch_indices [R]) -> [R, C, oh, ow]: each output bin averages (or takes
// the max of) a grid of bilinear samples inside its region of interest, as ONNX's reference and ONNX Runtime
// compute it. Attribute `grid` bounds the samples per bin: the sampling_ratio, or with an adaptive ratio (0) the
// largest ceil(roi size / bins) of the compile-time rois; each roi's own count is computed in the kernel.

defineOp({
  name: 'roi_align',
  pattern: OpPattern.Injective,
  inferType: ([x, rois, bi], a) => {
    const xs = staticDims(x, 'roi_align'),
      rs = staticDims(rois, 'roi_align rois'),
      bs = staticDims(bi, 'roi_align batch_indices');
    if (xs.length !== 4 || rs.length !== 2 || rs[1] !== 4 || bs.length !== 1 || bs[0] !== rs[0])
      shapeError(`roi_align: X [${xs}], rois [${rs}] and batch_indices [${bs}]`);
    if (!isFloat(x.dtype) || rois.dtype !== x.dtype) shapeError(`roi_align: X and rois must be one float type`);
    return tensorType([rs[0], xs[1], num(a, 'output_height', 1), num(a, 'output_width', 1)], x.dtype);
  },
  compute: ([x, rois, bi], a, out) => {
    const [N, , H, W] = x.shape;
    const [, , oh, ow] = out.shape;
    const F = 'float64';
    const f = (v: number) => constant(v, F);
    const ratio = num(a, 'sampling_ratio', 0),
      [GH, GW] = ints(a, 'grid'),
      scale = num(a, 'spatial_scale', 1),
      halfPixel = num(a, 'half_pixel', 0) !== 0,
      isMax = str(a, 'mode', 'avg') === 'max';
    return compute('roi_align', out.shape, ([r, c, ph, pw]) => {
      const b = E.min(E.max(E.cast('int32', E.load(bi, [r])), int(0)), int(N - 1));
      const coord = (j: number) => E.sub(E.mul(E.cast(F, E.load(rois, [r, int(j)])), f(scale)), f(halfPixel ? 0.5 : 0));
      const [sw, sh] = [coord(0), coord(1)];
      let rw = E.sub(coord(2), sw),
        rh = E.sub(coord(3), sh);
      if (!halfPixel) {
        rw = E.max(rw, f(1));
        rh = E.max(rh, f(1));
      }
      const binH = E.div(rh, f(oh)),
        binW = E.div(rw, f(ow));
      const gh = ratio > 0 ? int(ratio) : E.cast('int32', E.unary('ceil', binH)),
        gw = ratio > 0 ? int(ratio) : E.cast('int32', E.unary('ceil', binW));
      const iy = reduceAxis(GH, 'sy'),
        ix = reduceAxis(GW, 'sx');
      const pos = (start: Expr, p: Expr, bin: Expr, i: Expr, g: Expr) =>
        E.add(E.add(start, E.mul(E.cast(F, p), bin)), E.div(E.mul(E.add(E.cast(F, i), f(0.5)), bin), E.cast(F, g)));
      const yy = pos(sh, ph, binH, iy.v, gh),
        xx = pos(sw, pw, binW, ix.v, gw);
      const outside = E.or(E.or(E.lt(yy, f(-1)), E.gt(yy, f(H))), E.or(E.lt(xx, f(-1)), E.gt(xx, f(W))));
      // the low corner (at the last row/column both corners are it) and the fraction toward the high one
      const axis = (v: Expr, n: number) => {
        const p = E.max(v, f(0));
        const lo = E.cast('int32', E.unary('floor', p));
        const last = E.ge(lo, int(n - 1));
        const low = E.select(last, int(n - 1), lo);
        return {
          low,
          high: E.select(last, int(n - 1), E.add(lo, int(1))),
          l: E.select(last, f(0), E.sub(p, E.cast(F, lo))),
        };
      };
      const Y = axis(yy, H),
        X = axis(xx, W);
      const v = (yi: Expr, xi: Expr) => E.cast(F, E.load(x, [b, c, yi, xi]));
      const hy = E.sub(f(1), Y.l),
        hx = E.sub(f(1), X.l);
      const terms = [
        E.mul(E.mul(hy, hx), v(Y.low, X.low)),
        E.mul(E.mul(hy, X.l), v(Y.low, X.high)),
        E.mul(E.mul(Y.l, hx), v(Y.high, X.low)),
        E.mul(E.mul(Y.l, X.l), v(Y.high, X.high)),
      ];
      const active = ratio > 0 ? undefined : E.and(E.lt(iy.v, gh), E.lt(ix.v, gw));
      let result: Expr;
      if (isMax) {
        const sample = E.select(
          outside,
          f(0),
          terms.reduce((p, q) => E.max(p, q)),
        );
        const m = E.rmax(active ? E.select(active, sample, f(-Infinity)) : sample, [iy, ix]);
        // a bin with no samples keeps its initial 0
        result = active ? E.select(E.gt(E.mul(gh, gw), int(0)), m, f(0)) : m;
      } else {
        const sample = E.select(
          outside,
          f(0),
          terms.reduce((p, q) => E.add(p, q)),
        );
        const s = E.sum(active ? E.select(active, sample, f(0)) : sample, [iy, ix]);
        result = E.div(s, E.cast(F, E.max(E.mul(gh, gw), int(1))));
      }
      return E.cast(x.dtype, result);
    });
  },
});
