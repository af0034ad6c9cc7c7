// Operators whose output size is counted from the data while the model runs (NonZero, Compress, TopK with k from a
// tensor, Unique, Slice with run-time bounds): the output's type names a counted symbol (relay-ir/sym-dim.ts
// countedSymbol) and is laid out at its upper bound; a `value_dim` call computes the count into the program's
// symbols region (WebGPU: copied into its symbols value), where every later kernel reads it as a run-time size and
// the runtime reads it for the outputs' shapes (docs/dynamic-shapes.md).
import { OpPattern } from '../../relay-ir/op.js';
import { type Dim, type TensorType, tensorType } from '../../relay-ir/types.js';
import { dimAdd, dimFloorDiv, dimProduct } from '../../relay-ir/sym-dim.js';
import * as E from '../expr.js';
import { type Expr, constant, int } from '../expr.js';
import { type Tensor, at, compute, reduceAxis } from '../tensor.js';
import { defineOp } from '../op-def.js';
import { dims, num, shapeError } from './common.js';
import { normIndex } from './transform.js';

const symbolOf = (a: Readonly<Record<string, unknown>>): string => {
  const s = a.symbol;
  if (typeof s !== 'string' || !s) shapeError('a counted size needs its symbol (attribute symbol)');
  return s;
};

/**
 * value_dim(n) {symbol, max}: the sum of the integer tensor n's elements (one element: its value), clamped to
 * [0, max], as int32: the run-time value of `symbol`. Clamping keeps every kernel that trusts the bound in bounds.
 */
defineOp({
  name: 'value_dim',
  pattern: OpPattern.Opaque,
  runTimeOnly: true,
  inferType: ([n], a) => {
    symbolOf(a);
    if (n.dtype.startsWith('float') || n.dtype === 'bool')
      shapeError(`value_dim: a size is an integer, not ${n.dtype}`);
    return tensorType([], 'int32');
  },
  dimsFromType: (_, a) => [symbolOf(a)],
  compute: ([n], a) =>
    compute('value_dim', [], () => {
      const r = n.shape.map((d) => reduceAxis(d, 'n'));
      const v = E.cast('int32', r.length ? E.sum(E.cast('int64', at(n, ...r.map((x) => x.v))), r) : at(n));
      return E.min(E.max(v, int(0)), int(num(a, 'max')));
    }),
});

/** Elements per block of NonZero's two-level count (a block's prefix is a short reduction). */
const BLOCK = 64;

/** The indices of x's dims of its row-major flat index `f` (f < the element count). */
function unravel(shape: readonly number[], f: Expr): Expr[] {
  const out: Expr[] = [];
  let stride = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    out.unshift(d === 0 ? E.floordiv(f, stride) : E.floormod(E.floordiv(f, stride), shape[d]));
    stride *= shape[d];
  }
  return out;
}

/** Whether x's flat element `f` (any index; those past the end count as zero) is nonzero, as int32 0/1. */
function isNonzero(x: Tensor, f: Expr): Expr {
  const n = x.shape.reduce((p, d) => p * d, 1);
  // (the index wraps into range so the load stays inside x; the mask drops what is past the end)
  const v = at(x, ...unravel(x.shape, E.floormod(f, Math.max(n, 1))));
  const nz = x.dtype === 'bool' ? E.ne(E.cast('int32', v), int(0)) : E.ne(v, constant(0, x.dtype));
  return E.select(E.and(E.lt(f, n), nz), int(1), int(0));
}

/** Blocks of x's elements: ceil(n / BLOCK). */
const blocksOf = (x: TensorType): Dim => dimFloorDiv(dimAdd(dimProduct(x.shape), BLOCK - 1), BLOCK);

/** nonzero_block_counts(x): int32 [ceil(n / 64)], the nonzeros among each 64 consecutive elements of x (row-major). */
defineOp({
  name: 'nonzero_block_counts',
  pattern: OpPattern.Opaque,
  inferType: ([x]) => tensorType([blocksOf(x)], 'int32'),
  compute: ([x], _, out) =>
    compute('nonzero_blocks', out.shape, ([b]) => {
      const i = reduceAxis(BLOCK, 'i');
      return E.sum(isNonzero(x, E.add(E.mul(b, BLOCK), i.v)), [i]);
    }),
});

/**
 * nonzero(x, blockCounts, count) {count: [symbol]}: int64 [rank, symbol], the indices of x's nonzero elements in row-major
 * order (ONNX NonZero). The p-th nonzero is found in two steps, each a short count: its block (the blocks whose
 * running count ends at or before p), then its place in the block.
 */
