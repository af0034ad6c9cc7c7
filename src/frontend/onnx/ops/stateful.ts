// The opset-27 operators of recurrent sequence mixers (linear-attention and state-space layers), which carry a
// state from one call to the next: LinearAttention and CausalConvWithState -> Kiln graph operators. LinearAttention
// is unrolled over the time steps (the sequence length is static after import), as the recurrent cells are: each
// step decays the state, corrects the value by what the state already recalls for the key (delta rules), writes
// the key-value outer product and reads the query. CausalConvWithState is a depthwise convolution of the input
// left-padded with the past state.
import { KilnError } from '../../../runtime/errors.js';
import { tensor } from '../../../runtime/tensor.js';
import type { GExpr } from '../../../relay-ir/expr.js';
import { staticDims } from '../../../tensor-expr/ops/common.js';
import { type ConvertCtx, converter } from '../converter.js';

const UPDATE_RULES = ['linear', 'gated', 'delta', 'gated_delta'];

/** [B, T, heads * D] -> [B, heads, T, D]. */
function splitHeads(c: ConvertCtx, x: GExpr, heads: number, what: string): GExpr {
  const shape = staticDims(c.type(x), `LinearAttention ${what}`);
  if (shape.length !== 3) c.unsupported(`${what} of rank ${shape.length} (it needs [batch, time, heads * size])`);
  const [b, t, hidden] = shape;
  if (hidden % heads !== 0)
    throw new KilnError(
      'E_MODEL_INVALID',
      `LinearAttention ${what}: last dim ${hidden} is not a multiple of ${heads}`,
      {
        hint: 'the last dimension holds the heads side by side: heads * head size',
      },
    );
  return c.call('transpose', [c.call('reshape', [x], { shape: [b, t, heads, hidden / heads] })], {
    perm: [0, 2, 1, 3],
  });
}

/** Time step `t` of a tensor with time on `axis` (kept, of size 1). */
const step = (c: ConvertCtx, x: GExpr, axis: number, t: number) =>
  c.call('slice', [x], { starts: [t], ends: [t + 1], axes: [axis], steps: [1] });

