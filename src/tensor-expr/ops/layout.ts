// Layout operators: pure index movement (pad, depth_to_space, space_to_depth) and resampling (resize,
// grid_sample). Every output element reads a fixed, small number of input elements, so all are Injective.
import { isFloat } from '../../runtime/dtype.js';
import { OpPattern, type Attrs } from '../../relay-ir/op.js';
import { tensorType } from '../../relay-ir/types.js';
import * as E from '../expr.js';
import { type Expr, constant, int } from '../expr.js';
import { type Tensor, at, compute } from '../tensor.js';
import { defineOp } from '../op-def.js';
import { dims, ints, num, shapeError, staticDims, str, symbolicBatch } from './common.js';
import { dimAdd, dimBounds } from '../../relay-ir/sym-dim.js';

const F64 = 'float64';
const f64 = (v: number): Expr => constant(v, F64);
const clampIdx = (i: Expr, n: number): Expr => (n === 1 ? int(0) : E.min(E.max(i, int(0)), int(n - 1)));

/** Source index of `j` (may be outside [0, n)) under a non-constant pad mode. */
function padSource(j: Expr, n: number, mode: string): Expr {
  if (mode === 'edge') return clampIdx(j, n);
  if (mode === 'wrap') return E.floormod(j, int(n));
  if (mode === 'reflect') {
    if (n === 1) return int(0);
    const period = 2 * (n - 1);
    const m = E.floormod(j, int(period));
    return E.select(E.ge(m, int(n)), E.sub(int(period), m), m);
  }
  return shapeError(`pad: unknown mode '${mode}'`);
}

/** pad(x): attrs pads (2*rank: all begins then all ends; negative crops), mode, value (constant mode). */
defineOp({
  name: 'pad',
  pattern: OpPattern.Injective,
  inferType: ([x], a) => {
    const shape = x.shape;
    const pads = ints(a, 'pads'),
      r = shape.length;
    if (pads.length !== 2 * r) shapeError(`pad: ${pads.length} pads for rank ${r}`);
    const out = shape.map((d, i) => dimAdd(d, pads[i] + pads[r + i]));
    if (out.some((d) => dimBounds(d)[0] < 0)) shapeError(`pad: negative output shape [${out}]`);
    const mode = str(a, 'mode', 'constant');
    if (mode !== 'constant' && shape.some((d, i) => d !== out[i] && dimBounds(d)[0] === 0))
      shapeError(`pad: ${mode} mode on an axis that may be empty`);
    return tensorType(out, x.dtype);
  },
  compute: ([x], a, out) => {
    const pads = ints(a, 'pads'),
      r = x.shape.length,
      mode = str(a, 'mode', 'constant');
    return compute('pad', out.shape, (idx) => {
      const src = idx.map((i, d) => (pads[d] === 0 ? i : E.sub(i, int(pads[d]))));
      if (mode !== 'constant')
        return at(x, ...src.map((j, d) => (pads[d] > 0 || pads[r + d] > 0 ? padSource(j, x.shape[d], mode) : j)));
      const conds: Expr[] = [];
      src.forEach((j, d) => {
        if (pads[d] > 0) conds.push(E.ge(j, int(0)));
        if (pads[r + d] > 0) conds.push(E.lt(j, int(x.shape[d])));
      });
      const v = at(x, ...src);
      return conds.length ? E.select(E.all(conds), v, constant(num(a, 'value', 0), x.dtype)) : v;
    });
  },
});

