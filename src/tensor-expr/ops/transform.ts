// Shape and data-movement operators: reshape family, transpose, concat, slice, gather family, expand, tile,
// shape/size, one-hot, trilu, eye-like, scatter family, reverse-sequence. Index-movement ops are Injective
// and pure index arithmetic over loads, so fusion inlines them into their consumers.
import type { DType } from '../../runtime/dtype.js';
import { isFloat } from '../../runtime/dtype.js';
import { sizeOf } from '../../runtime/tensor.js';
import { OpPattern, type Attrs } from '../../relay-ir/op.js';
import { type Dim, type TensorType, tensorType } from '../../relay-ir/types.js';
import * as E from '../expr.js';
import { type Expr, type IterVar, int } from '../expr.js';
import { type Tensor, compute, reduceAxis } from '../tensor.js';
import { defineOp } from '../op-def.js';
import {
  dimAdd,
  dimBounds,
  dimEquals,
  dimsDiffer,
  dimFloorDiv,
  dimMax,
  dimMin,
  dimMul,
  dimProduct,
  dimSub,
} from '../../relay-ir/sym-dim.js';
import {
  broadcastShapes,
  bcastLoad,
  dims,
  ints,
  normAxis,
  num,
  sameDtype,
  shapeError,
  staticDim,
  staticDims,
  str,
} from './common.js';

const allNum = (s: readonly Dim[]): s is number[] => s.every((d) => typeof d === 'number');

/**
 * An index value (any integer or float dtype) as an int32 index, negative values wrapped by `dim`, then held inside
 * [0, dim - 1]: an index out of range (an error by ONNX's rules, or what lies past a run-time size in a bound
 * layout) reads an edge element, never memory outside the tensor. (`dim - 1` is written `min(i + 1, dim) - 1`: only
 * the dim itself appears, which a kernel for run-time sizes reads as a size.)
 */
export function normIndex(v: Expr, dim: number): Expr {
  const i = E.cast('int32', v);
  const wrapped = E.select(E.lt(i, int(0)), E.add(i, int(dim)), i);
  return E.sub(E.min(E.add(E.max(wrapped, int(0)), int(1)), int(dim)), int(1));
}

/** Row-major position of `idx` (over `dims`) unravelled into `into` (same product): one index per `into` dim. */
function relinearize(idx: readonly Expr[], dims: readonly number[], into: readonly number[]): Expr[] {
  let lin: Expr = int(0);
  let stride = 1,
    first = true;
  for (let d = dims.length - 1; d >= 0; d--) {
    if (dims[d] !== 1) {
      const term = stride === 1 ? idx[d] : E.mul(idx[d], int(stride));
      lin = first ? term : E.add(term, lin);
      first = false;
    }
    stride *= dims[d];
  }
  const out: Expr[] = [];
  stride = 1;
  const strides = into.map(() => 0);
  for (let d = into.length - 1; d >= 0; d--) {
    strides[d] = stride;
    stride *= into[d];
  }
  const outer = into.findIndex((d) => d !== 1);
  for (let d = 0; d < into.length; d++) {
    if (into[d] === 1) {
      out.push(int(0));
      continue;
    }
    let e = strides[d] === 1 ? lin : E.floordiv(lin, int(strides[d]));
    if (d !== outer) e = E.floormod(e, int(into[d]));
    out.push(e);
  }
  return out;
}

/**
 * Loads `x` (static shape) at the row-major position of `idx` in a tensor of shape `outShape` (same numel).
 * Dims are split into groups of equal product (numpy's reshape grouping), so only regrouped dims pay div/mod.
 */
