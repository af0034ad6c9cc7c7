// Reductions (reduce_*), arg reductions, softmax family, cumulative sums/products and top-k.
// Every reduction is a top-level `reduce` compute; epilogues (mean's divide, l2's sqrt, ...) are separate
// elementwise computes that the lowering inlines into the kernel's output stage.
import { isFloat } from '../../runtime/dtype.js';
import { sizeOf } from '../../runtime/tensor.js';
import { OpPattern, type Attrs } from '../../relay-ir/op.js';
import { type Dim, type TensorType, tensorType } from '../../relay-ir/types.js';
import * as E from '../expr.js';
import { type Expr, type IterVar, type ReduceOp, constant, int } from '../expr.js';
import { type Tensor, at, compute, reduceAxis } from '../tensor.js';
import { defineOp } from '../op-def.js';
import { ints, normAxis, num, shapeError } from './common.js';
import { normIndex } from './transform.js';

const k = (x: Expr, v: number): Expr => constant(v, x.dtype);

/** Output shape of a reduction over `axes` (normalized). */
function reducedShape(shape: readonly Dim[], axes: readonly number[], keepdims: boolean): Dim[] {
  const out: Dim[] = [];
  shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keepdims) out.push(1);
  });
  return out;
}

function normAxes(axes: readonly number[], rank: number, what: string): number[] {
  const out = [...new Set(axes.map((a) => normAxis(a, rank, what)))].sort((a, b) => a - b);
  return out;
}

/**
 * A reduction compute: out[o] = op over the reduced axes of body(xi), where xi is the full input index (output
 * index for kept dims, reduction variables for reduced ones).
 */
function reduction(
  name: string,
  inShape: readonly number[],
  axes: readonly number[],
  keepdims: boolean,
  op: ReduceOp,
  body: (xi: Expr[], oi: Expr[]) => Expr,
): Tensor {
  const out = reducedShape(inShape, axes, keepdims) as number[];
  return compute(name, out, (oi) => {
    const raxes: IterVar[] = [];
    const xi: Expr[] = [];
    let p = 0;
    inShape.forEach((d, i) => {
      if (axes.includes(i)) {
        const r = reduceAxis(d, 'r');
        raxes.push(r);
        xi.push(r.v);
        if (keepdims) p++;
      } else xi.push(oi[p++]);
    });
    const b = body(xi, oi);
    return raxes.length ? E.reduce(op, b, raxes) : b;
  });
}

/** Index into a keepdims-shaped reduction result from a full input index. */
const keptIdx = (xi: readonly Expr[], axes: readonly number[]): Expr[] =>
  xi.map((e, i) => (axes.includes(i) ? int(0) : e));

/** Index into a keepdims-shaped reduction result from an output index of the same reduction. */
function keptFromOut(oi: readonly Expr[], rank: number, axes: readonly number[], keepdims: boolean): Expr[] {
  if (keepdims) return keptIdx(oi, axes);
  let p = 0;
  return Array.from({ length: rank }, (_, i) => (axes.includes(i) ? int(0) : oi[p++]));
}

const map = (name: string, t: Tensor, f: (v: Expr, idx: Expr[]) => Expr): Tensor =>
  compute(name, t.shape, (idx) => f(at(t, ...idx), idx));

// ---------------------------------------------------------------------------------------------------------------
// reduce_*: attrs axes (non-empty, any sign) and keepdims

function isFiniteE(x: Expr): Expr {
  return E.lt(E.unary('abs', x), k(x, Infinity));
}

type ReduceBuilder = (x: Tensor, axes: number[], keep: boolean) => Tensor;

const simple =
  (
    name: string,
    op: ReduceOp,
    pre: (v: Expr) => Expr = (v) => v,
    post?: (v: Expr, count: number) => Expr,
  ): ReduceBuilder =>
  (x, axes, keep) => {
    const r = reduction(name, x.shape, axes, keep, op, (xi) => pre(at(x, ...xi)));
    if (!post) return r;
    const count = sizeOf(axes.map((a) => x.shape[a]));
    return map(`${name}_post`, r, (v) => post(v, count));
  };

