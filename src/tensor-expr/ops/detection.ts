// Detection post-processing: greedy non-maximum suppression (ONNX NonMaxSuppression), as ONNX Runtime computes it.
// The converter ranks each class's boxes by score (topk_indices), nms_keep marks the boxes greedy selection keeps
// (a recurrence over the ranks: a box is kept unless a box kept before it overlaps it too much), the kept flags'
// NonZero gives (batch, class, rank) in output order and nms_selected turns ranks back into box indices.
import { OpPattern } from '../../relay-ir/op.js';
import { tensorType } from '../../relay-ir/types.js';
import * as E from '../expr.js';
import { type Expr, constant, int } from '../expr.js';
import { type Tensor, at, compute, recurrence, reduceAxis } from '../tensor.js';
import { defineOp } from '../op-def.js';
import { num, shapeError } from './common.js';
import { normIndex } from './transform.js';

/** A box's extent along one axis from its two numbers: corners (either order) or center and size. */
function span(a: Expr, b: Expr, centered: boolean): [Expr, Expr] {
  if (!centered) return [E.min(a, b), E.max(a, b)];
  const half = E.div(b, constant(2, 'float32'));
  return [E.sub(a, half), E.add(a, half)];
}

/**
 * Whether boxes i and j of batch b overlap by more than `threshold` (intersection over union), as ONNX Runtime's
 * SuppressByIOU decides: no intersection, an empty box or an empty union never suppresses.
 */
function suppresses(boxes: Tensor, b: Expr, i: Expr, j: Expr, threshold: Expr, centered: boolean): Expr {
  const c = (box: Expr, k: number) => at(boxes, b, box, int(k));
  // corners: [y1, x1, y2, x2]; centered: [x_center, y_center, width, height]
  const [xa, ya] = centered ? [0, 1] : [1, 0];
  const [wa, ha] = centered ? [2, 3] : [3, 2];
  const [x1lo, x1hi] = span(c(i, xa), c(i, wa), centered);
  const [y1lo, y1hi] = span(c(i, ya), c(i, ha), centered);
  const [x2lo, x2hi] = span(c(j, xa), c(j, wa), centered);
  const [y2lo, y2hi] = span(c(j, ya), c(j, ha), centered);
  const ix = E.sub(E.min(x1hi, x2hi), E.max(x1lo, x2lo));
  const iy = E.sub(E.min(y1hi, y2hi), E.max(y1lo, y2lo));
  const inter = E.mul(ix, iy);
  const area1 = E.mul(E.sub(x1hi, x1lo), E.sub(y1hi, y1lo));
  const area2 = E.mul(E.sub(x2hi, x2lo), E.sub(y2hi, y2lo));
  const union = E.sub(E.add(area1, area2), inter);
  const zero = constant(0, 'float32');
  const valid = E.and(
    E.and(E.gt(ix, zero), E.gt(iy, zero)),
    E.and(E.and(E.gt(area1, zero), E.gt(area2, zero)), E.gt(union, zero)),
  );
  return E.and(valid, E.gt(E.div(inter, E.select(valid, union, constant(1, 'float32'))), threshold));
}

/**
 * nms_keep(boxes [B, N, 4], scores [B, C, N], order [B, C, N], maxPerClass, iouThreshold, scoreThreshold)
 * {center_point_box, score_threshold: 0|1}: int32 [B, C, N], 1 where greedy NMS keeps the box of rank r (order: box
 * indices by descending score, ties by lower index). A box is a candidate when its score passes the threshold (if
 * one is given); candidates are taken in rank order while fewer than maxPerClass are kept, unless a kept one
 * suppresses them.
 */
defineOp({
  name: 'nms_keep',
  pattern: OpPattern.Opaque,
  inferType: ([boxes, scores, order]) => {
    if (boxes.shape.length !== 3 || scores.shape.length !== 3 || order.shape.length !== 3)
      shapeError('NonMaxSuppression: boxes are [batch, boxes, 4] and scores [batch, classes, boxes]');
    return tensorType(scores.shape, 'int32');
  },
  compute: ([boxes, scores, order, maxPerClass, iou, scoreThreshold], a, out) => {
    const centered = num(a, 'center_point_box', 0) !== 0;
    const thresholded = num(a, 'score_threshold', 0) !== 0;
    const n = out.shape[2];
    const scalar = (t: Tensor) => at(t, ...t.shape.map(() => int(0)));
    return recurrence('nms_keep', out.shape, 'int32', ([b, c, r], kept) => {
      // (box indices held inside the boxes: past a run-time box count the ranks hold stale values)
      const box = normIndex(at(order, b, c, r), boxes.shape[1]);
      const candidate = thresholded ? E.gt(at(scores, b, c, box), scalar(scoreThreshold)) : undefined;
      const j = reduceAxis(n, 'j');
      const before = E.and(E.lt(j.v, r), E.ne(at(kept, b, c, j.v), int(0)));
      const keptBefore = E.sum(E.select(before, int(1), int(0)), [j]);
      const k = reduceAxis(n, 'k');
      const other = normIndex(at(order, b, c, k.v), boxes.shape[1]);
      const hit = E.and(
        E.and(E.lt(k.v, r), E.ne(at(kept, b, c, k.v), int(0))),
        suppresses(boxes, b, box, other, scalar(iou), centered),
      );
      const suppressed = E.rmax(E.select(hit, int(1), int(0)), [k]);
      let keep = E.and(E.lt(E.cast('int64', keptBefore), scalar(maxPerClass)), E.eq(suppressed, int(0)));
      if (candidate) keep = E.and(candidate, keep);
      return E.select(keep, int(1), int(0));
    });
  },
});

/**
 * nms_selected(hits [3, S], order [B, C, N]): int64 [S, 3], each kept box as (batch, class, box index): the hits
 * are the kept flags' (batch, class, rank) in row-major order, the order that NonMaxSuppression outputs.
 */
defineOp({
  name: 'nms_selected',
  pattern: OpPattern.Injective,
  inferType: ([hits]) => {
    if (hits.shape.length !== 2 || hits.shape[0] !== 3) shapeError('nms_selected: hits are [3, count]');
    return tensorType([hits.shape[1], 3], 'int64');
  },
  compute: ([hits, order], _, out) =>
    compute('nms_selected', out.shape, ([p, k]) => {
      const h = (d: number) => normIndex(at(hits, int(d), p), order.shape[d]);
      return E.select(E.lt(k, int(2)), at(hits, k, p), at(order, h(0), h(1), h(2)));
    }),
});
