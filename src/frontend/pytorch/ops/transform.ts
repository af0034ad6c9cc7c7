// ATen shape and layout operators (view, reshape, flatten, permute, cat, ...) -> Kiln's injective operators.
// Views and copies are the same thing in a graph of values: clone, contiguous, alias and detach are identities.
import type { GExpr } from '../../../relay-ir/expr.js';
import { dimExactDiv, dimProduct } from '../../../relay-ir/sym-dim.js';
import type { Dim } from '../../../relay-ir/types.js';
import { tensor } from '../../../runtime/tensor.js';
import { type AtenCtx, aten, staticDim, staticShape } from '../converter.js';

const norm = (d: number, rank: number) => (d < 0 ? d + rank : d);

/**
 * A target shape with at most one -1, resolved against the input's element count (with symbolic dims: by exact
 * division of the size polynomials, `batch*seq*16 / 16`).
 */
function reshape(c: AtenCtx, x: GExpr, shape: Dim[]): GExpr {
  const known = shape.filter((d) => d !== -1);
  if (shape.length - known.length > 1) c.unsupported(`more than one -1 in the shape [${shape}]`);
  if (known.length === shape.length) return c.call('reshape', [x], { shape });
  const n = dimProduct(c.type(x).shape),
    k = dimProduct(known);
  const rest =
    dimExactDiv(n, k === 0 ? 1 : k) ?? c.unsupported(`a -1 in [${shape}] for an input of [${c.type(x).shape}]`);
  return c.call('reshape', [x], { shape: shape.map((d) => (d === -1 ? rest : d)) });
}

aten(['view', '_unsafe_view', 'reshape'], (c) => {
  const x = c.tensor('self');
  if (c.overload === 'dtype') c.unsupported('view as another dtype');
  return reshape(c, x, c.dims(c.has('size') ? 'size' : 'shape'));
});

aten('flatten', (c) => {
  const x = c.tensor('self');
  const s = c.type(x).shape;
  if (s.length === 0) return reshape(c, x, [1]);
  const start = norm(c.int('start_dim', 0), s.length),
    end = norm(c.int('end_dim', -1), s.length);
  return reshape(c, x, [...s.slice(0, start), dimProduct(s.slice(start, end + 1)), ...s.slice(end + 1)]);
});

aten('permute', (c) => {
  const x = c.tensor('self');
  const r = c.type(x).shape.length;
  return c.call('transpose', [x], { perm: c.ints('dims').map((d) => norm(d, r)) });
});

aten(['transpose', 'swapaxes'], (c) => {
  const x = c.tensor('self');
  const r = c.type(x).shape.length;
  const a = norm(c.int(c.has('dim0') ? 'dim0' : 'axis0'), r),
    b = norm(c.int(c.has('dim1') ? 'dim1' : 'axis1'), r);
  const perm = Array.from({ length: r }, (_, i) => (i === a ? b : i === b ? a : i));
  return c.call('transpose', [x], { perm });
});

aten(['t', 'numpy_T'], (c) => {
  const x = c.tensor('self');
  const r = c.type(x).shape.length;
  return r < 2 ? c.call('identity', [x]) : c.call('transpose', [x], { perm: [1, 0] });
});

aten(['cat', 'concat', 'concatenate'], (c) => {
  const xs = c.tensors('tensors');
  // PyTorch skips 1-D empty tensors in cat (legacy behaviour)
  const kept = xs.filter((x) => !(c.type(x).shape.length === 1 && c.type(x).shape[0] === 0));
  const r = c.type(kept[0] ?? xs[0]).shape.length;
  const axis = norm(c.int('dim', 0), r);
  return kept.length === 1 ? c.call('identity', [kept[0]]) : c.call('concat', kept, { axis });
});

aten('unsqueeze', (c) => {
  const x = c.tensor('self');
  return c.call('unsqueeze', [x], { axes: [norm(c.int('dim'), c.type(x).shape.length + 1)] });
});

