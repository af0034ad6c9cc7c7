// ATen shape and layout operators (view, reshape, flatten, permute, cat, ...) -> Kiln's injective operators.
// Views and copies are the same thing in a graph of values: clone, contiguous, alias and detach are identities.
import type { GExpr } from '../../../relay-ir/expr.js';
import { sizeOf, tensor } from '../../../runtime/tensor.js';
import { type AtenCtx, aten } from '../converter.js';

const norm = (d: number, rank: number) => (d < 0 ? d + rank : d);

function staticShape(c: AtenCtx, x: GExpr): number[] {
  const s = c.type(x).shape;
  if (s.some((d) => typeof d !== 'number')) c.unsupported('symbolic dims');
  return s as number[];
}

/** A target shape with at most one -1, resolved against the input's element count. */
function reshape(c: AtenCtx, x: GExpr, shape: number[]): GExpr {
  const n = sizeOf(staticShape(c, x));
  const known = shape.filter((d) => d !== -1);
  if (shape.length - known.length > 1) c.unsupported(`more than one -1 in the shape [${shape}]`);
  const out = shape.map((d) => (d === -1 ? n / Math.max(1, sizeOf(known)) : d));
  return c.call('reshape', [x], { shape: out });
}

aten(['view', '_unsafe_view', 'reshape'], (c) => {
  const x = c.tensor('self');
  if (c.overload === 'dtype') c.unsupported('view as another dtype');
  return reshape(c, x, c.ints(c.has('size') ? 'size' : 'shape'));
});

aten('flatten', (c) => {
  const x = c.tensor('self');
  const s = staticShape(c, x);
  if (s.length === 0) return reshape(c, x, [1]);
  const start = norm(c.int('start_dim', 0), s.length),
    end = norm(c.int('end_dim', -1), s.length);
  return reshape(c, x, [...s.slice(0, start), sizeOf(s.slice(start, end + 1)), ...s.slice(end + 1)]);
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
  const s = staticShape(c, x);
  const size = c.ints('size');
  // -1 keeps the input's dim; new leading dims come first
  const out = size.map((d, i) => (d === -1 ? s[i - (size.length - s.length)] : d));
  return c.call('expand', [x], { shape: out });
});

// ---- indexing and splitting ---------------------------------------------------------------------------------------

const index = (c: AtenCtx, i: number) => c.constant(tensor('int64', [], [i]));

aten('embedding', (c) => c.call('gather', [c.tensor('weight'), c.tensor('indices')], { axis: 0 }));
aten('index_select', (c) => {
  const x = c.tensor('self');
  return c.call('gather', [x, c.tensor('index')], { axis: norm(c.int('dim'), c.type(x).shape.length) });
});

/** x[..., i, ...] along `dim`: the dim goes away (gather with a 0-D index). */
aten('select', (c) => {
  const x = c.tensor('self');
  const s = staticShape(c, x);
  const dim = norm(c.int('dim'), s.length);
  const i = c.int('index');
  if (i < -s[dim] || i >= s[dim]) c.unsupported(`index ${i} out of range for dim ${dim} of size ${s[dim]}`);
  return c.call('gather', [x, index(c, i < 0 ? i + s[dim] : i)], { axis: dim });
});

/** x[start:end:step] along `dim` (start/end None: the whole dim; out of range: clamped, as in Python). */
aten('slice', (c) => {
  const x = c.tensor('self');
  const s = staticShape(c, x);
  const dim = norm(c.int('dim', 0), s.length);
  const step = c.int('step', 1);
  if (step <= 0) c.unsupported(`step ${step} (PyTorch slices take positive steps)`);
  const start = c.has('start') ? c.int('start') : 0,
    end = c.has('end') ? Math.min(c.int('end'), s[dim]) : s[dim];
  return c.call('slice', [x], { starts: [start], ends: [end], axes: [dim], steps: [step] });
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
  const s = staticShape(c, x);
  const dim = norm(c.int('dim', 0), s.length);
  // split_with_sizes(split_sizes), split.sizes(split_size: int[]), split.Tensor(split_size: int)
  const sizes = c.has('split_sizes')
    ? c.ints('split_sizes')
    : c.overload === 'sizes'
      ? c.ints('split_size')
      : chunked(s[dim], c.int('split_size'));
  if (sizes.reduce((a, b) => a + b, 0) !== s[dim]) c.unsupported(`split sizes [${sizes}] of a dim of size ${s[dim]}`);
  return splitAlong(c, x, dim, sizes);
});

aten('chunk', (c) => {
  const x = c.tensor('self');
  const s = staticShape(c, x);
  const dim = norm(c.int('dim', 0), s.length);
  return splitAlong(c, x, dim, chunked(s[dim], Math.ceil(s[dim] / c.int('chunks'))));
});

aten('unbind', (c) => {
  const x = c.tensor('self');
  const s = staticShape(c, x);
  const dim = norm(c.int('dim', 0), s.length);
  return Array.from({ length: s[dim] }, (_, i) => c.call('gather', [x, index(c, i)], { axis: dim }));
});
