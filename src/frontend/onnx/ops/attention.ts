// ONNX Attention (opset 23; 24 adds nonpad_kv_seqlen, 25 the sliding window) -> Kiln graph operators, composed as
// the operator's function body composes them: Q and K scaled by sqrt(scale) each, Q K^T, softcap, an additive bias
// (the mask, causal and window frontiers, key padding), a softmax whose fully masked rows are zero, times V. The
// bias is built from constants wherever its inputs are (so it folds), and GQA repeats each KV head in place.
// RotaryEmbedding (opset 23), the position encoding such decoders apply to Q and K, is here too. The batch and the
// sequence lengths (queries, past and present keys) may be symbolic; heads and head sizes are known.
import { KilnError } from '../../../runtime/errors.js';
import { type Tensor, sizeOf, tensor } from '../../../runtime/tensor.js';
import type { DType } from '../../../runtime/dtype.js';
import type { GExpr } from '../../../relay-ir/expr.js';
import type { Dim, TensorType } from '../../../relay-ir/types.js';
import { dimSub } from '../../../relay-ir/sym-dim.js';
import { staticDim, staticDims } from '../../../tensor-expr/ops/common.js';
import { type ConvertCtx, converter } from '../converter.js';

const filled = (dtype: DType, shape: number[], f: (i: number) => number): Tensor =>
  tensor(
    dtype,
    shape,
    Array.from({ length: sizeOf(shape) }, (_, i) => f(i)),
  );

/** [B, heads, S, H]: the batch and the sequence as they are (symbolic or not), heads and head size known. */
function headDims(t: TensorType, what: string): [Dim, number, Dim, number] {
  const [b, h, s, d] = t.shape;
  return [b, staticDim(h, what), s, staticDim(d, what)];
}

/** [B, S, heads * H] -> [B, heads, S, H]. */
function splitHeads(c: ConvertCtx, x: GExpr, heads: number, what: string): GExpr {
  const [b, s, h] = c.type(x).shape;
  const hidden = staticDim(h, `Attention ${what}`);
  if (!heads || hidden % heads !== 0) c.unsupported(`${what} hidden size ${hidden} with ${heads} heads`);
  return c.call('transpose', [c.call('reshape', [x], { shape: [b, s, heads, hidden / heads] })], {
    perm: [0, 2, 1, 3],
  });
}

/** Grouped-query attention: each KV head of `x` [B, kvHeads, S, D] serves qHeads / kvHeads query heads, repeated in place. */
function repeatHeads(c: ConvertCtx, x: GExpr, qHeads: number, kvHeads: number): GExpr {
  if (qHeads === kvHeads) return x;
  if (qHeads % kvHeads !== 0) c.unsupported(`${qHeads} query heads over ${kvHeads} KV heads`);
  const reps = qHeads / kvHeads;
  const [b, h, s, d] = headDims(c.type(x), `${c.opType} K/V`);
  const wide = c.call('expand', [c.call('unsqueeze', [x], { axes: [2] })], { shape: [b, h, reps, s, d] });
  return c.call('reshape', [wide], { shape: [b, h * reps, s, d] });
}

