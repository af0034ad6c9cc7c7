// ONNX shape and data-movement operators -> Kiln graph operators. Shape-like inputs (Reshape's shape, Slice's
// starts/ends, Tile's repeats, ...) go through c.constValue and become attributes.
import { ONNX_DTYPE } from '../../../runtime/dtype.js';
import { KilnError } from '../../../runtime/errors.js';
import { type Tensor, tensor } from '../../../runtime/tensor.js';
import type { GExpr } from '../../../relay-ir/expr.js';
import type { Dim } from '../../../relay-ir/types.js';
import {
  dimAdd,
  dimExactDiv,
  dimFloorDiv,
  dimMax,
  dimProduct,
  dimProvedLE,
  dimSub,
  declaredCountedSymbol,
} from '../../../relay-ir/sym-dim.js';
import { staticDim, staticDims } from '../../../tensor-expr/ops/common.js';
import { type ConvertCtx, constNumbers, converter, countedSize } from '../converter.js';
import { elementValue } from '../../../runtime/half.js';

const nums = (t: Tensor): number[] => Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
const constInts = (c: ConvertCtx, e: GExpr, what: string): number[] => constNumbers(c, e, `${c.opType} ${what}`);
const rankOf = (c: ConvertCtx, e: GExpr) => c.type(e).shape.length;

// ---- Reshape ----

function reshape(c: ConvertCtx, shape: Dim[]): GExpr {
  const x = c.input(0);
  const allowzero = c.int('allowzero', 0);
  const inT = c.type(x);
  const out = shape.map((d, i) => (d === 0 && !allowzero ? inT.shape[i] : d));
  if (out.some((d) => d === undefined))
    throw new KilnError('E_SHAPE', `Reshape: 0 in shape [${shape}] copies a dim the input [${inT.shape}] lacks`);
  const neg = out.filter((d) => d === -1).length;
  if (neg > 1) throw new KilnError('E_SHAPE', `Reshape: more than one -1 in [${shape}]`);
  if (!neg) return c.call('reshape', [x], { shape: out });
  // the -1 is what the other dims leave of the input's elements (an exact division, symbolic or not)
  const known = dimProduct(out.filter((d) => d !== -1));
  const rest = known === 0 ? 0 : dimExactDiv(dimProduct(inT.shape), known);
  if (rest === undefined)
    throw new KilnError('E_SHAPE', `Reshape: cannot reshape [${inT.shape}] to [${shape}]`, {
      hint: 'the -1 must take a whole number of elements',
    });
  return c.call('reshape', [x], { shape: out.map((d) => (d === -1 ? rest : d)) });
}
converter('Reshape', 5, (c) => reshape(c, c.dims(c.input(1), 'Reshape shape')));
converter('Reshape', 1, (c) => reshape(c, c.ints('shape')));

converter('Flatten', 1, (c) => c.call('flatten', [c.input(0)], { axis: c.int('axis', 1) }));

converter('Transpose', 1, (c) => {
  const p = c.attr('perm') ? c.ints('perm') : null;
  return c.call('transpose', [c.input(0)], p?.length ? { perm: p } : {});
});

// ---- Squeeze / Unsqueeze ----

converter('Squeeze', 1, (c) => {
  const axes = c.attr('axes') ? c.ints('axes') : null;
  return c.call('squeeze', [c.input(0)], axes ? { axes } : {});
});
converter('Squeeze', 13, (c) => {
  const a = c.optInput(1);
  return c.call('squeeze', [c.input(0)], a ? { axes: constInts(c, a, 'axes') } : {});
});
converter('Unsqueeze', 1, (c) => c.call('unsqueeze', [c.input(0)], { axes: c.ints('axes') }));
converter('Unsqueeze', 13, (c) => c.call('unsqueeze', [c.input(0)], { axes: constInts(c, c.input(1), 'axes') }));

// ---- Concat / Split ----