const REDUCE: Record<string, { build: ReduceBuilder; floatOnly?: boolean }> = {
  reduce_sum: { build: simple('reduce_sum', 'sum') },
  reduce_mean: { build: simple('reduce_mean', 'sum', undefined, (v, n) => E.div(v, k(v, n))) },
  reduce_max: { build: simple('reduce_max', 'max') },
  reduce_min: { build: simple('reduce_min', 'min') },
  reduce_prod: { build: simple('reduce_prod', 'prod') },
  reduce_l1: { build: simple('reduce_l1', 'sum', (v) => E.unary('abs', v)) },
  reduce_l2: {
    build: simple(
      'reduce_l2',
      'sum',
      (v) => E.mul(v, v),
      (v) => (isFloat(v.dtype) ? E.unary('sqrt', v) : E.cast(v.dtype, E.unary('sqrt', E.cast('float64', v)))),
    ),
  },
  reduce_sum_square: { build: simple('reduce_sum_square', 'sum', (v) => E.mul(v, v)) },
  reduce_log_sum: { build: simple('reduce_log_sum', 'sum', undefined, (v) => E.unary('log', v)), floatOnly: true },
  reduce_log_sum_exp: {
    floatOnly: true,
    build: (x, axes, keep) => {
      // m = max; out = log(sum(exp(x - m))) + m, with m replaced by 0 when not finite (all -inf, empty, inf)
      const m = reduction('rlse_max', x.shape, axes, true, 'max', (xi) => at(x, ...xi));
      const safe = map('rlse_shift', m, (v) => E.select(isFiniteE(v), v, k(v, 0)));
      const s = reduction('rlse_sum', x.shape, axes, keep, 'sum', (xi) => {
        const v = at(x, ...xi);
        return E.unary('exp', E.sub(v, at(safe, ...keptIdx(xi, axes))));
      });
      return compute('rlse', s.shape, (oi) =>
        E.add(E.unary('log', at(s, ...oi)), at(safe, ...keptFromOut(oi, x.shape.length, axes, keep))),
      );
    },
  },
};

for (const [name, def] of Object.entries(REDUCE)) {
  defineOp({
    name,
    pattern: OpPattern.CommReduce,
    inferType: ([x], a) => {
      if (def.floatOnly && !isFloat(x.dtype)) shapeError(`${name} needs a float input, got ${x.dtype}`);
      const axes = normAxes(
        ints(
          a,
          'axes',
          x.shape.map((_, i) => i),
        ),
        x.shape.length,
        `${name} axis`,
      );
      return tensorType(reducedShape(x.shape, axes, num(a, 'keepdims', 1) !== 0), x.dtype);
    },
    compute: ([x], a) =>
      def.build(
        x,
        normAxes(
          ints(
            a,
            'axes',
            x.shape.map((_, i) => i),
          ),
          x.shape.length,
          name,
        ),
        num(a, 'keepdims', 1) !== 0,
      ),
  });
}

// ---------------------------------------------------------------------------------------------------------------
// argmax / argmin: attrs axis, keepdims, select_last_index -> int64

for (const [name, op] of [
  ['argmax', 'max'],
  ['argmin', 'min'],
] as const) {
  defineOp({
    name,
    pattern: OpPattern.CommReduce,
    inferType: ([x], a) => {
      const axis = normAxis(num(a, 'axis', 0), x.shape.length);
      return tensorType(reducedShape(x.shape, [axis], num(a, 'keepdims', 1) !== 0), 'int64');
    },
    compute: ([x], a) => {
      const axis = normAxis(num(a, 'axis', 0), x.shape.length);
      const keep = num(a, 'keepdims', 1) !== 0,
        last = num(a, 'select_last_index', 0) !== 0;
      const m = reduction(`${name}_val`, x.shape, [axis], true, op, (xi) => at(x, ...xi));
      return reduction(name, x.shape, [axis], keep, last ? 'max' : 'min', (xi) => {
        const hit = E.eq(at(x, ...xi), at(m, ...keptIdx(xi, [axis])));
        return E.select(hit, E.cast('int64', xi[axis]), constant(last ? -1 : x.shape[axis], 'int64'));
      });
    },
  });
}