function attention(c: ConvertCtx): GExpr[] {
  let q = c.input(0),
    k = c.input(1),
    v = c.input(2);
  const mask = c.optInput(3),
    pastKey = c.optInput(4),
    pastValue = c.optInput(5),
    nonpad = c.opset >= 24 ? c.optInput(6) : undefined;
  if (!pastKey !== !pastValue) c.unsupported('past_key without past_value (or the reverse)');
  if (nonpad && pastKey) c.unsupported('nonpad_kv_seqlen together with past_key/past_value');
  const dtype = c.type(q).dtype;
  if (dtype !== 'float32' && dtype !== 'float64') c.unsupported(`Q of type ${dtype}`);
  const rank3 = c.type(q).shape.length === 3;
  if (rank3) {
    q = splitHeads(c, q, c.int('q_num_heads', 0), 'Q');
    k = splitHeads(c, k, c.int('kv_num_heads', 0), 'K');
    v = splitHeads(c, v, c.int('kv_num_heads', 0), 'V');
  } else if (c.type(q).shape.length !== 4) c.unsupported(`Q of rank ${c.type(q).shape.length}`);
  const [batch, qHeads, L, headSize] = headDims(c.type(q), 'Attention Q');
  const kvHeads = headDims(c.type(k), 'Attention K')[1];
  const scalar = (x: number) => c.constant(tensor(dtype, [], [x]));

  // the cache: past keys and values first
  const presentKey = pastKey ? c.call('concat', [pastKey, k], { axis: 2 }) : k;
  const presentValue = pastValue ? c.call('concat', [pastValue, v], { axis: 2 }) : v;
  const S = headDims(c.type(presentKey), 'Attention present_key')[2];
  const past = pastKey ? headDims(c.type(pastKey), 'Attention past_key')[2] : 0;

  // the additive bias: 0 where a query may attend a key, -inf where not
  const inf = scalar(-Infinity),
    zero = scalar(0);
  const k0 = (x: number) => c.constant(tensor('int64', [], [x]));
  let bias: GExpr | undefined;
  if (mask) {
    let m = mask;
    const mdims = c.type(m).shape;
    const missing = dimSub(S, mdims[mdims.length - 1]);
    if (typeof missing !== 'number')
      throw new KilnError(
        'E_DYNAMIC',
        `Attention: attn_mask has ${mdims[mdims.length - 1]} keys for ${S}, a difference that is not a known size`,
        { hint: `give the mask the keys' length (${S}), or fix the dims with --dim` },
      );
    const isBool = c.type(m).dtype === 'bool';
    // a mask shorter than the keys leaves the rest masked
    if (missing > 0) {
      const pads = new Array<number>(2 * mdims.length).fill(0);
      pads[2 * mdims.length - 1] = missing;
      m = c.call('pad', [m], { pads, mode: 'constant', value: isBool ? 0 : -Infinity });
    }
    bias = isBool ? c.call('where', [m, zero, inf]) : m;
  }
  // the causal and window frontiers: query i attends key j by their distance i + offset - j, where offset counts
  // the keys before this block of queries (per batch with nonpad_kv_seqlen)
  const isCausal = c.int('is_causal', 0) !== 0;
  const left = c.opset >= 25 ? c.int('left_window_size', -1) : -1,
    right = c.opset >= 25 ? c.int('right_window_size', -1) : -1;
  const allowed = (d: number) => (!isCausal || d >= 0) && (left < 0 || d <= left) && (right < 0 || -d <= right);
  if (isCausal || left >= 0 || right >= 0) {
    let frontier: GExpr;
    if (nonpad || typeof L !== 'number' || typeof S !== 'number' || typeof past !== 'number') {
      // d = i - j + offset, with nonpad_kv_seqlen offset = nonpad[b] - L (a run-time input); with symbolic lengths
      // offset = S - L, the past, read from the shapes at run time
      let d: GExpr;
      if (nonpad) {
        const [nL, nS] = [staticDim(L, 'Attention Q'), staticDim(S, 'Attention K')];
        const offset = c.call('reshape', [c.call('sub', [nonpad, c.constant(tensor('int64', [], [nL]))])], {
          shape: [batch, 1, 1, 1],
        });
        d = c.call('add', [c.constant(filled('int64', [nL, nS], (n) => Math.floor(n / nS) - (n % nS))), offset]);
      } else {
        const positions = (n: Dim, shape: Dim[]) =>
          c.call('reshape', [c.call('range', [k0(0), k0(1)], { count: [n] })], { shape });
        const lengthOf = (x: GExpr) => c.call('shape', [x], { start: 2, end: 3 });
        const offset = c.call('sub', [lengthOf(presentKey), lengthOf(q)]);
        d = c.call('sub', [c.call('add', [positions(L, [L, 1]), offset]), positions(S, [1, S])]);
      }
      const conds: GExpr[] = [];
      if (isCausal) conds.push(c.call('greater_equal', [d, k0(0)]));
      if (left >= 0) conds.push(c.call('less_equal', [d, k0(left)]));
      if (right >= 0) conds.push(c.call('greater_equal', [d, k0(-right)]));
      const ok = conds.reduce((a, b) => c.call('and', [a, b]));
      frontier = c.call('where', [ok, zero, inf]);
    } else {
      frontier = c.constant(
        filled(dtype, [L, S], (n) => (allowed(Math.floor(n / S) + past - (n % S)) ? 0 : -Infinity)),
      );
    }
    bias = bias ? c.call('add', [bias, frontier]) : frontier;
  }
  if (nonpad) {
    const keys = c.constant(filled('int64', [1, 1, 1, staticDim(S, 'Attention K')], (j) => j));
    const lengths = c.call('reshape', [nonpad], { shape: [batch, 1, 1, 1] });
    const padding = c.call('where', [c.call('less', [keys, lengths]), zero, inf]);
    bias = bias ? c.call('add', [bias, padding]) : padding;
  }

  const keys = repeatHeads(c, presentKey, qHeads, kvHeads),
    values = repeatHeads(c, presentValue, qHeads, kvHeads);

  const scale = c.attr('scale') ? c.float('scale') : 1 / Math.sqrt(headSize);
  const root = scalar(Math.sqrt(scale));
  let qk = c.call('matmul', [
    c.call('mul', [q, root]),
    c.call('transpose', [c.call('mul', [keys, root])], { perm: [0, 1, 3, 2] }),
  ]);
  const softcap = c.float('softcap', 0);
  if (softcap > 0) qk = c.call('mul', [c.call('tanh', [c.call('div', [qk, scalar(softcap)])]), scalar(softcap)]);
  const logits = bias ? c.call('add', [qk, bias]) : qk;
  let probs = c.call('softmax', [logits], { axis: -1, legacy: 0 });
  if (bias) {
    // a row whose bias masks every key has no key to attend: its probabilities are 0 (not NaN)
    const rowMasked = c.call('equal', [c.call('reduce_max', [bias], { axes: [-1], keepdims: 1 }), inf]);
    probs = c.call('where', [rowMasked, zero, probs]);
  }
  const mode = c.int('qk_matmul_output_mode', 0);
  if (mode < 0 || mode > 3) c.unsupported(`qk_matmul_output_mode ${mode}`);
  const qkOut = mode === 3 ? probs : mode === 2 ? logits : qk;

  let y = c.call('matmul', [probs, values]);
  if (rank3) {
    const vHead = headDims(c.type(y), 'Attention output')[3];
    y = c.call('reshape', [c.call('transpose', [y], { perm: [0, 2, 1, 3] })], { shape: [batch, L, qHeads * vHead] });
  }
  return [y, presentKey, presentValue, qkOut];
}