function concat(c: ConvertCtx, axis: number): GExpr {
  const xs: GExpr[] = [];
  for (let i = 0; i < c.numInputs; i++) {
    const x = c.optInput(i);
    if (x) xs.push(x);
  }
  if (xs.length === 1) return c.call('identity', xs);
  return c.call('concat', xs, { axis });
}
converter('Concat', 1, (c) => concat(c, c.int('axis', 1)));
converter('Concat', 4, (c) => concat(c, c.int('axis')));

function split(c: ConvertCtx, sizes: number[] | undefined): GExpr[] {
  const x = c.input(0);
  const t = c.type(x),
    r = t.shape.length;
  let axis = c.int('axis', 0);
  if (axis < -r || axis >= r) throw new KilnError('E_SHAPE', `Split: axis ${axis} out of range for rank ${r}`);
  if (axis < 0) axis += r;
  const d = t.shape[axis];
  if (typeof d !== 'number') throw new KilnError('E_DYNAMIC', `Split: dim ${axis} must be known at compile time`);
  if (sizes?.some((v) => !Number.isSafeInteger(v) || v < 0))
    throw new KilnError('E_MODEL_INVALID', `Split: sizes [${sizes}] must be whole numbers >= 0`);
  if (!sizes) {
    const n = c.attr('num_outputs') ? c.int('num_outputs') : c.numOutputs;
    if (!Number.isSafeInteger(n) || n < 1)
      throw new KilnError('E_MODEL_INVALID', `Split: num_outputs ${n} must be a whole number >= 1`);
    if (c.attr('num_outputs')) {
      const chunk = Math.ceil(d / n);
      sizes = [...Array(n).keys()].map((i) => Math.max(0, Math.min(chunk, d - i * chunk)));
    } else {
      if (d % n) throw new KilnError('E_SHAPE', `Split: dim ${d} does not split into ${n} equal parts`);
      sizes = new Array(n).fill(d / n);
    }
  }
  if (sizes.reduce((a, b) => a + b, 0) !== d)
    throw new KilnError('E_SHAPE', `Split: sizes [${sizes}] do not add up to ${d}`);
  const outs: GExpr[] = [];
  let off = 0;
  for (const s of sizes) {
    outs.push(c.call('slice', [x], { starts: [off], ends: [off + s], axes: [axis], steps: [1] }));
    off += s;
  }
  return outs;
}
converter('Split', 1, (c) => {
  const s = c.optInput(1);
  return split(c, s ? constInts(c, s, 'split') : c.attr('split') ? c.ints('split') : undefined);
});
converter('Split', 2, (c) => split(c, c.attr('split') ? c.ints('split') : undefined));
converter('Split', 13, (c) => {
  const s = c.optInput(1);
  return split(c, s ? constInts(c, s, 'split') : undefined);
});

// ---- Slice ----

function slice(
  c: ConvertCtx,
  starts: Dim[],
  ends: Dim[],
  axes: number[] | undefined,
  steps: number[] | undefined,
): GExpr {
  const x = c.input(0);
  const attrs: Record<string, Dim[]> = { starts, ends };
  if (axes) attrs.axes = axes;
  if (steps) attrs.steps = steps;
  return c.call('slice', [x], attrs);
}
converter('Slice', 1, (c) =>
  slice(c, c.ints('starts'), c.ints('ends'), c.attr('axes') ? c.ints('axes') : undefined, undefined),
);
converter('Slice', 10, (c) => {
  const opt = (i: number, what: string) => {
    const e = c.optInput(i);
    return e ? constInts(c, e, what) : undefined;
  };
  const starts = c.knownDims(c.input(1)),
    ends = c.knownDims(c.input(2));
  if (starts && ends) return slice(c, starts, ends, opt(3, 'axes'), opt(4, 'steps'));
  // bounds known only at run time: each listed axis' size is counted while the model runs
  const x = c.input(0);
  const n = staticDim(c.type(c.input(1)).shape[0], 'Slice starts');
  const attrs: Record<string, number[]> = {};
  const axes = opt(3, 'axes'),
    steps = opt(4, 'steps');
  if (axes) attrs.axes = axes;
  if (steps) attrs.steps = steps;
  if (steps?.includes(0)) throw new KilnError('E_MODEL_INVALID', 'Slice: step 0');
  const shape = c.type(x).shape;
  const sizes = Array.from({ length: n }, (_, i) =>
    countedSize(
      c,
      'slice',
      shape[((axes?.[i] ?? i) + shape.length) % shape.length],
      c.call('slice_count', [x, c.input(1), c.input(2)], { ...attrs, index: i }),
    ),
  );
  return c.call('slice_dynamic', [x, c.input(1), c.input(2), ...sizes.map((s) => s.count)], {
    ...attrs,
    counts: sizes.map((s) => s.symbol),
  });
});

