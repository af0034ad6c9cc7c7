// ONNX reductions, arg reductions, softmax family, CumSum/CumProd and TopK -> Kiln graph operators.
import type { GExpr } from '../../../relay-ir/expr.js';
import type { Dim } from '../../../relay-ir/types.js';
import { type ConvertCtx, constNumbers, converter, countedSize } from '../converter.js';

const REDUCE: Record<string, string> = {
  ReduceSum: 'reduce_sum',
  ReduceMean: 'reduce_mean',
  ReduceMax: 'reduce_max',
  ReduceMin: 'reduce_min',
  ReduceProd: 'reduce_prod',
  ReduceL1: 'reduce_l1',
  ReduceL2: 'reduce_l2',
  ReduceLogSum: 'reduce_log_sum',
  ReduceLogSumExp: 'reduce_log_sum_exp',
  ReduceSumSquare: 'reduce_sum_square',
};

function reduce(c: ConvertCtx, op: string, axes: number[] | undefined, noop: boolean): GExpr {
  const x = c.input(0);
  const rank = c.type(x).shape.length;
  if (!axes || axes.length === 0) {
    if (noop) return c.call('identity', [x]);
    axes = Array.from({ length: rank }, (_, i) => i);
  }
  return c.call(op, [x], { axes, keepdims: c.int('keepdims', 1) });
}

for (const [onnx, op] of Object.entries(REDUCE)) {
  // axes as an attribute
  converter(onnx, 1, (c) => reduce(c, op, c.attr('axes') ? c.ints('axes') : undefined, false));
  // axes as an optional input (ReduceSum from 13, the others from 18)
  converter(onnx, onnx === 'ReduceSum' ? 13 : 18, (c) => {
    const ax = c.optInput(1);
    return reduce(c, op, ax ? constNumbers(c, ax, `${onnx} axes`) : undefined, c.int('noop_with_empty_axes', 0) !== 0);
  });
}

for (const [onnx, op] of [
  ['ArgMax', 'argmax'],
  ['ArgMin', 'argmin'],
]) {
  converter(onnx, 1, (c) =>
    c.call(op, [c.input(0)], {
      axis: c.int('axis', 0),
      keepdims: c.int('keepdims', 1),
      select_last_index: c.int('select_last_index', 0),
    }),
  );
}

for (const [onnx, op] of [
  ['Softmax', 'softmax'],
  ['LogSoftmax', 'log_softmax'],
  ['Hardmax', 'hardmax'],
]) {
  // before opset 13 the input is coerced to 2-D at `axis`: the op runs over all dims from axis on
  converter(onnx, 1, (c) => c.call(op, [c.input(0)], { axis: c.int('axis', 1), legacy: 1 }));
  converter(onnx, 13, (c) => c.call(op, [c.input(0)], { axis: c.int('axis', -1), legacy: 0 }));
}

for (const [onnx, op, since] of [
  ['CumSum', 'cumsum', 11],
  ['CumProd', 'cumprod', 26],
] as const) {
  converter(onnx, since, (c) => {
    const [axis] = constNumbers(c, c.input(1), `${onnx} axis`);
    return c.call(op, [c.input(0)], { axis, exclusive: c.int('exclusive', 0), reverse: c.int('reverse', 0) });
  });
}

/** TopK with k known, or k read from a tensor while the model runs (`k` its value_dim, a counted size). */
function topk(c: ConvertCtx, k: number | [Dim], kValue?: GExpr): GExpr[] {
  const attrs = { k, axis: c.int('axis', -1), largest: c.int('largest', 1), sorted: c.int('sorted', 1) };
  const indices = c.call('topk_indices', kValue ? [c.input(0), kValue] : [c.input(0)], attrs);
  return [c.call('topk_gather', [c.input(0), indices], { axis: attrs.axis }), indices];
}
converter('TopK', 1, (c) => topk(c, c.int('k')));
converter('TopK', 10, (c) => {
  const known = c.knownValue(c.input(1));
  if (known) return topk(c, Number(known.data[0]));
  // k from a tensor: at most the axis' size (a larger k is clamped to it)
  const x = c.type(c.input(0));
  const axisSize = x.shape[(c.int('axis', -1) + x.shape.length) % x.shape.length] ?? 0;
  const { symbol, count } = countedSize(c, 'topk_k', axisSize, c.input(1));
  return topk(c, [symbol], count);
});