converter('Attention', 23, attention);

// ---- FlexAttention (ai.onnx.preview 1) ---------------------------------------------------------------------------

/** The one output of a score_mod / prob_mod graph applied to `x`, or `x` without one. */
function modified(c: ConvertCtx, name: string, x: GExpr): GExpr {
  const outs = c.subgraph(name, [x]);
  if (!outs) return x;
  if (outs.length !== 1)
    throw new KilnError('E_MODEL_INVALID', `FlexAttention ${name} has ${outs.length} outputs`, {
      hint: 'the graph maps the scores (or probabilities) to one tensor of the same shape',
    });
  return outs[0];
}

/**
 * Attention whose scores and probabilities pass through graphs of the model (score_mod before the softmax,
 * prob_mod after), inlined here: Q and K scaled by sqrt(scale) each (rounded to float32, as the reference does),
 * grouped-query heads repeated, softmax in the input's type.
 */
converter(
  'FlexAttention',
  1,
  (c) => {
    const q = c.input(0),
      k = c.input(1),
      v = c.input(2);
    const dtype = c.type(q).dtype;
    if (dtype !== 'float32' && dtype !== 'float64') c.unsupported(`Q of type ${dtype}`);
    for (const [x, what] of [
      [q, 'Q'],
      [k, 'K'],
      [v, 'V'],
    ] as const)
      if (c.type(x).shape.length !== 4) c.unsupported(`${what} of rank ${c.type(x).shape.length} (it needs 4)`);
    const precision = c.int('softmax_precision', 0);
    if (precision && precision !== (dtype === 'float32' ? 1 : 11))
      c.unsupported(`softmax_precision ${precision} for inputs of type ${dtype}`);
    const [, qHeads, , E] = staticDims(c.type(q), 'FlexAttention Q');
    const kvHeads = staticDims(c.type(k), 'FlexAttention K')[1];
    const scale = c.attr('scale') ? c.float('scale') : 1 / Math.sqrt(E);
    const root = c.constant(tensor(dtype, [], [Math.fround(Math.sqrt(Math.fround(scale)))]));
    const keys = repeatHeads(c, k, qHeads, kvHeads),
      values = repeatHeads(c, v, qHeads, kvHeads);
    const scores = c.call('matmul', [
      c.call('mul', [q, root]),
      c.call('transpose', [c.call('mul', [keys, root])], { perm: [0, 1, 3, 2] }),
    ]);
    const probs = c.call('softmax', [modified(c, 'score_mod', scores)], { axis: -1, legacy: 0 });
    return c.call('matmul', [modified(c, 'prob_mod', probs), values]);
  },
  'ai.onnx.preview',
);