// ---------------------------------------------------------------------------------------------------------------
// softmax / log_softmax / hardmax over `axis`; with `legacy` (opset < 13) over all dims from axis on (the input
// coerced to 2-D). max and sum are materialized as their own reductions.

function softmaxAxes(x: { shape: readonly unknown[] }, a: Attrs, name: string): number[] {
  const r = x.shape.length;
  if (r === 0) return [];
  const axis = normAxis(num(a, 'axis', -1), r, `${name} axis`);
  if (!num(a, 'legacy', 0)) return [axis];
  return Array.from({ length: r - axis }, (_, i) => axis + i);
}

const sameType =
  (name: string, floatOnly: boolean) =>
  ([x]: readonly TensorType[], a: Attrs): TensorType => {
    if (floatOnly && !isFloat(x.dtype)) shapeError(`${name} needs a float input, got ${x.dtype}`);
    softmaxAxes(x, a, name); // the axis is in range
    return tensorType(x.shape, x.dtype);
  };

for (const name of ['softmax', 'log_softmax'] as const) {
  defineOp({
    name,
    pattern: OpPattern.CommReduce,
    inferType: sameType(name, true),
    compute: ([x], a, out) => {
      const axes = softmaxAxes(x, a, name);
      const m = reduction(`${name}_max`, x.shape, axes, true, 'max', (xi) => at(x, ...xi));
      const shifted = (xi: Expr[]) => E.sub(at(x, ...xi), at(m, ...keptIdx(xi, axes)));
      // exp(x - max) once, read by the sum and by softmax's output (the schedule keeps it materialized)
      const e = compute(`${name}_exp`, x.shape, (xi) => E.unary('exp', shifted(xi)));
      const s = reduction(`${name}_sum`, x.shape, axes, true, 'sum', (xi) => at(e, ...xi));
      return compute(name, out.shape, (idx) => {
        const sv = at(s, ...keptIdx(idx, axes));
        return name === 'softmax' ? E.div(at(e, ...idx), sv) : E.sub(shifted(idx), E.unary('log', sv));
      });
    },
  });
}

defineOp({
  name: 'hardmax',
  pattern: OpPattern.CommReduce,
  inferType: sameType('hardmax', false),
  compute: ([x], a, out) => {
    const axes = softmaxAxes(x, a, 'hardmax');
    const flat = (xi: Expr[]): Expr =>
      axes.reduce<Expr>((acc, ax) => E.add(E.mul(acc, int(x.shape[ax])), xi[ax]), int(0));
    const total = sizeOf(axes.map((ax) => x.shape[ax]));
    const m = reduction('hardmax_max', x.shape, axes, true, 'max', (xi) => at(x, ...xi));
    const first = reduction('hardmax_first', x.shape, axes, true, 'min', (xi) =>
      E.select(E.eq(at(x, ...xi), at(m, ...keptIdx(xi, axes))), flat(xi), int(total)),
    );
    return compute('hardmax', out.shape, (idx) =>
      E.select(E.eq(flat(idx), at(first, ...keptIdx(idx, axes))), constant(1, x.dtype), constant(0, x.dtype)),
    );
  },
});

// ---------------------------------------------------------------------------------------------------------------
// cumsum / cumprod: attrs axis, exclusive, reverse. out[i] = op over r of x[r] for r in the prefix (suffix) of i.

