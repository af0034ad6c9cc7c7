// ATen reductions and softmax -> Kiln's reduce_* / softmax.
import type { GExpr } from '../../../relay-ir/expr.js';
import { sizeOf, tensor } from '../../../runtime/tensor.js';
import { type AtenCtx, aten, staticShape } from '../converter.js';

/** `self`, cast to the `dtype` argument when one is given. */
function selfAs(c: AtenCtx): GExpr {
  const x = c.tensor('self');
  const dtype = c.optDType('dtype');
  return dtype && dtype !== c.type(x).dtype ? c.call('cast', [x], { to: dtype }) : x;
}

/** The axes `dim` names (an int or a list); mean.default / sum.default, and dim=None or [], reduce every dim. */
function reducedAxes(c: AtenCtx, rank: number): number[] {
  const dims = c.optInts('dim') ?? [];
  return (dims.length ? dims : Array.from({ length: rank }, (_, i) => i)).map((d) => (d < 0 ? d + rank : d));
}

const keepdims = (c: AtenCtx) => (c.bool('keepdim', false) ? 1 : 0);

function reduce(op: string) {
  return (c: AtenCtx): GExpr => {
    const x = selfAs(c);
    const axes = reducedAxes(c, c.type(x).shape.length);
    if (axes.length === 0) return c.call('identity', [x]);
    return c.call(op, [x], { axes, keepdims: keepdims(c) });
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
  aten(ops, (c) => c.call(kiln, [selfAs(c)], { axis: c.int('dim') }));
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
    const axes = reducedAxes(c, c.type(x).shape.length);
    const r = axes.length ? c.call(kiln, [bits], { axes, keepdims: keepdims(c) }) : bits;
    return c.call('cast', [r], { to: 'bool' });
  });
}

aten('prod', reduce('reduce_prod'));
aten('logsumexp', reduce('reduce_log_sum_exp'));

/** var / std with Bessel's correction (`correction`, or `unbiased` in the older overloads). */
for (const op of ['var', 'std'] as const) {
  aten(op, (c) => {
    const x = c.tensor('self');
    const shape = staticShape(c, x);
    const axes = reducedAxes(c, shape.length);
    const n = sizeOf(axes.map((a) => shape[a]));
    const correction = c.has('correction') ? c.float('correction') : c.bool('unbiased', true) ? 1 : 0;
    const mean = c.call('reduce_mean', [x], { axes, keepdims: 1 });
    const d = c.call('sub', [x, mean]);
    const ss = c.call('reduce_sum', [c.call('mul', [d, d])], { axes, keepdims: keepdims(c) });
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
    if (!c.has('dim')) x = c.call('reshape', [x], { shape: [sizeOf(staticShape(c, x))] });
    return c.call(kiln, [x], { axis: c.has('dim') ? c.int('dim') : 0, keepdims: keepdims(c), select_last_index: 0 });
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
    return [
      c.call(reduceOp, [x], { axes: [axis < 0 ? axis + rank : axis], keepdims: keepdims(c) }),
      c.call(argOp, [x], { axis, keepdims: keepdims(c), select_last_index: 0 }),
    ];
  });
}

aten(['cumsum', 'cumprod'], (c) =>
  c.call(c.target.includes('cumsum') ? 'cumsum' : 'cumprod', [selfAs(c)], {
    axis: c.int('dim'),
    exclusive: 0,
    reverse: 0,
  }),
);