function reshapeLoad(x: Tensor, idx: readonly Expr[], outShape: readonly number[]): Expr {
  const inShape = x.shape;
  if (sizeOf(inShape) === 0)
    return E.load(
      x,
      inShape.map(() => int(0)),
    );
  const ix: Expr[] = [];
  let i = 0,
    j = 0;
  while (i < inShape.length || j < outShape.length) {
    const gi = i,
      gj = j;
    let pi = 1,
      po = 1;
    if (i < inShape.length) pi *= inShape[i++];
    if (j < outShape.length) po *= outShape[j++];
    while (pi !== po) {
      if (pi < po) pi *= inShape[i++];
      else po *= outShape[j++];
    }
    // absorb trailing size-1 dims into this group
    while (i < inShape.length && inShape[i] === 1 && !(j < outShape.length && outShape[j] === 1)) i++;
    while (j < outShape.length && outShape[j] === 1 && !(i < inShape.length && inShape[i] === 1)) j++;
    ix.push(...relinearize(idx.slice(gj, j), outShape.slice(gj, j), inShape.slice(gi, i)));
  }
  return E.load(x, ix);
}

function reshapeCompute(name: string) {
  return ([x]: readonly Tensor[], _a: Attrs, out: { shape: readonly number[] }) =>
    compute(name, out.shape, (idx) => reshapeLoad(x, idx, out.shape));
}

// ---- reshape family ----

defineOp({
  name: 'reshape',
  pattern: OpPattern.Injective,
  inferType: ([x], a) => {
    const shape = dims(a, 'shape');
    if (shape.some((d) => typeof d === 'number' && (d < 0 || !Number.isInteger(d))))
      shapeError(`reshape: target shape [${shape}] must be explicit`);
    if (
      allNum(x.shape) && allNum(shape)
        ? sizeOf(x.shape) !== sizeOf(shape)
        : !dimEquals(dimProduct(x.shape), dimProduct(shape))
    )
      shapeError(`reshape: cannot reshape [${x.shape}] to [${shape}]`);
    return tensorType(shape, x.dtype);
  },
  compute: reshapeCompute('reshape'),
});

defineOp({
  name: 'flatten',
  pattern: OpPattern.Injective,
  inferType: ([x], a) => {
    const r = x.shape.length;
    let axis = num(a, 'axis', 1);
    if (axis < 0) axis += r;
    if (axis < 0 || axis > r) shapeError(`flatten: axis ${num(a, 'axis', 1)} out of range for rank ${r}`);
    const head = x.shape.slice(0, axis),
      tail = x.shape.slice(axis);
    return tensorType([dimProduct(head), dimProduct(tail)], x.dtype);
  },
  compute: reshapeCompute('flatten'),
});

function squeezeAxes(x: TensorType, a: Attrs): number[] {
  const r = x.shape.length;
  const given = a.axes === undefined || a.axes === null ? undefined : ints(a, 'axes');
  if (given === undefined) return x.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0);
  return given.map((ax) => normAxis(ax, r, 'squeeze axis'));
}

defineOp({
  name: 'squeeze',
  pattern: OpPattern.Injective,
  inferType: ([x], a) => {
    const axes = squeezeAxes(x, a);
    for (const ax of axes)
      if (x.shape[ax] !== 1 && typeof x.shape[ax] === 'number')
        shapeError(`squeeze: dim ${ax} of [${x.shape}] is not 1`);
    return tensorType(
      x.shape.filter((_, i) => !axes.includes(i)),
      x.dtype,
    );
  },
  compute: reshapeCompute('squeeze'),
});

defineOp({
  name: 'unsqueeze',
  pattern: OpPattern.Injective,
  inferType: ([x], a) => {
    const given = ints(a, 'axes');
    const R = x.shape.length + given.length;
    const axes = given.map((ax) => normAxis(ax, R, 'unsqueeze axis'));
    if (new Set(axes).size !== axes.length) shapeError(`unsqueeze: repeated axes [${given}]`);
    const out: Dim[] = [];
    let j = 0;
    for (let i = 0; i < R; i++) out.push(axes.includes(i) ? 1 : x.shape[j++]);
    return tensorType(out, x.dtype);
  },
  compute: reshapeCompute('unsqueeze'),
});

// ---- transpose ----

