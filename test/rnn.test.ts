// LSTM, GRU and RNN beyond the ONNX node suite's cases: bidirectional peepholes, clip, sequence_lens shorter than
// the sequence (a run-time input and an initializer), initial states, layout 1, non-default activations with
// alpha/beta, input_forget, GRU with and without linear_before_reset, every output; compared with ONNX Runtime.
import { describe, expect, it } from 'vitest';
import { compile, KilnError, load, type Tensor } from '../src/index.js';
import { type Attr, type NodeSpec, buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { runOrt } from './helpers/ort.js';

type Cell = 'LSTM' | 'GRU' | 'RNN';
const GATES: Record<Cell, number> = { LSTM: 4, GRU: 3, RNN: 1 };

interface Case {
  cell: Cell;
  seq: number;
  batch: number;
  input: number;
  hidden: number;
  dirs: 1 | 2;
  attrs?: Record<string, Attr>;
  layout?: 0 | 1;
  bias?: boolean;
  /** Per-batch lengths: fed at run time, or an initializer when `lensConst`. */
  lens?: number[];
  lensConst?: boolean;
  initialH?: boolean;
  initialC?: boolean;
  peepholes?: boolean;
  /** Which of Y, Y_h, Y_c the node produces ('' leaves one out). */
  outputs: string[];
}

const scaled = (t: Tensor, s: number): Tensor => ({ ...t, data: (t.data as Float32Array).map((v) => v * s) });

/** Builds the one-node model and its feeds, runs Kiln and ONNX Runtime, and compares every output. */
async function matchesOrt(k: Case) {
  const { cell, seq: S, batch: B, input: I, hidden: H, dirs } = k;
  const G = GATES[cell];
  const layout = k.layout ?? 0;
  const xShape = layout ? [B, S, I] : [S, B, I];
  const stateShape = layout ? [B, dirs, H] : [dirs, B, H];
  const inputs: [string, 'float32' | 'int32', number[]][] = [['X', 'float32', xShape]];
  const feeds: Record<string, Tensor> = { X: randomF32(xShape, 11) };
  const initializers: Record<string, Tensor> = {
    W: scaled(randomF32([dirs, G * H, I], 12), 0.6),
    R: scaled(randomF32([dirs, G * H, H], 13), 0.6),
  };
  const nodeInputs = ['X', 'W', 'R', '', '', '', '', ''];
  if (k.bias) {
    initializers.B = scaled(randomF32([dirs, 2 * G * H], 14), 0.5);
    nodeInputs[3] = 'B';
  }
  if (k.lens) {
    const lens: Tensor = { dtype: 'int32', shape: [B], data: Int32Array.from(k.lens) };
    if (k.lensConst) initializers.L = lens;
    else {
      inputs.push(['L', 'int32', [B]]);
      feeds.L = lens;
    }
    nodeInputs[4] = 'L';
  }
  if (k.initialH) {
    inputs.push(['H0', 'float32', stateShape]);
    feeds.H0 = randomF32(stateShape, 15);
    nodeInputs[5] = 'H0';
  }
  if (k.initialC) {
    inputs.push(['C0', 'float32', stateShape]);
    feeds.C0 = randomF32(stateShape, 16);
    nodeInputs[6] = 'C0';
  }
  if (k.peepholes) {
    initializers.P = scaled(randomF32([dirs, 3 * H], 17), 0.5);
    nodeInputs[7] = 'P';
  }
  while (nodeInputs[nodeInputs.length - 1] === '') nodeInputs.pop();
  const shapes: Record<string, number[]> = {
    Y: layout ? [B, S, dirs, H] : [S, dirs, B, H],
    Y_h: stateShape,
    Y_c: stateShape,
  };
  const outs = k.outputs.filter((o) => o);
  const node = (ins: string[], outputs: string[], layoutAttr: number) => ({
    op: cell,
    inputs: ins,
    outputs,
    attrs: {
      hidden_size: H,
      direction: dirs === 2 ? 'bidirectional' : 'forward',
      ...(layoutAttr ? { layout: layoutAttr } : {}),
      ...k.attrs,
    },
  });
  const spec = (nodes: NodeSpec[]) => ({
    inputs,
    outputs: outs.map((o): [string, 'float32', number[]] => [o, 'float32', shapes[o]]),
    nodes,
    initializers,
  });
  const model = buildModel(spec([node(nodeInputs, k.outputs, layout)]));
  // ONNX Runtime has no layout 1: its reference is the layout-0 node between transposes
  let reference = model;
  if (layout) {
    const perm = (e: string, p: number[]) => ({ op: 'Transpose', inputs: [e], outputs: [e], attrs: { perm: p } });
    const swapped = (e: string) => (['X', 'H0', 'C0'].includes(e) ? `${e}_0` : e);
    reference = buildModel(
      spec([
        ...nodeInputs.filter((e) => swapped(e) !== e).map((e) => ({ ...perm(e, [1, 0, 2]), outputs: [swapped(e)] })),
        node(
          nodeInputs.map(swapped),
          k.outputs.map((o) => (o ? `${o}_0` : o)),
          0,
        ),
        ...outs.map((o) => ({ ...perm(`${o}_0`, o === 'Y' ? [2, 0, 1, 3] : [1, 0, 2]), outputs: [o] })),
      ]),
    );
  }
  const m = await load((await compile(model)).artifact);
  const got = m.runSync(feeds);
  m.dispose();
  const want = await runOrt(reference, feeds);
  for (const o of outs) {
    expect(got[o].shape, o).toEqual(shapes[o]);
    expect(compareTensors(got[o], want[o])?.message, o).toBeUndefined();
  }
}

describe('recurrent operators against ONNX Runtime', () => {
  it('bidirectional LSTM with peepholes, clip, run-time sequence_lens, initial states and all outputs', async () => {
    await matchesOrt({
      cell: 'LSTM',
      seq: 5,
      batch: 3,
      input: 4,
      hidden: 3,
      dirs: 2,
      bias: true,
      peepholes: true,
      initialH: true,
      initialC: true,
      lens: [5, 2, 4],
      attrs: { clip: { float: 0.7 } },
      outputs: ['Y', 'Y_h', 'Y_c'],
    });
  });

  it('LSTM in layout 1 with non-default activations, alpha/beta and input_forget; Y left out', async () => {
    await matchesOrt({
      cell: 'LSTM',
      seq: 4,
      batch: 2,
      input: 3,
      hidden: 5,
      dirs: 2,
      layout: 1,
      bias: true,
      initialH: true,
      initialC: true,
      attrs: {
        input_forget: 1,
        activations: {
          strings: ['HardSigmoid', 'ScaledTanh', 'LeakyRelu', 'Sigmoid', 'Softsign', 'Tanh'],
        },
        activation_alpha: { floats: [0.3, 0.9, 0.05] },
        activation_beta: { floats: [0.4, 1.2] },
      },
      outputs: ['', 'Y_h', 'Y_c'],
    });
  });

  it('reverse LSTM with sequence_lens as an initializer and Y_c only', async () => {
    await matchesOrt({
      cell: 'LSTM',
      seq: 4,
      batch: 3,
      input: 2,
      hidden: 3,
      dirs: 1,
      bias: true,
      lens: [4, 1, 3],
      lensConst: true,
      attrs: { direction: 'reverse' },
      outputs: ['', '', 'Y_c'],
    });
  });

  for (const lbr of [0, 1]) {
    it(`bidirectional GRU, linear_before_reset=${lbr}, with bias, initial state, sequence_lens and clip`, async () => {
      await matchesOrt({
        cell: 'GRU',
        seq: 5,
        batch: 3,
        input: 4,
        hidden: 3,
        dirs: 2,
        bias: true,
        initialH: true,
        lens: [3, 5, 1],
        attrs: { linear_before_reset: lbr, clip: { float: 1.5 } },
        outputs: ['Y', 'Y_h'],
      });
    });
  }

  it('GRU in layout 1 with Affine and Elu activations, linear_before_reset without a bias', async () => {
    await matchesOrt({
      cell: 'GRU',
      seq: 3,
      batch: 2,
      input: 3,
      hidden: 4,
      dirs: 1,
      layout: 1,
      attrs: {
        linear_before_reset: 1,
        activations: { strings: ['Affine', 'Elu'] },
        activation_alpha: { floats: [0.5, 0.8] },
        activation_beta: { floats: [0.25] },
      },
      outputs: ['Y', 'Y_h'],
    });
  });

  for (const acts of [
    ['Relu', 'ThresholdedRelu'],
    ['Softplus', 'Sigmoid'],
  ]) {
    it(`bidirectional RNN with ${acts.join('/')} and sequence_lens`, async () => {
      await matchesOrt({
        cell: 'RNN',
        seq: 4,
        batch: 2,
        input: 3,
        hidden: 4,
        dirs: 2,
        bias: true,
        initialH: true,
        lens: [2, 4],
        attrs: { activations: { strings: acts }, activation_alpha: { floats: [0.1] } },
        outputs: ['Y', 'Y_h'],
      });
    });
  }
});

describe('recurrent operators: what Kiln cannot do is named', () => {
  const rnn = (attrs: Record<string, Attr>) =>
    buildModel({
      inputs: [['X', 'float32', [2, 1, 3]]],
      outputs: [['Y', 'float32', [2, 1, 1, 4]]],
      nodes: [{ op: 'RNN', inputs: ['X', 'W', 'R'], outputs: ['Y'], attrs: { hidden_size: 4, ...attrs } }],
      initializers: { W: randomF32([1, 4, 3], 1), R: randomF32([1, 4, 4], 2) },
    });
  const error = async (model: Uint8Array): Promise<KilnError> => {
    try {
      await compile(model);
    } catch (e) {
      if (e instanceof KilnError) return e;
      throw e;
    }
    throw new Error('expected a KilnError');
  };

  it('rejects an unknown activation and layout 2, naming the attribute', async () => {
    const act = await error(rnn({ activations: { strings: ['Gelu'] } }));
    expect([act.code, act.message]).toEqual(['E_UNSUPPORTED', expect.stringMatching(/RNN: activations 'Gelu'/)]);
    const layout = await error(rnn({ layout: 2 }));
    expect([layout.code, layout.message]).toEqual(['E_UNSUPPORTED', expect.stringMatching(/RNN: layout 2/)]);
  });

  it('rejects weights whose directions disagree with the direction attribute', async () => {
    const e = await error(rnn({ direction: 'bidirectional' }));
    expect([e.code, e.message]).toEqual([
      'E_MODEL_INVALID',
      expect.stringMatching(/W has 1 directions, direction is 'bidirectional'/),
    ]);
  });
});
