// ONNX NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss -> Kiln graph operators, composed as the operators'
// function bodies compose them: the target's entry picked along the class axis (ignored targets read class 0 and
// count as 0), optionally weighted per class, then reduced. Mean with weights (or with ignore_index) divides by
// the sum of the weights of the non-ignored targets, so a batch whose targets are all ignored gives 0/0 = NaN,
// as ONNX Runtime does. Later opsets (NLL 13 and 22, SCE 13) only widen the element types.
import { isFloat } from '../../../runtime/dtype.js';
import { tensor } from '../../../runtime/tensor.js';
import type { GExpr } from '../../../relay-ir/expr.js';
import { type ConvertCtx, converter } from '../converter.js';

const REDUCTIONS = ['none', 'sum', 'mean'];

/** The loss from log-probabilities `logp` [N, C, d1, ...] and class indices `target` [N, d1, ...]. */
function nllLoss(c: ConvertCtx, logp: GExpr, op: string): GExpr {
  const target = c.input(1),
    weight = c.optInput(2);
  const dtype = c.type(logp).dtype;
  if (!isFloat(dtype)) c.unsupported(`${op} of type ${dtype}`);
  const rank = c.type(logp).shape.length;
  if (rank < 2) c.unsupported(`${op} input of rank ${rank} (it needs [N, C, ...])`);
  if (c.type(target).shape.length !== rank - 1) {
    c.unsupported(`${op} target of rank ${c.type(target).shape.length} for an input of rank ${rank}`);
  }
  const reduction = c.string('reduction', 'mean');
  if (!REDUCTIONS.includes(reduction)) c.unsupported(`${op} reduction '${reduction}'`);
  const scalar = (x: number) => c.constant(tensor(dtype, [], [x]));
  const tdtype = c.type(target).dtype;

  // ignored targets may lie outside [0, C): they gather class 0 and are zeroed after
  let ignored: GExpr | undefined;
  let safeTarget = target;
  if (c.attr('ignore_index')) {
    ignored = c.call('equal', [target, c.constant(tensor(tdtype, [], [c.int('ignore_index')]))]);
    safeTarget = c.call('where', [ignored, c.constant(tensor(tdtype, [], [0])), target]);
  }
  const picked = c.call('gather_elements', [logp, c.call('unsqueeze', [safeTarget], { axes: [1] })], { axis: 1 });
  let loss = c.call('neg', [c.call('squeeze', [picked], { axes: [1] })]);
  if (ignored) loss = c.call('where', [ignored, scalar(0), loss]);

  // per-element weights: the target class's weight, 0 where ignored
  let weights: GExpr | undefined;
  if (weight) {
    weights = c.call('gather', [weight, safeTarget], { axis: 0 });
    if (ignored) weights = c.call('where', [ignored, scalar(0), weights]);
    loss = c.call('mul', [loss, weights]);
  } else if (ignored) {
    weights = c.call('where', [ignored, scalar(0), scalar(1)]);
  }

  if (reduction === 'none') return loss;
  const all = Array.from({ length: rank - 1 }, (_, i) => i);
  const total = c.call('reduce_sum', [loss], { axes: all, keepdims: 0 });
  if (reduction === 'sum') return total;
  if (!weights) return c.call('reduce_mean', [loss], { axes: all, keepdims: 0 });
  return c.call('div', [total, c.call('reduce_sum', [weights], { axes: all, keepdims: 0 })]);
}

converter('NegativeLogLikelihoodLoss', 12, (c) => nllLoss(c, c.input(0), 'NegativeLogLikelihoodLoss'));

converter('SoftmaxCrossEntropyLoss', 12, (c) => {
  const x = c.input(0);
  const dtype = c.type(x).dtype;
  if (!isFloat(dtype)) c.unsupported(`SoftmaxCrossEntropyLoss of type ${dtype}`);
  const logProb = c.call('log_softmax', [x], { axis: 1, legacy: 0 });
  const loss = nllLoss(c, logProb, 'SoftmaxCrossEntropyLoss');
  return c.numOutputs > 1 ? [loss, logProb] : loss;
});