// ---- Gather family ----

converter('Gather', 1, (c) => {
  const x = c.input(0),
    ind = c.input(1),
    axis = c.int('axis', 0);
  // constant indices out of range would read outside the tensor: ONNX calls that an error
  const shape = c.type(x).shape,
    r = shape.length,
    d = shape[axis < 0 ? axis + r : axis];
  if (ind.kind === 'const' && typeof d === 'number' && axis >= -r && axis < r) {
    const bad = nums(ind.value).find((i) => i < -d || i >= d);
    if (bad !== undefined)
      throw new KilnError(
        'E_MODEL_INVALID',
        `Gather: index ${bad} out of range for axis ${axis} of size ${d} (input [${shape}])`,
        { hint: `indices must lie in [${-d}, ${d - 1}]` },
      );
  }
  return c.call('gather', [x, ind], { axis });
});
converter('GatherElements', 11, (c) => c.call('gather_elements', [c.input(0), c.input(1)], { axis: c.int('axis', 0) }));
converter('GatherND', 11, (c) => c.call('gather_nd', [c.input(0), c.input(1)], { batch_dims: c.int('batch_dims', 0) }));

// ---- Expand / Tile ----

converter('Expand', 8, (c) => c.call('expand', [c.input(0)], { shape: c.dims(c.input(1), 'Expand shape') }));
converter('Tile', 6, (c) => c.call('tile', [c.input(0)], { repeats: constInts(c, c.input(1), 'repeats') }));

// ---- Shape / Size ----

converter('Shape', 1, (c) => c.call('shape', [c.input(0)]));
converter('Shape', 15, (c) => {
  const attrs: Record<string, number> = { start: c.int('start', 0) };
  if (c.attr('end')) attrs.end = c.int('end');
  return c.call('shape', [c.input(0)], attrs);
});
converter('Size', 1, (c) => c.call('size', [c.input(0)]));

// ---- Constants ----

function constantFromAttrs(c: ConvertCtx): GExpr {
  const v = c.attr('value');
  if (v) {
    if (v.type !== 'tensor') throw new KilnError('E_MODEL_INVALID', 'Constant: value must be a tensor');
    return c.constant(v.value);
  }
  if (c.attr('value_float')) return c.constant(tensor('float32', [], [c.float('value_float')]));
  if (c.attr('value_floats')) {
    const f = c.floats('value_floats');
    return c.constant(tensor('float32', [f.length], f));
  }
  if (c.attr('value_int')) return c.constant(tensor('int64', [], [c.int('value_int')]));
  if (c.attr('value_ints')) {
    const f = c.ints('value_ints');
    return c.constant(tensor('int64', [f.length], f));
  }
  if (c.attr('value_string') || c.attr('value_strings')) c.unsupported('string constants');
  if (c.attr('sparse_value')) c.unsupported('sparse constants');
  throw new KilnError('E_MODEL_INVALID', 'Constant has no value attribute');
}
converter('Constant', 1, constantFromAttrs);

converter('ConstantOfShape', 9, (c) => {
  const shape = c.dims(c.input(0), 'ConstantOfShape shape');
  const v = c.attr('value');
  const fill = v && v.type === 'tensor' ? v.value : tensor('float32', [1], [0]);
  return c.call('expand', [c.constant({ ...fill, shape: [] })], { shape });
});