const permOf = (a: Attrs, r: number): number[] => {
  const p = a.perm === undefined || a.perm === null ? [...Array(r).keys()].reverse() : ints(a, 'perm');
  return p.map((v) => normAxis(v, r, 'perm entry'));
};

defineOp({
  name: 'transpose',
  pattern: OpPattern.Injective,
  inferType: ([x], a) => {
    const p = permOf(a, x.shape.length);
    if (p.length !== x.shape.length || new Set(p).size !== p.length)
      shapeError(`transpose: bad perm [${p}] for rank ${x.shape.length}`);
    return tensorType(
      p.map((i) => x.shape[i]),
      x.dtype,
    );
  },
  compute: ([x], a, out) => {
    const p = permOf(a, x.shape.length);
    return compute('transpose', out.shape, (idx) => {
      const ix: Expr[] = new Array(p.length);
      p.forEach((src, o) => {
        ix[src] = idx[o];
      });
      return E.load(x, ix);
    });
  },
});

// ---- concat ----

defineOp({
  name: 'concat',
  pattern: OpPattern.Injective,
  inferType: (xs, a) => {
    if (!xs.length) shapeError('concat: no inputs');
    const r = xs[0].shape.length;
    const axis = normAxis(num(a, 'axis'), r);
    const out = [...xs[0].shape];
    let total: Dim = 0;
    for (const x of xs) {
      if (x.shape.length !== r) shapeError('concat: inputs differ in rank');
      if (x.dtype !== xs[0].dtype) shapeError(`concat: dtypes differ (${xs[0].dtype} vs ${x.dtype})`);
      // (symbolic dims the ranges cannot tell apart pass here; binding them to sizes checks them again)
      x.shape.forEach((d, i) => {
        if (i !== axis && dimsDiffer(d, out[i]))
          shapeError(`concat: shapes [${xs[0].shape}] and [${x.shape}] differ off the axis`);
      });
      total = dimAdd(total, x.shape[axis]);
    }
    out[axis] = total;
    return tensorType(out, xs[0].dtype);
  },
  compute: (xs, a, out) => {
    const axis = normAxis(num(a, 'axis'), out.shape.length);
    const parts = xs.filter((x) => x.shape[axis] > 0);
    return compute('concat', out.shape, (idx) => {
      const offs: number[] = [];
      let o = 0;
      for (const x of parts) {
        offs.push(o);
        o += x.shape[axis];
      }
      const ld = (k: number) => {
        const ix = [...idx];
        if (offs[k]) ix[axis] = E.sub(idx[axis], int(offs[k]));
        return E.load(parts[k], ix);
      };
      let e = ld(parts.length - 1);
      for (let k = parts.length - 2; k >= 0; k--) e = E.select(E.lt(idx[axis], int(offs[k + 1])), ld(k), e);
      return e;
    });
  },
});

// ---- slice ----

/** Per input axis: [start, step, count] after ONNX clamping. */
function sliceSpec(shape: readonly Dim[], a: Attrs): { start: Dim; step: number; count: Dim }[] {
  const r = shape.length;
  const starts = dims(a, 'starts'),
    ends = dims(a, 'ends');
  const axes = a.axes === undefined || a.axes === null ? starts.map((_, i) => i) : ints(a, 'axes');
  const steps = a.steps === undefined || a.steps === null ? starts.map(() => 1) : ints(a, 'steps');
  if (ends.length !== starts.length || axes.length !== starts.length || steps.length !== starts.length)
    shapeError('slice: starts/ends/axes/steps lengths differ');
  const spec: { start: Dim; step: number; count: Dim }[] = shape.map((d) => ({ start: 0, step: 1, count: d }));
  const seen = new Set<number>();
  axes.forEach((ax0, k) => {
    const ax = normAxis(ax0, r, 'slice axis');
    if (seen.has(ax)) shapeError(`slice: axis ${ax} is listed twice in axes [${axes.join(', ')}]`);
    seen.add(ax);
    const d = shape[ax];
    const st = steps[k];
    if (st === 0) shapeError('slice: step 0');
    let s = starts[k],
      e = ends[k];
    if (typeof d !== 'number' || typeof s !== 'number' || typeof e !== 'number') {
      spec[ax] = symbolicSlice(d, s, e, st, ax);
      return;
    }
    if (s < 0) s += d;
    if (e < 0) e += d;
    if (st > 0) {
      s = Math.min(Math.max(s, 0), d);
      e = Math.min(Math.max(e, 0), d);
    } else {
      s = Math.min(Math.max(s, 0), d - 1);
      e = Math.min(Math.max(e, -1), d - 1);
    }
    const count = Math.max(0, Math.ceil((e - s) / st));
    spec[ax] = { start: count > 0 ? s : 0, step: st, count };
  });
  return spec;
}