for (const [name, op] of [
  ['cumsum', 'sum'],
  ['cumprod', 'prod'],
] as const) {
  defineOp({
    name,
    pattern: OpPattern.CommReduce,
    inferType: ([x], a) => {
      normAxis(num(a, 'axis', 0), x.shape.length);
      return tensorType(x.shape, x.dtype);
    },
    compute: ([x], a, out) => {
      const axis = normAxis(num(a, 'axis', 0), x.shape.length);
      const excl = num(a, 'exclusive', 0) !== 0,
        rev = num(a, 'reverse', 0) !== 0;
      return compute(name, out.shape, (idx) => {
        const r = reduceAxis(x.shape[axis], 'c');
        const i = idx[axis];
        const inRange = rev ? (excl ? E.gt(r.v, i) : E.ge(r.v, i)) : excl ? E.lt(r.v, i) : E.le(r.v, i);
        const xi = idx.map((e, d) => (d === axis ? r.v : e));
        const v = at(x, ...xi);
        return E.reduce(op, E.select(inRange, v, k(v, op === 'sum' ? 0 : 1)), [r]);
      });
    },
  });
}

// ---------------------------------------------------------------------------------------------------------------
// top-k by rank counting: rank[j] = #{i : x[i] before x[j]} (larger first for largest=1, ties by lower index);
// indices[p] = the j with rank p (topk_indices); values[p] = x[indices[p]] (topk_gather). O(n^2) along the axis.

function topkIndices(x: Tensor, a: Attrs, K: number): Tensor {
  const axis = normAxis(num(a, 'axis', -1), x.shape.length);
  const largest = num(a, 'largest', 1) !== 0;
  const n = x.shape[axis];
  const rank = compute('topk_rank', x.shape, (idx) => {
    const r = reduceAxis(n, 't');
    const xi = idx.map((e, d) => (d === axis ? r.v : e));
    const other = at(x, ...xi),
      self = at(x, ...idx);
    const better = largest ? E.gt(other, self) : E.lt(other, self);
    const before = E.or(better, E.and(E.eq(other, self), E.lt(r.v, idx[axis])));
    return E.sum(E.select(before, int(1), int(0)), [r]);
  });
  const oshape = x.shape.map((d, i) => (i === axis ? K : d));
  const idx = compute('topk_indices', oshape, (oi) => {
    const r = reduceAxis(n, 't');
    const ri = oi.map((e, d) => (d === axis ? r.v : e));
    return E.sum(E.select(E.eq(at(rank, ...ri), oi[axis]), E.cast('int64', r.v), constant(0, 'int64')), [r]);
  });
  return idx;
}

/**
 * k: a number, or [a counted size] (TopK's k read from a tensor while the model runs; its value_dim is the second
 * input, which the compute does not read).
 */
function topkType([x]: readonly TensorType[], a: Attrs): TensorType {
  const axis = normAxis(num(a, 'axis', -1), x.shape.length);
  const K = Array.isArray(a.k) ? (a.k as readonly Dim[])[0] : num(a, 'k'),
    n = x.shape[axis];
  if (typeof n === 'number' && typeof K === 'number' && (K < 0 || K > n))
    shapeError(`topk: k=${K} out of range for axis size ${n}`);
  return tensorType(
    x.shape.map((d, i) => (i === axis ? K : d)),
    'int64',
  );
}

defineOp({
  name: 'topk_indices',
  pattern: OpPattern.Opaque,
  inferType: topkType,
  compute: ([x], a, out) => topkIndices(x, a, out.shape[normAxis(num(a, 'axis', -1), x.shape.length)]),
});

/** topk_gather(x, indices): x at the top-k indices along `axis` (the values output of TopK). */
defineOp({
  name: 'topk_gather',
  pattern: OpPattern.Injective,
  inferType: ([x, i], a) => {
    const axis = normAxis(num(a, 'axis', -1), x.shape.length);
    if (i.shape.length !== x.shape.length)
      shapeError(`topk_gather: index rank ${i.shape.length} differs from input rank ${x.shape.length}`);
    return tensorType(
      x.shape.map((d, j) => (j === axis ? i.shape[j] : d)),
      x.dtype,
    );
  },
  compute: ([x, i], a, out) => {
    const axis = normAxis(num(a, 'axis', -1), x.shape.length);
    return compute('topk_values', out.shape, (oi) =>
      at(x, ...oi.map((e, d) => (d === axis ? normIndex(at(i, ...oi), x.shape[axis]) : e))),
    );
  },
});