converter('LinearAttention', 27, (c) => {
  const rule = c.string('update_rule', 'gated_delta');
  if (!UPDATE_RULES.includes(rule)) c.unsupported(`update_rule '${rule}' (one of ${UPDATE_RULES.join(', ')})`);
  const gating = rule === 'gated' || rule === 'gated_delta',
    delta = rule === 'delta' || rule === 'gated_delta';
  const qHeads = c.int('q_num_heads', 0),
    kvHeads = c.int('kv_num_heads', 0);
  if (qHeads <= 0 || kvHeads <= 0 || qHeads % kvHeads !== 0)
    throw new KilnError('E_MODEL_INVALID', `LinearAttention: q_num_heads ${qHeads} over kv_num_heads ${kvHeads}`, {
      hint: 'both are required and q_num_heads must be a positive multiple of kv_num_heads',
    });
  const pastState = c.optInput(3),
    decay = c.optInput(4),
    beta = c.optInput(5);
  if (gating !== !!decay || delta !== !!beta)
    throw new KilnError(
      'E_MODEL_INVALID',
      `LinearAttention: update_rule '${rule}' ${gating ? 'needs' : 'takes no'} decay and ${delta ? 'needs' : 'takes no'} beta`,
      { hint: 'gated rules take the decay input (4), delta rules the beta input (5)' },
    );
  const dtype = c.type(c.input(0)).dtype;
  if (dtype !== 'float32' && dtype !== 'float64') c.unsupported(`query of type ${dtype}`);

  const q = splitHeads(c, c.input(0), qHeads, 'query');
  const [B, , T, dk] = staticDims(c.type(q), 'LinearAttention query');
  const group = qHeads / kvHeads;
  const scale = c.float('scale', 0) || 1 / Math.sqrt(dk);
  // [B, Hkv, group, T, dk]: query head h reads the state of KV head h / group
  const qs = c.call('reshape', [c.call('mul', [q, c.constant(tensor(dtype, [], [scale]))])], {
    shape: [B, kvHeads, group, T, dk],
  });
  // keys as columns [B, Hkv, dk, T] for the outer product, as rows [B, Hkv, T, dk] for the recall
  const kRows = splitHeads(c, c.input(1), kvHeads, 'key');
  const kCols = c.call('transpose', [kRows], { perm: [0, 1, 3, 2] });
  const v = splitHeads(c, c.input(2), kvHeads, 'value');
  const dv = staticDims(c.type(v), 'LinearAttention value')[3];
  if (staticDims(c.type(kRows), 'LinearAttention key')[3] !== dk)
    c.unsupported(`keys of head size ${staticDims(c.type(kRows), 'LinearAttention key')[3]} for queries of ${dk}`);

  // the decay factor exp(g) as columns [B, Hkv, dk or 1, T]: it scales the state's rows
  let gates: GExpr | undefined;
  if (decay) {
    const last = staticDims(c.type(decay), 'LinearAttention decay').at(-1);
    if (last !== kvHeads && last !== kvHeads * dk)
      throw new KilnError('E_MODEL_INVALID', `LinearAttention decay: last dim ${last}`, {
        hint: `it is kv_num_heads (${kvHeads}) or kv_num_heads * key head size (${kvHeads * dk})`,
      });
    gates = c.call('transpose', [splitHeads(c, c.call('exp', [decay]), kvHeads, 'decay')], { perm: [0, 1, 3, 2] });
  }
  // beta [B, Hkv or 1, T, 1]
  let betas: GExpr | undefined;
  if (beta) {
    const last = staticDims(c.type(beta), 'LinearAttention beta').at(-1) as number;
    if (last !== kvHeads && last !== 1)
      throw new KilnError('E_MODEL_INVALID', `LinearAttention beta: last dim ${last}`, {
        hint: `it is kv_num_heads (${kvHeads}) or 1`,
      });
    betas = splitHeads(c, beta, last, 'beta');
  }

  let state: GExpr | undefined = pastState;
  if (state) {
    const s = staticDims(c.type(state), 'LinearAttention past_state');
    if (s.join() !== [B, kvHeads, dk, dv].join())
      throw new KilnError('E_MODEL_INVALID', `LinearAttention past_state [${s}] should be [${[B, kvHeads, dk, dv]}]`, {
        hint: 'the state is [batch, kv_num_heads, key head size, value head size]',
      });
  }
  const outputs: GExpr[] = [];
  for (let t = 0; t < T; t++) {
    let value = step(c, v, 2, t);
    // without a past state the state starts at zero: nothing to decay or recall on the first step
    if (state && gates) state = c.call('mul', [state, step(c, gates, 3, t)]);
    if (betas) {
      if (state) value = c.call('sub', [value, c.call('matmul', [step(c, kRows, 2, t), state])]);
      value = c.call('mul', [value, step(c, betas, 2, t)]);
    }
    const write = c.call('mul', [step(c, kCols, 3, t), value]);
    state = state ? c.call('add', [state, write]) : write;
    const read = c.call('matmul', [c.call('reshape', [step(c, qs, 3, t)], { shape: [B, kvHeads, group, dk] }), state]);
    outputs.push(c.call('reshape', [read], { shape: [B, qHeads, 1, dv] }));
  }
  if (!state) return c.unsupported('a sequence of length 0');
  const all = outputs.length === 1 ? outputs[0] : c.call('concat', outputs, { axis: 2 });
  const output = c.call('reshape', [c.call('transpose', [all], { perm: [0, 2, 1, 3] })], {
    shape: [B, T, qHeads * dv],
  });
  return [output, state];
});

converter('CausalConvWithState', 27, (c) => {
  const x = c.input(0),
    w = c.input(1),
    bias = c.optInput(2),
    past = c.optInput(3);
  const activation = c.string('activation', 'none');
  if (!['none', 'silu', 'swish'].includes(activation)) c.unsupported(`activation '${activation}'`);
  const xs = staticDims(c.type(x), 'CausalConvWithState input'),
    ws = staticDims(c.type(w), 'CausalConvWithState weight');
  if (xs.length !== 3 || ws.length !== 3 || ws[0] !== xs[1] || ws[1] !== 1)
    throw new KilnError('E_MODEL_INVALID', `CausalConvWithState: input [${xs}] and weight [${ws}]`, {
      hint: 'input is [batch, channels, length] and weight [channels, 1, kernel] (one filter per channel)',
    });
  const [B, C, L] = xs,
    k = ws[2];
  let padded = x;
  if (k > 1) {
    const state = past ?? c.constant(tensor(c.type(x).dtype, [B, C, k - 1]));
    const ps = staticDims(c.type(state), 'CausalConvWithState past_state');
    if (ps.join() !== [B, C, k - 1].join())
      throw new KilnError('E_MODEL_INVALID', `CausalConvWithState past_state [${ps}] should be [${[B, C, k - 1]}]`, {
        hint: 'the state holds the last kernel - 1 inputs of each channel: [batch, channels, kernel - 1]',
      });
    padded = c.call('concat', [state, x], { axis: 2 });
  }
  const attrs = { strides: [1], pads: [0, 0], dilations: [1], group: C };
  let y = c.call('conv', bias ? [padded, w, bias] : [padded, w], attrs);
  if (activation !== 'none') y = c.call('mul', [y, c.call('sigmoid', [y])]);
  // the last k - 1 positions of the padded input carry over to the next call
  const present = c.call('slice', [padded], { starts: [L], ends: [L + k - 1], axes: [2], steps: [1] });
  return [y, present];
});