/** depth_to_space(x): [N, C*b*b, H, W] -> [N, C, H*b, W*b]; mode DCR (depth-column-row) or CRD. */
defineOp({
  name: 'depth_to_space',
  pattern: OpPattern.Injective,
  inferType: symbolicBatch(([x], a) => {
    const s = staticDims(x, 'depth_to_space'),
      b = num(a, 'blocksize');
    if (s.length !== 4) shapeError(`depth_to_space needs a 4-D input, got rank ${s.length}`);
    if (b <= 0 || s[1] % (b * b) !== 0)
      shapeError(`depth_to_space: channels ${s[1]} not divisible by blocksize^2 (${b * b})`);
    return tensorType([s[0], s[1] / (b * b), s[2] * b, s[3] * b], x.dtype);
  }),
  compute: ([x], a, out) => {
    const b = num(a, 'blocksize'),
      crd = str(a, 'mode', 'DCR') === 'CRD',
      C = out.shape[1];
    return compute('depth_to_space', out.shape, ([n, c, h, w]) => {
      const bh = E.floormod(h, int(b)),
        bw = E.floormod(w, int(b));
      const ic = crd
        ? E.add(E.mul(c, int(b * b)), E.add(E.mul(bh, int(b)), bw))
        : E.add(E.mul(E.add(E.mul(bh, int(b)), bw), int(C)), c);
      return at(x, n, ic, E.floordiv(h, int(b)), E.floordiv(w, int(b)));
    });
  },
});

/** space_to_depth(x): [N, C, H*b, W*b] -> [N, C*b*b, H, W]; mode DCR (default) or CRD. */
defineOp({
  name: 'space_to_depth',
  pattern: OpPattern.Injective,
  inferType: symbolicBatch(([x], a) => {
    const s = staticDims(x, 'space_to_depth'),
      b = num(a, 'blocksize');
    if (s.length !== 4) shapeError(`space_to_depth needs a 4-D input, got rank ${s.length}`);
    if (b <= 0 || s[2] % b !== 0 || s[3] % b !== 0)
      shapeError(`space_to_depth: spatial dims [${s[2]},${s[3]}] not divisible by blocksize ${b}`);
    return tensorType([s[0], s[1] * b * b, s[2] / b, s[3] / b], x.dtype);
  }),
  compute: ([x], a, out) => {
    const b = num(a, 'blocksize'),
      crd = str(a, 'mode', 'DCR') === 'CRD',
      C = x.shape[1];
    return compute('space_to_depth', out.shape, ([n, oc, h, w]) => {
      let c: Expr, bh: Expr, bw: Expr;
      if (crd) {
        c = E.floordiv(oc, int(b * b));
        const r = E.floormod(oc, int(b * b));
        bh = E.floordiv(r, int(b));
        bw = E.floormod(r, int(b));
      } else {
        c = E.floormod(oc, int(C));
        const blk = E.floordiv(oc, int(C));
        bh = E.floordiv(blk, int(b));
        bw = E.floormod(blk, int(b));
      }
      return at(x, n, c, E.add(E.mul(h, int(b)), bh), E.add(E.mul(w, int(b)), bw));
    });
  },
});

// ---------------------------------------------------------------------------------------------------------
// resize: separable interpolation. Per resized axis, the source coordinate x_ori of output index y is
// computed in float64 exactly as the ONNX reference does, then a window of n neighbours (2 for nearest /
// linear, 4 for cubic, wider for antialiased downsampling) with one weight each; the output is the weighted
// sum over the cartesian product of the axes' windows (nearest: a single selected load).

interface AxisWindow {
  /** Source indices (already clamped into range), one per neighbour. */
  idx: Expr[];
  /** float64 weights, one per neighbour (undefined for nearest / identity axes). */
  w?: Expr[];
  /** bool: the coordinate lies outside the crop box (tf_crop_and_resize only). */
  extrap?: Expr;
}