// ---- RotaryEmbedding (opset 23) ----------------------------------------------------------------------------------

/**
 * Rotates the first rotary_embedding_dim features of each head by the position's angle: pairs (x1, x2) are the two
 * halves, or the even and odd features when interleaved; cos/sin come from the caches, picked by position_ids when
 * given. Computed in [batch, seq, heads, head] layout.
 */
converter('RotaryEmbedding', 23, (c) => {
  const input = c.input(0);
  // (the batch and the sequence may be symbolic: [B, H, S, D] or [B, S, hidden])
  const shape = c.type(input).shape;
  let x: GExpr;
  if (shape.length === 4) x = c.call('transpose', [input], { perm: [0, 2, 1, 3] });
  else if (shape.length === 3) {
    const heads = c.int('num_heads', 0);
    const hidden = staticDim(shape[2], 'RotaryEmbedding input');
    if (!heads || hidden % heads !== 0) c.unsupported(`hidden size ${hidden} with num_heads ${heads}`);
    x = c.call('reshape', [input], { shape: [shape[0], shape[1], heads, hidden / heads] });
  } else return c.unsupported(`input of rank ${shape.length}`);
  const D = staticDim(c.type(x).shape[3], 'RotaryEmbedding input');
  const rd = c.int('rotary_embedding_dim', 0) || D;
  if (rd % 2 !== 0 || rd > D) c.unsupported(`rotary_embedding_dim ${rd} for heads of ${D}`);
  const half = rd / 2;
  const slice = (e: GExpr, start: number, end: number, step = 1) =>
    c.call('slice', [e], { starts: [start], ends: [end], axes: [3], steps: [step] });
  const positions = c.optInput(3);
  const cache = (i: number) => {
    const t = positions ? c.call('gather', [c.input(i), positions], { axis: 0 }) : c.input(i);
    const last = c.type(t).shape.at(-1);
    if (last === undefined || staticDim(last, 'RotaryEmbedding cache') !== half)
      c.unsupported(`a cache whose last dim is not rotary_embedding_dim / 2 (${half})`);
    return c.call('unsqueeze', [t], { axes: [2] });
  };
  const cos = cache(1),
    sin = cache(2);
  const interleaved = c.int('interleaved', 0) !== 0;
  const x1 = interleaved ? slice(x, 0, rd, 2) : slice(x, 0, half),
    x2 = interleaved ? slice(x, 1, rd, 2) : slice(x, half, rd);
  const real = c.call('sub', [c.call('mul', [cos, x1]), c.call('mul', [sin, x2])]);
  const imag = c.call('add', [c.call('mul', [sin, x1]), c.call('mul', [cos, x2])]);
  const [b, s, h] = c.type(x).shape;
  let rotated = interleaved
    ? c.call(
        'reshape',
        [
          c.call('concat', [c.call('unsqueeze', [real], { axes: [4] }), c.call('unsqueeze', [imag], { axes: [4] })], {
            axis: 4,
          }),
        ],
        { shape: [b, s, h, rd] },
      )
    : c.call('concat', [real, imag], { axis: 3 });
  if (rd < D) rotated = c.call('concat', [rotated, slice(x, rd, D)], { axis: 3 });
  return shape.length === 4
    ? c.call('transpose', [rotated], { perm: [0, 2, 1, 3] })
    : c.call('reshape', [rotated], { shape });
});
