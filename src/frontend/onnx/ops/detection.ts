// ONNX detection post-processing -> Kiln graph operators (tensor-expr/ops/detection.ts).
import { tensor } from '../../../runtime/tensor.js';
import { converter } from '../converter.js';
import { nonzeroCall } from './transform.js';

// NonMaxSuppression: selected_indices [count, 3] (batch, class, box), the count known only at run time
converter('NonMaxSuppression', 10, (c) => {
  const boxes = c.input(0),
    scores = c.input(1);
  const [, , n] = c.type(scores).shape;
  // (absent: no box per class, an IoU threshold of 0, no score threshold)
  const maxPerClass = c.optInput(2) ?? c.constant(tensor('int64', [], [0]));
  const iou = c.optInput(3) ?? c.constant(tensor('float32', [], [0]));
  const scoreThreshold = c.optInput(4);
  const order = c.call('topk_indices', [scores], { k: [n], axis: 2, largest: 1, sorted: 1 });
  const kept = c.call(
    'nms_keep',
    [boxes, scores, order, maxPerClass, iou, scoreThreshold ?? c.constant(tensor('float32', [], [0]))],
    { center_point_box: c.int('center_point_box', 0), score_threshold: scoreThreshold ? 1 : 0 },
  );
  return c.call('nms_selected', [nonzeroCall(c, kept), order]);
});