/**
 * One axis of a forward slice where the dim or the bounds are symbolic: a negative constant bound counts from
 * the end, the bounds are clamped to [0, d] (a min/max the symbols' ranges may decide), and the count is what
 * lies between them.
 */
function symbolicSlice(d: Dim, s0: Dim, e0: Dim, step: number, ax: number): { start: Dim; step: number; count: Dim } {
  if (step < 0) shapeError(`slice: axis ${ax} of symbolic size ${d} with a negative step`);
  const fromEnd = (b: Dim): Dim => (typeof b === 'number' && b < 0 ? dimAdd(d, b) : b);
  const clamp = (b: Dim): Dim => {
    if (dimBounds(b)[0] < 0) {
      if (dimBounds(b)[1] <= 0) return 0;
      shapeError(`slice: axis ${ax} bound ${b} may be negative`);
    }
    return dimMin(b, d);
  };
  const s = clamp(fromEnd(s0)),
    e = clamp(fromEnd(e0));
  const count = dimMax(0, dimFloorDiv(dimAdd(dimSub(e, s), step - 1), step));
  return { start: s, step, count };
}

defineOp({
  name: 'slice',
  pattern: OpPattern.Injective,
  inferType: ([x], a) =>
    tensorType(
      sliceSpec(x.shape, a).map((s) => s.count),
      x.dtype,
    ),
  compute: ([x], a, out) => {
    const spec = sliceSpec(x.shape, a);
    return compute('slice', out.shape, (idx) =>
      E.load(
        x,
        idx.map((i, d) => {
          const { start, step } = spec[d];
          const m = step === 1 ? i : E.mul(i, int(step));
          return start === 0 ? m : E.add(m, int(staticDim(start, 'slice start')));
        }),
      ),
    );
  },
});

// ---- gather family ----

defineOp({
  name: 'gather',
  pattern: OpPattern.Injective,
  inferType: ([x, ind], a) => {
    const axis = normAxis(num(a, 'axis', 0), x.shape.length);
    if (isFloat(ind.dtype)) shapeError('gather: indices must be integers');
    return tensorType([...x.shape.slice(0, axis), ...ind.shape, ...x.shape.slice(axis + 1)], x.dtype);
  },
  compute: ([x, ind], a, out) => {
    const axis = normAxis(num(a, 'axis', 0), x.shape.length);
    const q = ind.shape.length;
    return compute('gather', out.shape, (idx) => {
      const j = normIndex(E.load(ind, idx.slice(axis, axis + q)), x.shape[axis]);
      return E.load(x, [...idx.slice(0, axis), j, ...idx.slice(axis + q)]);
    });
  },
});

defineOp({
  name: 'gather_elements',
  pattern: OpPattern.Injective,
  inferType: ([x, ind], a) => {
    normAxis(num(a, 'axis', 0), x.shape.length);
    if (ind.shape.length !== x.shape.length) shapeError('gather_elements: indices rank differs from data rank');
    return tensorType(ind.shape, x.dtype);
  },
  compute: ([x, ind], a, out) => {
    const axis = normAxis(num(a, 'axis', 0), x.shape.length);
    return compute('gather_elements', out.shape, (idx) => {
      const ix = [...idx];
      ix[axis] = normIndex(E.load(ind, idx), x.shape[axis]);
      return E.load(x, ix);
    });
  },
});