function sourceCoord(
  mode: string,
  y: Expr,
  scale: number,
  inW: number,
  outInt: number,
  roi: [number, number],
  roiF32: boolean,
): { x: Expr; extrap?: Expr } {
  const yf = E.cast(F64, y);
  const outW = scale * inW;
  switch (mode) {
    case 'align_corners':
      return { x: outW === 1 ? f64(0) : E.div(E.mul(yf, f64(inW - 1)), f64(outW - 1)) };
    case 'asymmetric':
      return { x: E.div(yf, f64(scale)) };
    case 'tf_crop_and_resize': {
      // a float32 roi is combined in float32 arithmetic by the reference (numpy scalar promotion)
      const [r0, r1] = roi,
        fr = roiF32 ? Math.fround : (v: number) => v;
      const d = fr(r1 - r0);
      let x =
        outW === 1 ? f64(fr(fr(d * (inW - 1)) / 2)) : E.div(E.mul(E.mul(yf, f64(d)), f64(inW - 1)), f64(outW - 1));
      x = E.add(x, f64(fr(r0 * (inW - 1))));
      return { x, extrap: E.or(E.lt(x, f64(0)), E.gt(x, f64(inW - 1))) };
    }
    case 'pytorch_half_pixel':
      return { x: outW === 1 ? f64(-0.5) : E.sub(E.div(E.add(yf, f64(0.5)), f64(scale)), f64(0.5)) };
    case 'half_pixel':
      return { x: E.sub(E.div(E.add(yf, f64(0.5)), f64(scale)), f64(0.5)) };
    case 'half_pixel_symmetric': {
      const adjustment = outInt / outW,
        center = inW / 2,
        offset = center * (1 - adjustment);
      return { x: E.sub(E.add(f64(offset), E.div(E.add(yf, f64(0.5)), f64(scale))), f64(0.5)) };
    }
    default:
      return shapeError(`resize: unknown coordinate_transformation_mode '${mode}'`);
  }
}

/** Window weights as float64 expressions of the fractional position (plain: t in [0, 1); antialias: ratio in (0, 1]). */
function weights(a: Attrs, scale: number, ratio: Expr, plain: boolean): Expr[] {
  const mode = str(a, 'mode', 'nearest'),
    antialias = !plain;
  const A = num(a, 'cubic_coeff_a', -0.75);
  if (mode === 'linear' && !antialias) return [E.sub(f64(1), ratio), ratio];
  if (mode === 'cubic' && !antialias) {
    const r1 = E.add(ratio, f64(1)),
      q = E.sub(f64(1), ratio),
      q1 = E.add(q, f64(1));
    const outer = (t: Expr) =>
      E.sub(E.mul(E.add(E.mul(E.sub(E.mul(f64(A), t), f64(5 * A)), t), f64(8 * A)), t), f64(4 * A));
    const inner = (t: Expr) => E.add(E.mul(E.mul(E.sub(E.mul(f64(A + 2), t), f64(A + 3)), t), t), f64(1));
    return [outer(r1), inner(ratio), inner(q), outer(q1)];
  }
  // antialiased linear / cubic: kernel stretched by 1/scale, normalized to sum 1
  const s = Math.min(scale, 1);
  const start = mode === 'linear' ? Math.floor(-1 / s) + 1 : Math.floor(-2 / s) + 1;
  const n = 2 - 2 * start;
  const raw: Expr[] = [];
  for (let k = 0; k < n; k++) {
    const t = E.unary('abs', E.mul(E.sub(f64(start + k), ratio), f64(s)));
    if (mode === 'linear') raw.push(E.min(E.max(E.sub(f64(1), t), f64(0)), f64(1)));
    else {
      const t2 = E.mul(t, t),
        t3 = E.mul(t, t2);
      const near = E.add(E.sub(E.mul(f64(A + 2), t3), E.mul(f64(A + 3), t2)), f64(1));
      const far = E.sub(E.add(E.sub(E.mul(f64(A), t3), E.mul(f64(5 * A), t2)), E.mul(f64(8 * A), t)), f64(4 * A));
      raw.push(E.select(E.le(t, f64(1)), near, E.select(E.lt(t, f64(2)), far, f64(0))));
    }
  }
  const total = raw.reduce((p, q) => E.add(p, q));
  return raw.map((w) => E.div(w, total));
}