/** Most elements a folded Range may have (its values are stored in the artifact). */
const RANGE_MAX = 1 << 26;
converter('Range', 11, (c) => {
  const start = c.knownValue(c.input(0)),
    delta = c.knownValue(c.input(2));
  const limitDim = c.knownDims(c.input(1))?.[0];
  if (!start || !delta || limitDim === undefined) return countedRange(c);
  if (typeof limitDim === 'string') return symbolicRange(c, start, delta, limitDim);
  // (a limit from shape arithmetic may be a known size without folding to a constant: a Shape of [batch, 128])
  const limit = c.knownValue(c.input(1));
  const [s, d] = [start, delta].map((t) => Number(elementValue(t.dtype, t.data, 0)));
  const l = limit ? Number(elementValue(limit.dtype, limit.data, 0)) : limitDim;
  if (![s, l, d].every(Number.isFinite))
    throw new KilnError('E_MODEL_INVALID', `Range: start ${s}, limit ${l} and delta ${d} must be finite`);
  if (d === 0)
    throw new KilnError('E_MODEL_INVALID', `Range: delta is 0 (start ${s}, limit ${l}): the range would never end`, {
      hint: 'give a non-zero delta',
    });
  const n = Math.max(Math.ceil((l - s) / d), 0);
  if (n > RANGE_MAX) {
    throw new KilnError(
      'E_SHAPE',
      `Range: start ${s}, limit ${l}, delta ${d} make ${n} elements, more than Kiln builds into a model (${RANGE_MAX})`,
      { hint: 'check the Range inputs' },
    );
  }
  const vals: number[] = [];
  for (let i = 0; i < n; i++) vals.push(s + i * d);
  return c.constant(tensor(start.dtype, [n], vals));
});

/**
 * A Range whose start, limit or delta are data: a counted size (converter.ts countedSize), its bound declared by the
 * user (range_K). The count, ceil((limit - start) / delta) in float64 as ORT computes it, is clamped to
 * [0, bound + 1] before it becomes an integer (NaN from a zero delta counts as too many): a count above the bound
 * makes the run fail with E_INPUT rather than truncate the range.
 */
function countedRange(c: ConvertCtx): GExpr {
  const { symbol, declared } = declaredCountedSymbol('range', 'Range');
  const [start, limit, delta] = [0, 1, 2].map((i) => c.input(i));
  const dtype = c.type(start).dtype;
  if (
    [limit, delta].some((e) => c.type(e).dtype !== dtype) ||
    [start, limit, delta].some((e) => c.type(e).shape.length)
  )
    throw new KilnError('E_MODEL_INVALID', 'Range: start, limit and delta must be scalars of one type');
  const f64 = (e: GExpr) => c.call('cast', [e], { to: 'float64' });
  const scalar = (v: number) => c.constant(tensor('float64', [], [v]));
  const steps = c.call('ceil', [c.call('div', [c.call('sub', [f64(limit), f64(start)]), f64(delta)])]);
  const over = scalar(declared[1] + 1);
  const count = c.call(
    'cast',
    [c.call('where', [c.call('isnan', [steps]), over, c.call('clip', [steps, scalar(0), over])])],
    {
      to: 'int64',
    },
  );
  const n = c.call('value_dim', [count], { symbol, max: declared[1] + 1, declared });
  return c.call('range', [start, delta, n], { count: [symbol] });
}

/** A Range whose limit depends on symbolic dims (`arange(sequence)`): its length is a symbolic dim. */
function symbolicRange(c: ConvertCtx, start: Tensor, delta: Tensor, limit: Dim): GExpr {
  const [s, d] = [start, delta].map((t) => Number(elementValue(t.dtype, t.data, 0)));
  if (!(Number.isInteger(s) && Number.isInteger(d) && d > 0))
    throw new KilnError('E_DYNAMIC', `Range: limit ${limit} is symbolic, with start ${s} and delta ${d}`, {
      hint: 'a Range of symbolic length needs an integer start and a positive integer delta; or fix the dims with --dim',
    });
  const count = dimMax(0, dimFloorDiv(dimAdd(dimSub(limit, s), d - 1), d));
  return c.call('range', [c.input(0), c.input(2)], { count: [count] });
}