aten('squeeze', (c) => {
  const x = c.tensor('self');
  const s = c.type(x).shape;
  const dims = c.overload === 'default' ? undefined : c.overload === 'dim' ? [c.int('dim')] : c.ints('dim');
  // PyTorch leaves dims that are not 1 in place (ONNX would reject them)
  const axes = (dims ?? s.map((_, i) => i)).map((d) => norm(d, s.length)).filter((d) => s[d] === 1);
  return axes.length ? c.call('squeeze', [x], { axes }) : c.call('identity', [x]);
});

aten(['clone', 'contiguous', 'alias', 'detach', 'lift_fresh_copy'], (c) => c.call('identity', [c.tensor('self')]));

/** The run-time checks torch.export records (a tensor's dtype, a size's range): they compute nothing. */
aten(['_assert_tensor_metadata', '_assert_scalar', 'sym_constrain_range', 'sym_constrain_range_for_size'], (c) => {
  const dtype = c.has('a') ? c.optDType('dtype') : undefined;
  if (dtype && dtype !== c.type(c.tensor('a')).dtype)
    c.unsupported(`a tensor of dtype ${c.type(c.tensor('a')).dtype} where the program asserts ${dtype}`);
  return [];
});

aten(['_to_copy', 'to'], (c) => {
  const x = c.tensor('self');
  const dtype = c.optDType('dtype');
  return dtype && dtype !== c.type(x).dtype ? c.call('cast', [x], { to: dtype }) : c.call('identity', [x]);
});

aten('expand', (c) => {
  const x = c.tensor('self');
  const s = c.type(x).shape;
  const size = c.dims('size');
  // -1 keeps the input's dim; new leading dims come first
  const out = size.map((d, i) => (d === -1 ? s[i - (size.length - s.length)] : d));
  return c.call('expand', [x], { shape: out });
});

// ---- indexing and splitting ---------------------------------------------------------------------------------------

const index = (c: AtenCtx, i: number) => c.constant(tensor('int64', [], [i]));

aten('embedding', (c) => c.call('gather', [c.tensor('weight'), c.tensor('indices')], { axis: 0 }));
/** out[i][j] = self[i][index[i][j]] along `dim` (index may be smaller than self in the other dims). */
aten('gather', (c) => {
  const x = c.tensor('self');
  if (c.bool('sparse_grad', false)) c.unsupported('sparse_grad');
  return c.call('gather_elements', [x, c.tensor('index')], { axis: norm(c.int('dim'), c.type(x).shape.length) });
});
aten('index_select', (c) => {
  const x = c.tensor('self');
  return c.call('gather', [x, c.tensor('index')], { axis: norm(c.int('dim'), c.type(x).shape.length) });
});

/** x[..., i, ...] along `dim`: the dim goes away (gather with a 0-D index). */
aten('select', (c) => {
  const x = c.tensor('self');
  const s = c.type(x).shape;
  const dim = norm(c.int('dim'), s.length);
  const i = c.int('index');
  const n = s[dim];
  if (typeof n !== 'number') return c.call('gather', [x, index(c, i)], { axis: dim }); // gather wraps a negative i
  if (i < -n || i >= n) c.unsupported(`index ${i} out of range for dim ${dim} of size ${n}`);
  return c.call('gather', [x, index(c, i < 0 ? i + n : i)], { axis: dim });
});