function axisWindow(a: Attrs, y: Expr, d: number, inW: number, outInt: number): AxisWindow {
  const scales = a.scales as readonly number[],
    roiAll = (a.roi as readonly number[] | null) ?? [];
  const r = (a.scales as readonly number[]).length,
    scale = scales[d];
  const roi: [number, number] = roiAll.length === 2 * r ? [roiAll[d], roiAll[r + d]] : [0, 1];
  const mode = str(a, 'mode', 'nearest'),
    ctm = str(a, 'coordinate_transformation_mode', 'half_pixel');
  const identity =
    Math.abs(scale - 1) <= 1e-9 * Math.max(1, Math.abs(scale)) &&
    outInt === inW &&
    (ctm !== 'tf_crop_and_resize' || (Math.abs(roi[0]) <= 1e-9 && Math.abs(roi[1] - 1) <= 1e-9));
  if (identity) return { idx: [y] };
  const { x, extrap } = sourceCoord(ctm, y, scale, inW, outInt, roi, a.roi_float32 === true);
  if (mode === 'nearest') {
    // the reference's tie rules reduce to one rounding of x (an integral x maps to itself)
    const nm = str(a, 'nearest_mode', 'round_prefer_floor');
    const rounded =
      nm === 'round_prefer_floor'
        ? E.unary('ceil', E.sub(x, f64(0.5)))
        : nm === 'round_prefer_ceil'
          ? E.unary('floor', E.add(x, f64(0.5)))
          : nm === 'floor'
            ? E.unary('floor', x)
            : nm === 'ceil'
              ? E.unary('ceil', x)
              : shapeError(`resize: unknown nearest_mode '${nm}'`);
    const exact = extrap ? undefined : integerNearest(rounded, x, y, outInt);
    return { idx: [clampIdx(exact ?? E.cast('int32', rounded), inW)], extrap };
  }
  let w: Expr[], raw: Expr[];
  const antialias = num(a, 'antialias', 0) !== 0 && scale < 1;
  if (!antialias) {
    // linear: x0, x0+1; cubic: x0-1 .. x0+2, with t = x - floor(x) in [0, 1). At an integral x the reference
    // uses the window one to the left with ratio 1; the weights there select the same single pixel.
    const x0 = E.unary('floor', x),
      t = E.sub(x, x0),
      i0 = E.cast('int32', x0);
    w = weights(a, scale, t, true);
    const first = w.length === 2 ? 0 : -1;
    raw = w.map((_, k) => (first + k === 0 ? i0 : E.add(i0, int(first + k))));
  } else {
    const x0 = E.unary('floor', x);
    const ratio = E.select(E.eq(x, x0), f64(1), E.sub(x, x0));
    w = weights(a, scale, ratio, false);
    const n = w.length;
    // the n indices nearest to x (ties to the smaller), as the reference finds them in an edge-padded array
    const pad = Math.ceil(n / 2);
    const xp = E.add(x, f64(pad)),
      pp = E.unary('floor', xp);
    const startF = E.select(E.eq(xp, pp), E.sub(pp, f64(n / 2)), E.sub(pp, f64(n / 2 - 1)));
    const start = E.sub(E.cast('int32', startF), int(pad));
    raw = Array.from({ length: n }, (_, k) => (k === 0 ? start : E.add(start, int(k))));
  }
  if (num(a, 'exclude_outside', 0)) {
    const kept = w.map((wk, k) => E.select(E.and(E.ge(raw[k], int(0)), E.lt(raw[k], int(inW))), wk, f64(0)));
    const total = kept.reduce((p, q) => E.add(p, q));
    const safe = E.select(E.eq(total, f64(0)), f64(1), total);
    w = kept.map((wk) => E.div(wk, safe));
  }
  return { idx: raw.map((i) => clampIdx(i, inW)), w, extrap };
}

/**
 * The nearest source index as floor((A*y + B) / C) in int32, when that formula gives the float64 rounding for every
 * output index y (evaluated here). GPU targets compute float64 in float32, whose division is not correctly rounded:
 * on an H100 a tie (x exactly k + 0.5) went the other way; integer arithmetic is exact on every target.
 */