defineOp({
  name: 'gather_nd',
  pattern: OpPattern.Injective,
  inferType: ([x, ind], a) => {
    const b = num(a, 'batch_dims', 0);
    const k = ind.shape[ind.shape.length - 1];
    if (typeof k !== 'number') shapeError('gather_nd: last indices dim must be static');
    if (b + k > x.shape.length) shapeError('gather_nd: indices last dim too large');
    return tensorType([...ind.shape.slice(0, -1), ...x.shape.slice(b + k)], x.dtype);
  },
  compute: ([x, ind], a, out) => {
    const b = num(a, 'batch_dims', 0);
    const q = ind.shape.length,
      k = ind.shape[q - 1];
    return compute('gather_nd', out.shape, (idx) => {
      const p = idx.slice(0, q - 1),
        rest = idx.slice(q - 1);
      const ix: Expr[] = [...p.slice(0, b)];
      for (let m = 0; m < k; m++) ix.push(normIndex(E.load(ind, [...p, int(m)]), x.shape[b + m]));
      return E.load(x, [...ix, ...rest]);
    });
  },
});

// ---- expand / tile ----

defineOp({
  name: 'expand',
  pattern: OpPattern.Broadcast,
  inferType: ([x], a) => tensorType(broadcastShapes([x.shape, dims(a, 'shape')]), x.dtype),
  compute: ([x], _a, out) => compute('expand', out.shape, (idx) => bcastLoad(x, idx)),
});

defineOp({
  name: 'tile',
  pattern: OpPattern.Injective,
  inferType: ([x], a) => {
    const reps = ints(a, 'repeats');
    if (reps.length !== x.shape.length) shapeError(`tile: ${reps.length} repeats for rank ${x.shape.length}`);
    return tensorType(
      x.shape.map((d, i) => dimMul(d, reps[i])),
      x.dtype,
    );
  },
  compute: ([x], _a, out) =>
    compute('tile', out.shape, (idx) =>
      E.load(
        x,
        idx.map((i, d) =>
          x.shape[d] === 1 ? int(0) : x.shape[d] === out.shape[d] ? i : E.floormod(i, int(x.shape[d])),
        ),
      ),
    ),
});

// ---- shape / size (fold from types) ----

function shapeRange(r: number, a: Attrs): [number, number] {
  const cl = (v: number) => Math.min(Math.max(v < 0 ? v + r : v, 0), r);
  const s = cl(num(a, 'start', 0));
  const e = a.end === undefined || a.end === null ? r : cl(num(a, 'end'));
  return [s, Math.max(s, e)];
}

const constVector = (name: string, vals: readonly number[], dtype: DType): Tensor =>
  compute(name, [vals.length], ([i]) => {
    let e: Expr = E.constant(vals[vals.length - 1] ?? 0, dtype);
    for (let k = vals.length - 2; k >= 0; k--) e = E.select(E.eq(i, int(k)), E.constant(vals[k], dtype), e);
    return e;
  });

defineOp({
  name: 'shape',
  pattern: OpPattern.Injective,
  inferType: ([x], a) => {
    const [s, e] = shapeRange(x.shape.length, a);
    return tensorType([e - s], 'int64');
  },
  dimsFromType: ([x], a) => {
    const [s, e] = shapeRange(x.shape.length, a);
    return x.shape.slice(s, e);
  },
  compute: ([x], a) => {
    const [s, e] = shapeRange(x.shape.length, a);
    return constVector('shape', x.shape.slice(s, e), 'int64');
  },
});

defineOp({
  name: 'size',
  pattern: OpPattern.Injective,
  inferType: () => tensorType([], 'int64'),
  dimsFromType: ([x]) => [dimProduct(x.shape)],
  compute: ([x]) => compute('size', [], () => E.constant(sizeOf(x.shape), 'int64')),
});