defineOp({
  name: 'nonzero',
  pattern: OpPattern.Opaque,
  inferType: ([x, blocks, count], a) => {
    if (blocks.shape.length !== 1 || count.shape.length !== 0)
      shapeError('nonzero: takes x, its block counts and its count');
    return tensorType([x.shape.length, dims(a, 'count')[0]], 'int64');
  },
  compute: ([x, blocks], _, out) => {
    const m = blocks.shape[0];
    // running count before each block, and inside each block up to and including each element
    const before = compute('nonzero_before', [m], ([b]) => {
      const c = reduceAxis(m, 'c');
      return E.sum(E.select(E.lt(c.v, b), at(blocks, c.v), int(0)), [c]);
    });
    const inBlock = compute('nonzero_in_block', [m, BLOCK], ([b, i]) => {
      const j = reduceAxis(BLOCK, 'j');
      return E.sum(E.select(E.le(j.v, i), isNonzero(x, E.add(E.mul(b, BLOCK), j.v)), int(0)), [j]);
    });
    const count = out.shape[1];
    const blockOf = compute('nonzero_block', [count], ([p]) => {
      const c = reduceAxis(m, 'c');
      return E.sum(E.select(E.le(E.add(at(before, c.v), at(blocks, c.v)), p), int(1), int(0)), [c]);
    });
    const flat = compute('nonzero_flat', [count], ([p]) => {
      const block = normIndex(at(blockOf, p), m);
      const j = reduceAxis(BLOCK, 'j');
      const inside = E.sum(E.select(E.le(E.add(at(before, block), at(inBlock, block, j.v)), p), int(1), int(0)), [j]);
      return E.add(E.mul(block, BLOCK), inside);
    });
    return compute('nonzero', out.shape, ([d, p]) => {
      const idx = unravel(x.shape, at(flat, p));
      let v: Expr = idx[idx.length - 1];
      for (let k = idx.length - 2; k >= 0; k--) v = E.select(E.eq(d, k), idx[k], v);
      return E.cast('int64', v);
    });
  },
});

/**
 * unique_slices(x [A, N, S]) {sorted}: int32 [2, N] for the N slices x[:, i, :] (ONNX Unique along an axis; a
 * flattened tensor is [1, n, 1]): row 0 is 1 where slice i is the first of its value, row 1 its place among the
 * distinct slices (its index in Unique's Y): in ascending lexicographic order (sorted) or in order of first
 * occurrence. Slices compare element by element in row-major order; each pair costs one pass over a slice.
 */
defineOp({
  name: 'unique_slices',
  pattern: OpPattern.Opaque,
  inferType: ([x]) => {
    if (x.shape.length !== 3) shapeError('unique_slices: takes x as [outer, axis, inner]');
    return tensorType([2, x.shape[1]], 'int32');
  },
  compute: ([x], a) => {
    const [outer, n, inner] = x.shape;
    const size = outer * inner;
    const sorted = num(a, 'sorted', 1) !== 0;
    // where slices i and j first differ (a flat position in the slice), or `size` where they are equal
    const differ = compute('unique_differ', [n, n], ([i, j]) => {
      const o = reduceAxis(outer, 'o'),
        s = reduceAxis(inner, 's');
      const ne = E.ne(at(x, o.v, i, s.v), at(x, o.v, j, s.v));
      return E.rmin(E.select(ne, E.add(E.mul(o.v, inner), s.v), int(size)), [o, s]);
    });
    const firstOf = compute('unique_first_of', [n], ([i]) => {
      const j = reduceAxis(n, 'j');
      return E.rmin(E.select(E.eq(at(differ, j.v, i), int(size)), j.v, int(n)), [j]);
    });
    const isFirst = (i: Expr) => E.eq(at(firstOf, i), i);
    // slice j before slice i: lexicographically smaller, or (unsorted) first seen earlier
    const before = (j: Expr, i: Expr): Expr => {
      if (!sorted) return E.lt(j, at(firstOf, i));
      const d = at(differ, j, i);
      // (where they are equal, d = size: the load reads the last element, the comparison is not taken)
      const p = normIndex(d, size);
      const pos = (k: Expr) => at(x, E.floordiv(p, inner), k, E.floormod(p, inner));
      return E.and(E.lt(d, int(size)), E.lt(pos(j), pos(i)));
    };
    return compute('unique_slices', [2, n], ([row, i]) => {
      const j = reduceAxis(n, 'j');
      const place = E.sum(E.select(E.and(isFirst(j.v), before(j.v, i)), int(1), int(0)), [j]);
      return E.select(E.eq(row, int(0)), E.select(isFirst(i), int(1), int(0)), place);
    });
  },
});

/**
 * unique_index(slices [2, N], count) {count: [symbol], what}: int64 [symbol] per distinct slice p, from
 * unique_slices: 'first' the index of its first occurrence (Unique's indices), 'count' how many slices have its
 * value (Unique's counts).
 */