function integerNearest(rounded: Expr, x: Expr, y: Expr, outInt: number): Expr | undefined {
  if (y.k !== 'var') return undefined;
  const table: number[] = [];
  for (let v = 0; v < outInt; v++) {
    const r = evalF64(rounded, y, v);
    if (r === undefined || !Number.isInteger(r)) return undefined;
    table.push(r);
  }
  if (outInt === 1) return int(table[0]);
  const x0 = evalF64(x, y, 0),
    x1 = evalF64(x, y, outInt - 1);
  if (x0 === undefined || x1 === undefined) return undefined;
  const slope = (x1 - x0) / (outInt - 1);
  for (let C = 1; C <= MAX_INDEX_DENOMINATOR; C++) {
    for (const A of new Set([Math.floor(C * slope), Math.ceil(C * slope)])) {
      // floor((A*y + B) / C) = t[y]  <=>  t[y]*C - A*y <= B <= (t[y]+1)*C - A*y - 1
      let lo = -Infinity,
        hi = Infinity;
      table.forEach((t, v) => {
        lo = Math.max(lo, t * C - A * v);
        hi = Math.min(hi, (t + 1) * C - A * v - 1);
      });
      if (lo > hi || Math.abs(A) * outInt + Math.abs(lo) >= 2 ** 31) continue;
      const num = lo === 0 ? E.mul(y, int(A)) : E.add(E.mul(y, int(A)), int(lo));
      return C === 1 ? num : E.floordiv(num, int(C));
    }
  }
  return undefined;
}
const MAX_INDEX_DENOMINATOR = 1024;

/** A float64 index expression of `y` at y = v, as the reference computes it (undefined for other operations). */
function evalF64(e: Expr, y: Expr, v: number): number | undefined {
  const go = (x: Expr): number | undefined => {
    if (x === y) return v;
    switch (x.k) {
      case 'const':
        return Number(x.value);
      case 'cast': {
        const a = go(x.a);
        return a === undefined
          ? undefined
          : x.dtype === 'float32'
            ? Math.fround(a)
            : x.dtype === 'float64'
              ? a
              : Math.trunc(a);
      }
      case 'un': {
        const a = go(x.a);
        return a === undefined
          ? undefined
          : x.op === 'floor'
            ? Math.floor(a)
            : x.op === 'ceil'
              ? Math.ceil(a)
              : undefined;
      }
      case 'bin': {
        const a = go(x.a),
          b = go(x.b);
        if (a === undefined || b === undefined) return undefined;
        switch (x.op) {
          case 'add':
            return a + b;
          case 'sub':
            return a - b;
          case 'mul':
            return a * b;
          case 'div':
            return a / b;
          default:
            return undefined;
        }
      }
      default:
        return undefined;
    }
  };
  return go(e);
}

/**
 * resize(x): attrs sizes (output shape), scales (per axis, float64), mode nearest|linear|cubic,
 * coordinate_transformation_mode, nearest_mode, cubic_coeff_a, exclude_outside, extrapolation_value,
 * roi (2*rank, tf_crop_and_resize), antialias.
 */