// ---- one-hot, trilu, eye-like ----

defineOp({
  name: 'one_hot',
  pattern: OpPattern.Injective,
  inferType: ([ind, vals], a) => {
    const R = ind.shape.length + 1;
    const axis = normAxis(num(a, 'axis', -1), R);
    const out = [...ind.shape];
    const depth = num(a, 'depth');
    if (!Number.isSafeInteger(depth) || depth < 1) shapeError(`one_hot: depth ${depth} must be a whole number >= 1`);
    out.splice(axis, 0, depth);
    return tensorType(out, vals.dtype);
  },
  compute: ([ind, vals], a, out) => {
    const R = out.shape.length,
      axis = normAxis(num(a, 'axis', -1), R),
      depth = num(a, 'depth');
    return compute('one_hot', out.shape, (idx) => {
      const v = E.load(ind, [...idx.slice(0, axis), ...idx.slice(axis + 1)]);
      const i = E.cast('int32', v);
      const j = E.select(E.lt(i, int(0)), E.add(i, int(depth)), i);
      return E.select(E.eq(j, idx[axis]), E.load(vals, [int(1)]), E.load(vals, [int(0)]));
    });
  },
});

defineOp({
  name: 'trilu',
  pattern: OpPattern.Injective,
  inferType: ([x]) => {
    if (x.shape.length < 2) shapeError('trilu: rank must be >= 2');
    return tensorType(x.shape, x.dtype);
  },
  compute: ([x], a, out) => {
    const upper = num(a, 'upper', 1),
      k = num(a, 'k', 0),
      R = out.shape.length;
    return compute('trilu', out.shape, (idx) => {
      const diff = E.sub(idx[R - 1], idx[R - 2]);
      const keep = upper ? E.ge(diff, int(k)) : E.le(diff, int(k));
      return E.select(keep, E.load(x, idx), E.constant(0, x.dtype));
    });
  },
});

/** start, start + delta, ... (`count` values, a dim that may be symbolic): ONNX Range with a run-time limit. */
defineOp({
  name: 'range',
  pattern: OpPattern.Injective,
  inferType: ([start, delta], a) => {
    if (start.shape.length !== 0 || delta.shape.length !== 0) shapeError('range: start and delta must be scalars');
    sameDtype('range', start, delta);
    return tensorType([dims(a, 'count')[0]], start.dtype);
  },
  compute: ([start, delta], _a, out) =>
    compute('range', out.shape, ([i]) => E.add(E.load(start, []), E.mul(E.cast(start.dtype, i), E.load(delta, [])))),
});

defineOp({
  name: 'eye_like',
  pattern: OpPattern.Injective,
  inferType: ([x], a) => {
    if (x.shape.length !== 2) shapeError('eye_like: input must be 2-D');
    return tensorType(x.shape, (a.dtype as DType | undefined) ?? x.dtype);
  },
  compute: (_x, a, out) => {
    const k = num(a, 'k', 0);
    return compute('eye_like', out.shape, ([i, j]) =>
      E.select(E.eq(E.sub(j, i), int(k)), E.constant(1, out.dtype), E.constant(0, out.dtype)),
    );
  },
});

// ---- reverse sequence ----

defineOp({
  name: 'reverse_sequence',
  pattern: OpPattern.Injective,
  inferType: ([x, lens], a) => {
    const r = x.shape.length,
      bAx = num(a, 'batch_axis', 1),
      tAx = num(a, 'time_axis', 0);
    if (r < 2 || ![bAx, tAx].every((v) => v === 0 || v === 1) || bAx === tAx) {
      shapeError(
        `reverse_sequence: batch_axis ${bAx} and time_axis ${tAx} must be 0 and 1 (in either order) of an input of rank >= 2, got [${x.shape}]`,
      );
    }
    if (lens.shape.length !== 1 || lens.shape[0] !== x.shape[bAx])
      shapeError(`reverse_sequence: sequence_lens [${lens.shape}] must be [${x.shape[bAx]}]`);
    return tensorType(x.shape, x.dtype);
  },
  compute: ([x, lens], a, out) => {
    const bAx = num(a, 'batch_axis', 1),
      tAx = num(a, 'time_axis', 0);
    return compute('reverse_sequence', out.shape, (idx) => {
      const L = E.cast('int32', E.load(lens, [idx[bAx]]));
      const ix = [...idx];
      ix[tAx] = E.sub(E.sub(L, int(1)), idx[tAx]);
      return E.select(E.lt(idx[tAx], L), E.load(x, ix), E.load(x, idx));
    });
  },
});

