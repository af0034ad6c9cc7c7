// ATen reductions and softmax -> Kiln's reduce_* / softmax.
import type { GExpr } from '../../../relay-ir/expr.js';
import { type AtenCtx, aten } from '../converter.js';

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