defineOp({
  name: 'resize',
  pattern: OpPattern.Injective,
  inferType: ([x], a) => {
    const r = x.shape.length,
      sizes = dims(a, 'sizes');
    if (sizes.length !== r || (a.scales as readonly number[]).length !== r)
      shapeError(`resize: sizes/scales rank differs from input rank ${r}`);
    x.shape.forEach((d, i) => {
      if (typeof d === 'string' && sizes[i] !== d) shapeError(`resize: symbolic axis ${i} (${d}) is resized`);
    });
    if (str(a, 'mode', 'nearest') !== 'nearest' && !isFloat(x.dtype) && x.dtype === 'bool')
      shapeError('resize: interpolation of bool');
    return tensorType(sizes, x.dtype);
  },
  compute: ([x], a, out) => {
    const mode = str(a, 'mode', 'nearest'),
      ev = num(a, 'extrapolation_value', 0);
    return compute('resize', out.shape, (idx) => {
      const wins = idx.map((y, d) => axisWindow(a, y, d, x.shape[d], out.shape[d]));
      const ex = wins.map((w) => w.extrap).filter((e): e is Expr => e !== undefined);
      let v: Expr;
      if (mode === 'nearest') v = at(x, ...wins.map((w) => w.idx[0]));
      else {
        // nested per axis: sum_k w0[k] * (sum_j w1[j] * (...)) keeps the weight multiplications linear in the window
        const rec = (d: number, sel: Expr[]): Expr => {
          if (d === wins.length) return E.cast(F64, at(x, ...sel));
          const win = wins[d];
          const parts = win.idx.map((i, k) => {
            const inner = rec(d + 1, [...sel, i]);
            return win.w ? E.mul(win.w[k], inner) : inner;
          });
          return parts.reduce((p, q) => E.add(p, q));
        };
        const sum = rec(0, []);
        v = toDType(sum, x.dtype);
      }
      return ex.length
        ? E.select(
            ex.reduce((p, q) => E.or(p, q)),
            constant(ev, x.dtype),
            v,
          )
        : v;
    });
  },
});

/** float64 -> dtype as the reference's saturate_cast: integers round half to even and clamp. */
function toDType(v: Expr, dt: Tensor['dtype']): Expr {
  if (isFloat(dt)) return E.cast(dt, v);
  const lo = E.reduceInit('max', dt),
    hi = E.reduceInit('min', dt);
  const r = E.unary('round', v);
  return E.cast(
    dt,
    E.min(E.max(r, f64(Number(lo.k === 'const' ? lo.value : 0))), f64(Number(hi.k === 'const' ? hi.value : 0))),
  );
}

// ---------------------------------------------------------------------------------------------------------
// grid_sample(x [N, C, D1..Dk], grid [N, O1..Ok, k]) -> [N, C, O1..Ok]; grid holds normalized coordinates in
// [-1, 1], innermost spatial dimension first. Follows the ONNX reference (PyTorch's GridSampler).

/** Reflects a float64 coordinate into [lo, hi] by the nearer border (repeatedly). */
function reflectCoord(x: Expr, lo: number, hi: number): Expr {
  const rng = hi - lo;
  if (rng <= 0) return f64(lo);
  const side = (dx: Expr, near: number, far: number, sgn: 1 | -1) => {
    const n = E.unary('floor', E.div(dx, f64(rng)));
    const r = E.sub(dx, E.mul(n, f64(rng)));
    const even = E.eq(E.sub(n, E.mul(f64(2), E.unary('floor', E.div(n, f64(2))))), f64(0));
    const towardNear = sgn > 0 ? E.add(f64(near), r) : E.sub(f64(near), r);
    const towardFar = sgn > 0 ? E.sub(f64(far), r) : E.add(f64(far), r);
    return E.select(even, towardNear, towardFar);
  };
  return E.select(
    E.lt(x, f64(lo)),
    side(E.sub(f64(lo), x), lo, hi, 1),
    E.select(E.gt(x, f64(hi)), side(E.sub(x, f64(hi)), hi, lo, -1), x),
  );
}

const GS_A = -0.75;
function gsCubic(t: Expr): Expr[] {
  const A = GS_A;
  const outer = (u: Expr) =>
    E.sub(E.mul(E.add(E.mul(E.sub(E.mul(f64(A), u), f64(5 * A)), u), f64(8 * A)), u), f64(4 * A));
  const inner = (u: Expr) => E.add(E.mul(E.mul(E.sub(E.mul(f64(A + 2), u), f64(A + 3)), u), u), f64(1));
  const q = E.sub(f64(1), t);
  return [outer(E.add(t, f64(1))), inner(t), inner(q), outer(E.sub(f64(2), t))];
}