/** x[start:end:step] along `dim` (start/end None: the whole dim; out of range: clamped, as in Python). */
aten('slice', (c) => {
  const x = c.tensor('self');
  const s = c.type(x).shape;
  const dim = norm(c.int('dim', 0), s.length);
  const step = c.int('step', 1);
  if (step <= 0) c.unsupported(`step ${step} (PyTorch slices take positive steps)`);
  const bound = (arg: string, dflt: Dim): Dim => {
    const b = c.has(arg) ? c.dim(arg) : dflt;
    if (typeof b === 'number' && !Number.isInteger(b)) c.unsupported(`a fractional ${arg} ${b}`);
    // x[a:] is recorded with end = 2**63 - 1: the whole dim
    return typeof b === 'number' && b >= Number.MAX_SAFE_INTEGER ? s[dim] : b;
  };
  const start = bound('start', 0),
    end = bound('end', s[dim]);
  return c.call('slice', [x], {
    starts: [start],
    ends: [typeof end === 'number' && typeof s[dim] === 'number' ? Math.min(end, s[dim]) : end],
    axes: [dim],
    steps: [step],
  });
});

/** Consecutive slices of `sizes` along `dim`. */
function splitAlong(c: AtenCtx, x: GExpr, dim: number, sizes: number[]): GExpr[] {
  let at = 0;
  return sizes.map((n) => {
    at += n;
    return c.call('slice', [x], { starts: [at - n], ends: [at], axes: [dim], steps: [1] });
  });
}

/** Sizes of consecutive chunks of `size` covering `total` (the last one shorter). */
const chunked = (total: number, size: number): number[] =>
  Array.from({ length: Math.ceil(total / size) }, (_, i) => Math.min(size, total - i * size));

aten(['split', 'split_with_sizes'], (c) => {
  const x = c.tensor('self');
  const dim = norm(c.int('dim', 0), c.type(x).shape.length);
  const n = staticDim(c, x, dim);
  // split_with_sizes(split_sizes), split.sizes(split_size: int[]), split.Tensor(split_size: int)
  const sizes = c.has('split_sizes')
    ? c.ints('split_sizes')
    : c.overload === 'sizes'
      ? c.ints('split_size')
      : chunked(n, c.int('split_size'));
  if (sizes.reduce((a, b) => a + b, 0) !== n) c.unsupported(`split sizes [${sizes}] of a dim of size ${n}`);
  return splitAlong(c, x, dim, sizes);
});

aten('chunk', (c) => {
  const x = c.tensor('self');
  const dim = norm(c.int('dim', 0), c.type(x).shape.length);
  const n = staticDim(c, x, dim);
  return splitAlong(c, x, dim, chunked(n, Math.ceil(n / c.int('chunks'))));
});

aten('unbind', (c) => {
  const x = c.tensor('self');
  const dim = norm(c.int('dim', 0), c.type(x).shape.length);
  return Array.from({ length: staticDim(c, x, dim) }, (_, i) => c.call('gather', [x, index(c, i)], { axis: dim }));
});

// ---- stacking, flipping, padding, repeating --------------------------------------------------------------------

aten('stack', (c) => {
  const xs = c.tensors('tensors');
  const r = c.type(xs[0]).shape.length + 1;
  const dim = norm(c.int('dim', 0), r);
  const parts = xs.map((x) => c.call('unsqueeze', [x], { axes: [dim] }));
  return parts.length === 1 ? parts[0] : c.call('concat', parts, { axis: dim });
});

/** flip: a slice with step -1 along each dim. */
aten('flip', (c) => {
  const x = c.tensor('self');
  const s = staticShape(c, x);
  const axes = c.ints('dims').map((d) => norm(d, s.length));
  return c.call('slice', [x], {
    starts: axes.map((a) => s[a] - 1),
    ends: axes.map((a) => -s[a] - 1),
    axes,
    steps: axes.map(() => -1),
  });
});