defineOp({
  name: 'unique_index',
  pattern: OpPattern.Opaque,
  inferType: ([slices], a) => {
    if (slices.shape.length !== 2 || slices.shape[0] !== 2) shapeError('unique_index: takes unique_slices [2, n]');
    return tensorType([dims(a, 'count')[0]], 'int64');
  },
  compute: ([slices], a, out) => {
    const n = slices.shape[1];
    const first = a.what === 'first';
    return compute(`unique_${first ? 'first' : 'count'}`, out.shape, ([p]) => {
      const i = reduceAxis(n, 'i');
      const mine = E.eq(at(slices, int(1), i.v), p);
      return E.cast(
        'int64',
        first ? E.rmin(E.select(mine, i.v, int(n)), [i]) : E.sum(E.select(mine, int(1), int(0)), [i]),
      );
    });
  },
});

/**
 * ONNX Slice along one axis of size d from run-time bounds (int64 loads): the first index and the count, as
 * ONNX Runtime clamps them (negative bounds count from the end; a forward slice stays in [0, d], a backward one in
 * [-1, d - 1]). Only d itself appears as a constant (d - 1 is written min(v + 1, d) - 1): a symbolic d is a dim.
 */
function sliceBounds(start: Expr, end: Expr, d: number, step: number): { first: Expr; count: Expr } {
  const k = (v: number) => constant(v, 'int64');
  const fromEnd = (v: Expr) => E.select(E.lt(v, k(0)), E.add(v, k(d)), v);
  const s = fromEnd(start),
    e = fromEnd(end);
  if (step > 0) {
    const first = E.min(E.max(s, k(0)), k(d));
    const last = E.min(E.max(e, k(0)), k(d));
    return { first, count: E.max(E.floordiv(E.add(E.sub(last, first), k(step - 1)), k(step)), k(0)) };
  }
  const first = E.sub(E.min(E.add(E.max(s, k(0)), k(1)), k(d)), k(1));
  const last = E.sub(E.min(E.add(E.max(e, k(-1)), k(1)), k(d)), k(1));
  return { first, count: E.max(E.floordiv(E.add(E.sub(first, last), k(-step - 1)), k(-step)), k(0)) };
}

const sliceAxes = (rank: number, a: Readonly<Record<string, unknown>>, n: number): number[] =>
  (a.axes === undefined || a.axes === null ? [...Array(n).keys()] : (a.axes as number[])).map(
    (x) => (Number(x) + rank) % rank,
  );
const sliceSteps = (a: Readonly<Record<string, unknown>>, n: number): number[] =>
  a.steps === undefined || a.steps === null ? new Array(n).fill(1) : (a.steps as number[]).map(Number);

/**
 * slice_count(x, starts, ends) {index, axes?, steps?}: int32 [], how many elements Slice keeps along the
 * index-th listed axis (x is read for its shape only).
 */
defineOp({
  name: 'slice_count',
  pattern: OpPattern.Opaque,
  inferType: () => tensorType([], 'int32'),
  compute: ([x, starts, ends], a) =>
    compute('slice_count', [], () => {
      const i = num(a, 'index');
      const n = starts.shape[0];
      const axis = sliceAxes(x.shape.length, a, n)[i];
      const { count } = sliceBounds(at(starts, int(i)), at(ends, int(i)), x.shape[axis], sliceSteps(a, n)[i]);
      return E.cast('int32', count);
    }),
});

/**
 * slice_dynamic(x, starts, ends, counts...) {counts: [symbol per listed axis], axes?, steps?}: ONNX Slice with
 * starts and ends known only at run time (axes and steps fixed); each listed axis' size is a counted size.
 */
defineOp({
  name: 'slice_dynamic',
  pattern: OpPattern.Injective,
  inferType: ([x, starts], a) => {
    const n = starts.shape[0];
    if (typeof n !== 'number') shapeError('Slice: the number of starts must be known');
    const axes = sliceAxes(x.shape.length, a, n);
    const counts = dims(a, 'counts');
    if (counts.length !== n || new Set(axes).size !== n) shapeError('Slice: one count per listed axis, each once');
    return tensorType(
      x.shape.map((d, i) => (axes.includes(i) ? counts[axes.indexOf(i)] : d)),
      x.dtype,
    );
  },
  compute: ([x, starts, ends], a, out) => {
    const n = starts.shape[0];
    const axes = sliceAxes(x.shape.length, a, n),
      steps = sliceSteps(a, n);
    return compute('slice_dynamic', out.shape, (idx) =>
      at(
        x,
        ...idx.map((v, d) => {
          const k = axes.indexOf(d);
          if (k < 0) return v;
          const { first } = sliceBounds(at(starts, int(k)), at(ends, int(k)), x.shape[d], steps[k]);
          return E.add(E.cast('int32', first), E.mul(v, int(steps[k])));
        }),
      ),
    );
  },
});