defineOp({
  name: 'grid_sample',
  pattern: OpPattern.Injective,
  inferType: symbolicBatch(([x, g]) => {
    const xs = staticDims(x, 'grid_sample'),
      gs = staticDims(g, 'grid_sample grid');
    const k = xs.length - 2;
    if (k < 1 || gs.length !== k + 2 || gs[k + 1] !== k || gs[0] !== xs[0])
      shapeError(`grid_sample: grid [${gs}] does not match input [${xs}]`);
    if (!isFloat(g.dtype)) shapeError(`grid_sample: grid must be float, got ${g.dtype}`);
    return tensorType([xs[0], xs[1], ...gs.slice(1, k + 1)], x.dtype);
  }),
  compute: ([x, g], a, out) => {
    const mode = str(a, 'mode', 'linear'),
      pm = str(a, 'padding_mode', 'zeros'),
      align = num(a, 'align_corners', 0) !== 0;
    const dims = x.shape.slice(2),
      k = dims.length;
    return compute('grid_sample', out.shape, (idx) => {
      const [n, c, ...o] = idx;
      const wins = dims.map((len, i) => {
        const nx = E.cast(F64, at(g, n, ...o, int(k - 1 - i)));
        const den = align
          ? E.mul(E.div(E.add(nx, f64(1)), f64(2)), f64(len - 1))
          : E.div(E.sub(E.mul(E.add(nx, f64(1)), f64(len)), f64(1)), f64(2));
        let xv = E.cast(F64, E.cast('float32', den)); // the reference keeps denormalized coordinates in float32
        if (mode === 'nearest') xv = E.unary('round', xv);
        const lo = align ? 0 : -0.5,
          hi = align ? len - 1 : len - 0.5;
        if (pm === 'border')
          xv = E.select(E.or(E.lt(xv, f64(lo)), E.gt(xv, f64(hi))), E.min(E.max(xv, f64(0)), f64(len - 1)), xv);
        else if (pm === 'reflection') xv = reflectCoord(xv, lo, hi);
        if (mode === 'nearest') return { idx: [E.cast('int32', xv)], w: undefined as Expr[] | undefined, lo, hi, len };
        const x0 = E.unary('floor', xv),
          t = E.sub(xv, x0),
          i0 = E.cast('int32', x0);
        const w = mode === 'cubic' ? gsCubic(t) : [E.sub(f64(1), t), t];
        const first = mode === 'cubic' ? -1 : 0;
        return { idx: w.map((_, j) => E.add(i0, int(first + j))), w, lo, hi, len };
      });
      const pixel = (sel: Expr[]): Expr => {
        if (pm === 'zeros') {
          const ok = E.all(sel.flatMap((i, d) => [E.ge(i, int(0)), E.lt(i, int(dims[d]))]));
          return E.select(ok, E.cast(F64, at(x, n, c, ...sel.map((i, d) => clampIdx(i, dims[d])))), f64(0));
        }
        if (pm === 'border') return E.cast(F64, at(x, n, c, ...sel.map((i, d) => clampIdx(i, dims[d]))));
        return E.cast(
          F64,
          at(
            x,
            n,
            c,
            ...sel.map((i, d) =>
              clampIdx(E.cast('int32', reflectCoord(E.cast(F64, i), wins[d].lo, wins[d].hi)), dims[d]),
            ),
          ),
        );
      };
      const terms: Expr[] = [];
      const rec = (d: number, sel: Expr[], wt: Expr | undefined): void => {
        if (d === k) {
          const p = pixel(sel);
          terms.push(wt ? E.mul(wt, p) : p);
          return;
        }
        wins[d].idx.forEach((i, j) => {
          const wj = wins[d].w?.[j];
          rec(d + 1, [...sel, i], wj ? (wt ? E.mul(wt, wj) : wj) : wt);
        });
      };
      rec(0, [], undefined);
      return toDType(
        terms.reduce((p, q) => E.add(p, q)),
        x.dtype,
      );
    });
  },
});