// ---- scatter family ----
// Each output element reduces over the updates that target it; reduction 'none' keeps the last such update.

const reduceOver = (op: E.ReduceOp, body: Expr, axes: readonly IterVar[]): Expr =>
  axes.length ? E.reduce(op, body, axes) : body;

function scatterCombine(
  name: string,
  data: Tensor,
  updates: Tensor,
  reduction: string,
  outShape: readonly number[],
  axes: (idx: Expr[]) => IterVar[],
  match: (idx: Expr[], rv: Expr[]) => Expr,
  updIdx: (idx: Expr[], rv: Expr[]) => Expr[],
  linear: (rv: Expr[]) => Expr,
  unravel: (lin: Expr) => Expr[],
): Tensor {
  if (reduction === 'none') {
    const last = compute(`${name}_last`, outShape, (idx) => {
      const ax = axes(idx),
        rv = ax.map((a) => a.v);
      return reduceOver('max', E.select(match(idx, rv), linear(rv), int(-1)), ax);
    });
    return compute(name, outShape, (idx) => {
      const j = E.load(last, idx);
      return E.select(E.ge(j, int(0)), E.load(updates, updIdx(idx, unravel(j))), E.load(data, idx));
    });
  }
  const op: E.ReduceOp =
    reduction === 'add'
      ? 'sum'
      : reduction === 'mul'
        ? 'prod'
        : reduction === 'max'
          ? 'max'
          : reduction === 'min'
            ? 'min'
            : shapeError(`${name}: unknown reduction '${reduction}'`);
  return compute(name, outShape, (idx) => {
    const ax = axes(idx),
      rv = ax.map((a) => a.v);
    const init = E.reduceInit(op, data.dtype);
    const r = reduceOver(op, E.select(match(idx, rv), E.load(updates, updIdx(idx, rv)), init), ax);
    const d = E.load(data, idx);
    return op === 'sum' ? E.add(d, r) : op === 'prod' ? E.mul(d, r) : op === 'max' ? E.max(d, r) : E.min(d, r);
  });
}

defineOp({
  name: 'scatter_elements',
  pattern: OpPattern.Opaque,
  inferType: ([x, ind, upd], a) => {
    normAxis(num(a, 'axis', 0), x.shape.length);
    if (ind.shape.length !== x.shape.length || upd.shape.length !== x.shape.length)
      shapeError('scatter_elements: ranks differ');
    if (upd.dtype !== x.dtype) shapeError('scatter_elements: updates dtype differs from data');
    return tensorType(x.shape, x.dtype);
  },
  compute: ([x, ind, upd], a, out) => {
    const r = x.shape.length,
      axis = normAxis(num(a, 'axis', 0), r),
      n = ind.shape[axis];
    const inBounds = (idx: Expr[]) =>
      E.all(
        idx
          .map((i, d) => (d === axis || ind.shape[d] >= x.shape[d] ? undefined : E.lt(i, int(ind.shape[d]))))
          .filter((e): e is Expr => !!e),
      );
    const at = (idx: Expr[], rv: Expr[]) => {
      const ix = [...idx];
      ix[axis] = rv[0];
      return ix;
    };
    return scatterCombine(
      'scatter_elements',
      x,
      upd,
      str(a, 'reduction', 'none'),
      out.shape,
      () => [reduceAxis(n, 'rs')],
      (idx, rv) => {
        const hit = E.eq(normIndex(E.load(ind, at(idx, rv)), x.shape[axis]), idx[axis]);
        const b = inBounds(idx);
        return b.k === 'const' ? hit : E.select(b, hit, E.constant(0, 'bool'));
      },
      at,
      (rv) => rv[0],
      (j) => [j],
    );
  },
});

