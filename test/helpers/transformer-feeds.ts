// Inputs for the transformer fixtures of scripts/gen_models.py with dynamic axes, at any size.
import type { Tensor } from '../../src/index.js';
import { randomF32 } from '../../src/frontend/onnx/model-builder.js';
import { int64 } from './shape-chain-model.js';

/** Token ids in the fixtures' vocabulary of 1000. */
export const tokens = (batch: number, sequence: number): Tensor =>
  int64(
    [batch, sequence],
    Array.from({ length: batch * sequence }, (_, i) => 1 + ((i * 37) % 999)),
  );

/** bert_dynamic's inputs: the last token of every row after the first is padding (the mask is read at run time). */
export const bertFeeds = (batch: number, sequence: number): Record<string, Tensor> => ({
  input_ids: tokens(batch, sequence),
  attention_mask: int64(
    [batch, sequence],
    Array.from({ length: batch * sequence }, (_, i) => (i >= sequence && i % sequence === sequence - 1 ? 0 : 1)),
  ),
});

/** gpt2_past's inputs: `sequence` new tokens after `past` cached positions of its two layers. */
export function gpt2PastFeeds(batch: number, past: number, sequence: number): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {
    input_ids: tokens(batch, sequence),
    attention_mask: int64([batch, past + sequence], Array(batch * (past + sequence)).fill(1)),
  };
  for (const layer of [0, 1])
    for (const kind of ['key', 'value'])
      feeds[`past_${kind}_${layer}`] = randomF32([batch, 4, past, 32], 10 * layer + past + kind.length);
  return feeds;
}
