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