// ---- OneHot / Trilu / EyeLike ----

converter('OneHot', 9, (c) => {
  const depth = Number(c.constValue(c.input(1), 'OneHot depth').data[0]);
  return c.call('one_hot', [c.input(0), c.input(2)], { axis: c.int('axis', -1), depth: Math.trunc(depth) });
});

converter('Trilu', 14, (c) => {
  const k = c.optInput(1);
  return c.call('trilu', [c.input(0)], { upper: c.int('upper', 1), k: k ? constInts(c, k, 'k')[0] : 0 });
});

converter('EyeLike', 9, (c) => {
  const attrs: Record<string, number | string> = { k: c.int('k', 0) };
  if (c.attr('dtype')) {
    const dt = ONNX_DTYPE[c.int('dtype')];
    if (!dt) throw new KilnError('E_UNSUPPORTED', `EyeLike dtype ${c.int('dtype')} is not supported`);
    attrs.dtype = dt;
  }
  return c.call('eye_like', [c.input(0)], attrs);
});

// ---- Scatter family ----

converter('ScatterElements', 11, (c) =>
  c.call('scatter_elements', [c.input(0), c.input(1), c.input(2)], {
    axis: c.int('axis', 0),
    reduction: c.string('reduction', 'none'),
  }),
);
converter('Scatter', 9, (c) =>
  c.call('scatter_elements', [c.input(0), c.input(1), c.input(2)], { axis: c.int('axis', 0), reduction: 'none' }),
);
converter('ScatterND', 11, (c) =>
  c.call('scatter_nd', [c.input(0), c.input(1), c.input(2)], { reduction: c.string('reduction', 'none') }),
);

// ---- Compress / NonZero: sizes that depend on values ----
// A value known at compile time folds here; otherwise the output's size is counted while the model runs
// (tensor-expr/ops/counted.ts), laid out at its upper bound.

/** NonZero of a run-time tensor: int64 [rank, count], the count a run-time size. */
export function nonzeroCall(c: ConvertCtx, x: GExpr): GExpr {
  let t = c.type(x);
  if (t.shape.length === 0) {
    x = c.call('reshape', [x], { shape: [1] });
    t = c.type(x);
  }
  const blocks = c.call('nonzero_block_counts', [x]);
  const { symbol, count } = countedSize(c, 'nonzero', dimProduct(t.shape), blocks);
  return c.call('nonzero', [x, blocks, count], { count: [symbol] });
}

converter('Compress', 9, (c) => {
  let x = c.input(0);
  const axisAttr = c.attr('axis');
  let axis = 0;
  if (axisAttr) {
    const r = rankOf(c, x);
    axis = c.int('axis');
    if (axis < 0) axis += r;
  } else {
    x = c.call('reshape', [x], { shape: [dimProduct(c.type(x).shape)] });
  }
  const d = c.type(x).shape[axis];
  // (a symbolic axis: the condition's entries past its run-time size do not count, so the size is counted)
  const known = typeof d === 'number' ? c.knownValue(c.input(1)) : undefined;
  if (known) {
    const cond = Array.from(known.data as ArrayLike<number | bigint>, Number);
    const idx: number[] = [];
    cond.slice(0, staticDim(d, 'Compress input')).forEach((v, i) => {
      if (v) idx.push(i);
    });
    return c.call('gather', [x, c.constant(tensor('int64', [idx.length], idx))], { axis });
  }
  // (a condition longer than the axis: ONNX Runtime reads only its first d entries)
  let cond = c.input(1);
  const len = c.type(cond).shape[0];
  if (!dimProvedLE(len, d)) cond = c.call('slice', [cond], { starts: [0], ends: [d], axes: [0], steps: [1] });
  const hits = nonzeroCall(c, cond);
  const count = c.type(hits).shape[1];
  return c.call('gather', [x, c.call('reshape', [hits], { shape: [count] })], { axis });
});