/** PyTorch pads the last dim first: [left, right, top, bottom, ...]; negative pads crop. */
function padLast(c: AtenCtx, x: GExpr, pad: number[], mode: string, value: number): GExpr {
  const r = c.type(x).shape.length;
  if (pad.length % 2 || pad.length / 2 > r) c.unsupported(`pad of length ${pad.length} for rank ${r}`);
  if (pad.some((p) => p < 0)) c.unsupported('negative pads');
  const pads = new Array<number>(2 * r).fill(0);
  for (let i = 0; i < pad.length / 2; i++) {
    pads[r - 1 - i] = pad[2 * i];
    pads[2 * r - 1 - i] = pad[2 * i + 1];
  }
  return pads.every((p) => p === 0) ? c.call('identity', [x]) : c.call('pad', [x], { pads, mode, value });
}
aten('constant_pad_nd', (c) => padLast(c, c.tensor('self'), c.ints('pad'), 'constant', c.float('value', 0)));
aten('pad', (c) => {
  const modes: Record<string, string> = {
    constant: 'constant',
    reflect: 'reflect',
    replicate: 'edge',
    circular: 'wrap',
  };
  const mode = modes[c.string('mode', 'constant')] ?? c.unsupported(`mode '${c.string('mode')}'`);
  return padLast(c, c.tensor('self'), c.ints('pad'), mode, c.optFloat('value') ?? 0);
});
for (const [op, mode] of [
  ['reflection_pad1d', 'reflect'],
  ['reflection_pad2d', 'reflect'],
  ['reflection_pad3d', 'reflect'],
  ['replication_pad1d', 'edge'],
  ['replication_pad2d', 'edge'],
  ['replication_pad3d', 'edge'],
] as const)
  aten(op, (c) => padLast(c, c.tensor('self'), c.ints('padding'), mode, 0));

/** repeat: new leading dims, then tile. */
aten('repeat', (c) => {
  let x = c.tensor('self');
  const reps = c.ints('repeats');
  const r = c.type(x).shape.length;
  if (reps.length < r) c.unsupported(`${reps.length} repeats for rank ${r}`);
  if (reps.length > r)
    x = c.call('reshape', [x], { shape: [...new Array(reps.length - r).fill(1), ...c.type(x).shape] });
  return c.call('tile', [x], { repeats: reps });
});

aten(['tril', 'triu'], (c) =>
  c.call('trilu', [c.tensor('self')], { upper: c.target.includes('triu') ? 1 : 0, k: c.int('diagonal', 0) }),
);

/** pixel_shuffle is DepthToSpace in CRD order (channel-major). */
aten('pixel_shuffle', (c) =>
  c.call('depth_to_space', [c.tensor('self')], { blocksize: c.int('upscale_factor'), mode: 'CRD' }),
);

/**
 * x[..., i, j, ...] with index tensors on adjacent dims (None elsewhere): the indexed dims merge into one, indexed
 * by the row-major flat index of the broadcast index tensors, and one gather takes the elements.
 */
aten('index', (c) => {
  const x = c.tensor('self');
  const s = c.type(x).shape;
  const list = c.optTensors('indices');
  const used = list.flatMap((t, d) => (t ? [d] : []));
  if (used.length === 0) return c.call('identity', [x]);
  if (used.some((d, i) => d !== used[0] + i)) c.unsupported('index tensors on dims that are not adjacent');
  let flat: GExpr | undefined;
  for (const d of used) {
    const n = staticDim(c, x, d);
    let idx = list[d]!;
    const dtype = c.type(idx).dtype;
    if (dtype === 'bool' || dtype === 'uint8') c.unsupported('a boolean mask as an index');
    if (dtype !== 'int64') idx = c.call('cast', [idx], { to: 'int64' });
    // negative indices count from the end
    idx = c.call('where', [c.call('less', [idx, index(c, 0)]), c.call('add', [idx, index(c, n)]), idx]);
    flat = flat ? c.call('add', [c.call('mul', [flat, index(c, n)]), idx]) : idx;
  }
  const first = used[0],
    last = used[used.length - 1];
  const merged =
    used.length === 1
      ? x
      : c.call('reshape', [x], {
          shape: [...s.slice(0, first), dimProduct(s.slice(first, last + 1)), ...s.slice(last + 1)],
        });
  return c.call('gather', [merged, flat!], { axis: first });
});