defineOp({
  name: 'scatter_nd',
  pattern: OpPattern.Opaque,
  structuralDims: ([, ind]) => [[ind.shape[ind.shape.length - 1], "the indices' last dim"]],
  inferType: ([x, , upd]) => {
    if (upd.dtype !== x.dtype) shapeError('scatter_nd: updates dtype differs from data');
    return tensorType(x.shape, x.dtype);
  },
  compute: ([x, ind, upd], a, out) => {
    const q = ind.shape.length,
      k = ind.shape[q - 1],
      P = ind.shape.slice(0, q - 1);
    const lin = (rv: Expr[]) => {
      let e: Expr = int(0);
      rv.forEach((v, d) => {
        e = d === 0 ? v : E.add(E.mul(e, int(P[d])), v);
      });
      return e;
    };
    const unravel = (j: Expr) =>
      P.map((_, d) => {
        const stride = sizeOf(P.slice(d + 1));
        const e = stride === 1 ? j : E.floordiv(j, int(stride));
        return d === 0 ? e : E.floormod(e, int(P[d]));
      });
    return scatterCombine(
      'scatter_nd',
      x,
      upd,
      str(a, 'reduction', 'none'),
      out.shape,
      () => P.map((d) => reduceAxis(d, 'rs')),
      (idx, rv) =>
        E.all([...Array(k).keys()].map((m) => E.eq(normIndex(E.load(ind, [...rv, int(m)]), x.shape[m]), idx[m]))),
      (idx, rv) => [...rv, ...idx.slice(k)],
      lin,
      unravel,
    );
  },
});

// tensor_scatter(past [B, ..., max, ...], update [B, ..., seq, ...], write_indices? [B]) -> past with update's
// positions written from write_indices[b] along `axis` (circular: modulo max): a KV-cache update. Each output
// element reads update where its position along the axis is one of the written ones, past elsewhere.
defineOp({
  name: 'tensor_scatter',
  pattern: OpPattern.Injective,
  inferType: ([past, upd, wi], a) => {
    const ps = staticDims(past, 'tensor_scatter'),
      us = staticDims(upd, 'tensor_scatter update');
    const axis = normAxis(num(a, 'axis', -2), ps.length);
    if (axis === 0 || us.length !== ps.length || us.some((d, i) => (i === axis ? d > ps[i] : d !== ps[i])))
      shapeError(`tensor_scatter: update [${us}] does not fit the cache [${ps}] along axis ${axis}`);
    if (wi && (wi.shape.length !== 1 || wi.shape[0] !== ps[0]))
      shapeError(`tensor_scatter: write_indices [${wi.shape}] should be [${ps[0]}]`);
    if (upd.dtype !== past.dtype) shapeError('tensor_scatter: update dtype differs from the cache');
    return tensorType(ps, past.dtype);
  },
  compute: ([past, upd, wi], a, out) => {
    const axis = normAxis(num(a, 'axis', -2), past.shape.length);
    const max = past.shape[axis],
      seq = upd.shape[axis];
    const circular = str(a, 'mode', 'linear') === 'circular';
    return compute('tensor_scatter', out.shape, (idx) => {
      const start = wi ? E.cast('int32', E.load(wi, [idx[0]])) : int(0);
      let j = E.sub(idx[axis], start);
      if (circular) j = E.floormod(j, int(max));
      const written = E.and(E.ge(j, int(0)), E.lt(j, int(seq)));
      const ui = [...idx];
      ui[axis] = E.min(E.max(j, int(0)), int(seq - 1));
      return E.select(written, E.load(upd, ui), E.load(past, idx));
    });
  },
});