converter('NonZero', 9, (c) => {
  const x = c.knownValue(c.input(0));
  if (!x) return nonzeroCall(c, c.input(0));
  const shape = x.shape,
    r = shape.length;
  const hits: number[][] = [];
  const vals = nums(x);
  vals.forEach((v, lin) => {
    if (!v) return;
    const ix: number[] = new Array(r);
    let rem = lin;
    for (let d = r - 1; d >= 0; d--) {
      ix[d] = rem % shape[d];
      rem = Math.floor(rem / shape[d]);
    }
    hits.push(ix);
  });
  const out: number[] = [];
  for (let d = 0; d < r; d++) for (const h of hits) out.push(h[d]);
  return c.constant(tensor('int64', [r, hits.length], out));
});

// Unique: Y (the distinct values or slices), indices (first occurrences), inverse_indices, counts
converter('Unique', 11, (c) => {
  const x = c.input(0);
  const shape = c.type(x).shape;
  const given = c.attr('axis') !== undefined;
  const axis = given ? (c.int('axis') + shape.length) % shape.length : 0;
  const n = given ? shape[axis] : dimProduct(shape);
  const [outer, inner] = given ? [dimProduct(shape.slice(0, axis)), dimProduct(shape.slice(axis + 1))] : [1, 1];
  const slices = c.call('unique_slices', [c.call('reshape', [x], { shape: [outer, n, inner] })], {
    sorted: c.int('sorted', 1),
  });
  const row = (r: number) => c.call('slice', [slices], { starts: [r], ends: [r + 1], axes: [0], steps: [1] });
  const { symbol, count } = countedSize(c, 'unique', n, row(0));
  const index = (what: string) => c.call('unique_index', [slices, count], { count: [symbol], what });
  const first = index('first');
  const values = c.call('gather', [given ? x : c.call('reshape', [x], { shape: [n] }), first], { axis });
  const inverse = c.call('cast', [c.call('reshape', [row(1)], { shape: [n] })], { to: 'int64' });
  return [values, first, inverse, index('count')];
});

converter('ReverseSequence', 10, (c) =>
  c.call('reverse_sequence', [c.input(0), c.input(1)], {
    batch_axis: c.int('batch_axis', 1),
    time_axis: c.int('time_axis', 0),
  }),
);

/** TensorScatter (opset 24): a KV-cache update, the cache with the update written at each batch's write index. */
converter('TensorScatter', 24, (c) => {
  const mode = c.string('mode', 'linear');
  if (mode !== 'linear' && mode !== 'circular') c.unsupported(`mode '${mode}'`);
  const wi = c.optInput(2);
  return c.call('tensor_scatter', wi ? [c.input(0), c.input(1), wi] : [c.input(0), c.input(1)], {
    axis: c.int('axis', -2),
    mode,
  });
});

/**
 * ai.onnx.ml ArrayFeatureExtractor: the last axis gathered at the (flattened) indices; a vector input gives one row,
 * as ONNX Runtime does.
 */
converter(
  'ArrayFeatureExtractor',
  1,
  (c) => {
    const x = c.input(0),
      ind = c.input(1);
    const xs = staticDims(c.type(x), 'ArrayFeatureExtractor X'),
      count = staticDims(c.type(ind), 'ArrayFeatureExtractor indices').reduce((a, b) => a * b, 1);
    const picked = c.call('gather', [x, c.call('reshape', [ind], { shape: [count] })], { axis: -1 });
    return c.call('reshape', [picked], { shape: xs.length === 1 ? [1, count] : [...xs.slice(0, -1), count] });
  },
  'ai.onnx.ml',
);
