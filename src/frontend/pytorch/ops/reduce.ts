// ATen reductions and softmax -> Kiln's reduce_* / softmax.
import type { GExpr } from '../../../relay-ir/expr.js';
import { sizeOf, tensor } from '../../../runtime/tensor.js';
import { type AtenCtx, aten, staticShape } from '../converter.js';

function reduce(op: string) {
  return (c: AtenCtx): GExpr => {
    let x = c.tensor('self');
    const rank = c.type(x).shape.length;
    const dtype = c.optDType('dtype');
    if (dtype && dtype !== c.type(x).dtype) x = c.call('cast', [x], { to: dtype });
    // mean.default / sum.default, and dim=None or [] reduce over every dim
    const dims = c.optInts('dim') ?? [];
    const axes = (dims.length ? dims : Array.from({ length: rank }, (_, i) => i)).map((d) => (d < 0 ? d + rank : d));
    if (axes.length === 0) return c.call('identity', [x]);
    return c.call(op, [x], { axes, keepdims: c.bool('keepdim', false) ? 1 : 0 });
  };
}

aten('mean', reduce('reduce_mean'));
aten('sum', reduce('reduce_sum'));
aten('amax', reduce('reduce_max'));
aten('amin', reduce('reduce_min'));

for (const [ops, kiln] of [
  [['softmax', '_softmax'], 'softmax'],
  [['log_softmax', '_log_softmax'], 'log_softmax'],
] as const) {
  aten(ops, (c) => {
    let x = c.tensor('self');
    const dtype = c.optDType('dtype');
    if (dtype && dtype !== c.type(x).dtype) x = c.call('cast', [x], { to: dtype });
    return c.call(kiln, [x], { axis: c.int('dim') });
  });
}

/** any / all: the max / min of the operand as 0-or-1 integers, back to bool. */
for (const [op, kiln] of [
  ['any', 'reduce_max'],
  ['all', 'reduce_min'],
] as const) {
  aten(op, (c) => {
    const x = c.tensor('self');
    const bits = c.call('cast', [c.type(x).dtype === 'bool' ? x : c.call('cast', [x], { to: 'bool' })], {
      to: 'int32',
    });
    const rank = c.type(x).shape.length;
    const dims = c.overload === 'dim' ? [c.int('dim')] : (c.optInts('dim') ?? []);
    const axes = (dims.length ? dims : Array.from({ length: rank }, (_, i) => i)).map((d) => (d < 0 ? d + rank : d));
    const r = axes.length ? c.call(kiln, [bits], { axes, keepdims: c.bool('keepdim', false) ? 1 : 0 }) : bits;
    return c.call('cast', [r], { to: 'bool' });
  });
}

aten('prod', (c) => {
  let x = c.tensor('self');
  const dtype = c.optDType('dtype');
  if (dtype && dtype !== c.type(x).dtype) x = c.call('cast', [x], { to: dtype });
  const rank = c.type(x).shape.length;
  const axes = c.has('dim') ? [c.int('dim')] : Array.from({ length: rank }, (_, i) => i);
  if (axes.length === 0) return c.call('identity', [x]);
  return c.call('reduce_prod', [x], { axes, keepdims: c.bool('keepdim', false) ? 1 : 0 });
});
aten('logsumexp', reduce('reduce_log_sum_exp'));

/** var / std with Bessel's correction (`correction`, or `unbiased` in the older overloads). */
for (const op of ['var', 'std'] as const) {
  aten(op, (c) => {
    const x = c.tensor('self');
    const shape = staticShape(c, x);
    const rank = shape.length;
    const dims = c.optInts('dim') ?? [];
    const axes = (dims.length ? dims : Array.from({ length: rank }, (_, i) => i)).map((d) => (d < 0 ? d + rank : d));
    const n = axes.reduce((p, a) => p * shape[a], 1);
    const correction = c.has('correction') ? c.float('correction') : c.bool('unbiased', true) ? 1 : 0;
    const keepdims = c.bool('keepdim', false) ? 1 : 0;
    const mean = c.call('reduce_mean', [x], { axes, keepdims: 1 });
    const d = c.call('sub', [x, mean]);
    const ss = c.call('reduce_sum', [c.call('mul', [d, d])], { axes, keepdims });
    const v = c.call('div', [ss, c.constant(tensor(c.type(x).dtype, [], [Math.max(0, n - correction)]))]);
    return op === 'std' ? c.call('sqrt', [v]) : v;
  });
}

for (const [ops, kiln] of [
  [['argmax'], 'argmax'],
  [['argmin'], 'argmin'],
] as const) {
  aten(ops, (c) => {
    let x = c.tensor('self');
    const keepdims = c.bool('keepdim', false) ? 1 : 0;
    if (!c.has('dim')) x = c.call('reshape', [x], { shape: [sizeOf(staticShape(c, x))] });
    return c.call(kiln, [x], { axis: c.has('dim') ? c.int('dim') : 0, keepdims, select_last_index: 0 });
  });
}

/** max.dim / min.dim: the values and their indices; max/min of everything (.default); max.other is maximum. */
for (const [op, reduceOp, argOp] of [
  ['max', 'reduce_max', 'argmax'],
  ['min', 'reduce_min', 'argmin'],
] as const) {
  aten(op, (c) => {
    const x = c.tensor('self');
    if (c.overload === 'other') return c.call(op, [x, c.tensor('other')]);
    const rank = c.type(x).shape.length;
    if (c.overload === 'default')
      return c.call(reduceOp, [x], { axes: Array.from({ length: rank }, (_, i) => i), keepdims: 0 });
    const axis = c.int('dim');
    const keepdims = c.bool('keepdim', false) ? 1 : 0;
    return [
      c.call(reduceOp, [x], { axes: [axis < 0 ? axis + rank : axis], keepdims }),
      c.call(argOp, [x], { axis, keepdims, select_last_index: 0 }),
    ];
  });
}

aten(['cumsum', 'cumprod'], (c) => {
  let x = c.tensor('self');
  const dtype = c.optDType('dtype');
  if (dtype && dtype !== c.type(x).dtype) x = c.call('cast', [x], { to: dtype });
  return c.call(c.target.includes('cumsum') ? 'cumsum' : 'cumprod', [x], {
    axis: c.int('dim'),
    exclusive: 0,
    reverse: 0,
  });
});
