// Symbolic dims in the graph IR: dim arithmetic and its canonical texts (relay-ir/sym-dim.ts); shape subgraphs
// over symbolic inputs folded to symbolic dims, not E_DYNAMIC; ranges deciding comparisons; and the symbolic graph,
// bound to sizes afterwards (specializeGraph), against ONNX Runtime running the dynamic model at each size.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { compile, load, type Tensor } from '../src/index.js';
import { compileGraph, importAndOptimize, specializeGraph } from '../src/compiler/compile.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { printFunc } from '../src/relay-ir/printer.js';
import { printType } from '../src/relay-ir/types.js';
import {
  dimAdd,
  dimBounds,
  dimEquals,
  dimExactDiv,
  dimFloorDiv,
  dimMin,
  dimMod,
  dimMul,
  dimProduct,
  dimSub,
  dimSymbols,
  substituteDim,
  withDimRanges,
} from '../src/relay-ir/sym-dim.js';
import { runOrt } from './helpers/ort.js';
import { kilnError } from './helpers/errors.js';
import { int64, shapeChains } from './helpers/shape-chain-model.js';

describe('symbolic dim arithmetic', () => {
  it('keeps one canonical text per size, whatever the order of the arithmetic', () => {
    expect(dimMul('seq', 'batch')).toBe('batch*seq');
    expect(dimMul(dimMul('batch', 4), 'seq')).toBe(dimMul(4, dimMul('seq', 'batch')));
    expect(dimAdd('past', 'seq')).toBe('past + seq');
    expect(dimSub(dimAdd('seq', 3), 3)).toBe('seq');
    expect(dimSub('seq', 'seq')).toBe(0);
    expect(dimProduct(['batch', 'seq', 256])).toBe('256*batch*seq');
    expect(dimProduct([2, 3])).toBe(6);
  });

  it('divides exactly where it can, and keeps an opaque floor otherwise', () => {
    expect(dimFloorDiv(dimMul('seq', 4), 2)).toBe('2*seq');
    expect(dimFloorDiv(dimAdd(dimMul('seq', 4), 3), 2)).toBe('2*seq + 1');
    expect(dimFloorDiv('seq', 2)).toBe('floor((seq)/2)');
    expect(dimMod(dimMul('seq', 4), 2)).toBe(0);
    expect(dimExactDiv(dimProduct(['batch', 'seq', 256]), dimMul('batch', 'seq'))).toBe(256);
    expect(dimExactDiv(dimProduct(['batch', 'seq', 256]), 64)).toBe('4*batch*seq');
    expect(dimExactDiv('seq', 'batch')).toBeUndefined();
    expect(dimExactDiv(dimAdd('seq', 1), 2)).toBeUndefined();
  });

  it('decides comparisons from the ranges in force, and only from them', () => {
    expect(dimMin('seq', 128)).toBe('min(128, seq)');
    expect(dimEquals(dimMin('seq', 128), 'seq')).toBe(false);
    withDimRanges(new Map([['seq', [1, 128]]]), () => {
      expect(dimMin('seq', 128)).toBe('seq');
      expect(dimEquals(dimMin(128, 'seq'), 'seq')).toBe(true);
      expect(dimBounds(dimAdd(dimMul('seq', 2), 1))).toEqual([3, 257]);
    });
    expect(dimBounds('seq')).toEqual([0, Number.POSITIVE_INFINITY]);
  });

  it('binds symbols to sizes, through floors and mins', () => {
    const values = new Map([
      ['batch', 3],
      ['seq', 7],
    ]);
    expect(substituteDim(dimProduct(['batch', 'seq', 4]), values)).toBe(84);
    expect(substituteDim(dimFloorDiv('seq', 2), values)).toBe(3);
    expect(substituteDim(dimMin('seq', 5), values)).toBe(5);
    expect(substituteDim(dimMul('batch', 'past'), values)).toBe('3*past');
    expect(dimSymbols(dimAdd(dimMin('seq', 5), 'batch')).sort()).toEqual(['batch', 'seq']);
  });
});

/** Binds the symbolic graph to `values`, compiles it, and compares `outputs` with ONNX Runtime at that size. */
async function matchesOrtAt(
  graph: ReturnType<typeof importAndOptimize>,
  model: Uint8Array,
  values: Record<string, number>,
  feeds: Record<string, Tensor>,
  ...outputs: string[]
) {
  const r = await compileGraph(specializeGraph(graph, values));
  const m = await load(r.artifact);
  const got = m.runSync(feeds);
  m.dispose();
  const want = await runOrt(model, feeds);
  for (const o of outputs) {
    expect(got[o].shape).toEqual(want[o].shape);
    expect(compareTensors(got[o], want[o])?.message, `${o} at ${JSON.stringify(values)}`).toBeUndefined();
  }
}

describe('graphs with symbolic dims', () => {
  it('folds shape chains over symbolic inputs to symbolic dims', async () => {
    const g = importAndOptimize(shapeChains, { dims: { seq: [1, 16] } });
    const text = printFunc(g.graph);
    expect(text).toMatch(/reshape\(%\d+, shape=\[batch\*seq,4\]\) : float32\[batch\*seq,4\]/);
    expect(text).toMatch(/reshape\(%\d+, shape=\[batch,seq,4\]\)/);
    // the Slice clamps to the table's 16 rows, which seq's range never exceeds
    expect(text).toMatch(/slice\(@c\d+:float32\[16,4\], starts=\[0\], ends=\[seq\].*: float32\[seq,4\]/);
    expect(text).toMatch(/range\(0:int64, 1:int64, count=\[seq\]\) : int64\[seq\]/);
    expect(printType(g.graph.body.type)).toBe('float32[batch,seq,4]');
  });

  it('names the range that would decide a broadcast the dims alone do not', async () => {
    const e = await kilnError(() => importAndOptimize(shapeChains));
    expect([e.code, e.message]).toEqual([
      'E_SHAPE',
      expect.stringMatching(/broadcast only if seq = min\(16, seq\), which the dims' ranges do not prove/),
    ]);
    expect(e.hint).toMatch(/--dim seq=LO\.\.HI/);
  });

  it('binds the symbolic graph to each size and matches ONNX Runtime there', async () => {
    const g = importAndOptimize(shapeChains, { dims: { seq: [1, 16] } });
    for (const [batch, seq] of [
      [1, 1],
      [3, 5],
      [2, 16],
    ]) {
      const feeds = { x: randomF32([batch, seq, 8], 5), y: randomF32([batch, seq, 4], 6) };
      await matchesOrtAt(g, shapeChains, { batch, seq }, feeds, 'z');
    }
    const out = await kilnError(() => specializeGraph(g, { batch: 1, seq: 17 }));
    expect([out.code, out.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/'seq' = 17 is outside its range 1\.\.16/),
    ]);
  });
});

describe('kernels for run-time sizes: dims that shape a kernel', () => {
  it("a ScatterND whose indices' last dim is a run-time size is E_DYNAMIC naming the dim to fix", async () => {
    const model = buildModel({
      inputs: [
        ['x', 'float32', ['n', 4]],
        ['i', 'int64', ['m', 'k']],
        ['u', 'float32', ['m', 4]],
      ],
      outputs: [['y', 'float32', ['n', 4]]],
      nodes: [{ op: 'ScatterND', inputs: ['x', 'i', 'u'], outputs: ['y'] }],
    });
    const e = await kilnError(() => compile(model, { dims: { n: [1, 8], m: [1, 8], k: [1, 2] } }));
    expect([e.code, e.message, e.hint]).toEqual([
      'E_DYNAMIC',
      expect.stringMatching(/scatter_nd: the indices' last dim \(k\) shapes its kernel/),
      'fix it: --dim k=N',
    ]);
    // fixed, it runs at any n and m in range
    const r = await compile(model, { dims: { n: [1, 8], m: [1, 8], k: 1 } });
    const m = await load(r.artifact);
    const feeds = { x: randomF32([6, 4], 1), i: int64([2, 1], [4, 1]), u: randomF32([2, 4], 2) };
    const got = m.runSync(feeds);
    m.dispose();
    expect(compareTensors(got.y, (await runOrt(model, feeds)).y)?.message).toBeUndefined();
  });
});

describe('Attention and RotaryEmbedding (opset 23) with symbolic batch and sequence lengths', () => {
  // a decoder step: rotary positions for the new queries, grouped-query causal attention over a past of any length
  const model = buildModel({
    inputs: [
      ['q', 'float32', ['batch', 4, 'seq', 16]],
      ['k', 'float32', ['batch', 2, 'seq', 16]],
      ['v', 'float32', ['batch', 2, 'seq', 16]],
      ['past_k', 'float32', ['batch', 2, 'past', 16]],
      ['past_v', 'float32', ['batch', 2, 'past', 16]],
      ['pos', 'int64', ['batch', 'seq']],
    ],
    initializers: { cos: randomF32([32, 8], 3), sin: randomF32([32, 8], 4) },
    outputs: [
      ['y', 'float32', ['batch', 4, 'seq', 16]],
      ['present_k', 'float32', ['batch', 2, 'total', 16]],
      ['present_v', 'float32', ['batch', 2, 'total', 16]],
    ],
    nodes: [
      { op: 'RotaryEmbedding', inputs: ['q', 'cos', 'sin', 'pos'], outputs: ['qr'] },
      { op: 'RotaryEmbedding', inputs: ['k', 'cos', 'sin', 'pos'], outputs: ['kr'] },
      {
        op: 'Attention',
        inputs: ['qr', 'kr', 'v', '', 'past_k', 'past_v'],
        outputs: ['y', 'present_k', 'present_v'],
        attrs: { is_causal: 1 },
      },
    ],
    opset: 23,
  });
  it('compiles once and matches ONNX Runtime at every length in range', async () => {
    const r = await compile(model, { dims: { batch: [1, 2], seq: [1, 8], past: [0, 8] } });
    expect(r.header.outputs.map((o) => o.dims)).toEqual([
      ['batch', 4, 'seq', 16],
      ['batch', 2, 'past + seq', 16],
      ['batch', 2, 'past + seq', 16],
    ]);
    const m = await load(r.artifact);
    try {
      for (const [batch, seq, past] of [
        [1, 1, 0],
        [2, 3, 5],
        [1, 8, 8],
        [2, 1, 7],
      ]) {
        const feeds: Record<string, Tensor> = {
          q: randomF32([batch, 4, seq, 16], 10 + seq),
          k: randomF32([batch, 2, seq, 16], 20 + seq),
          v: randomF32([batch, 2, seq, 16], 30 + seq),
          past_k: randomF32([batch, 2, past, 16], 40 + past),
          past_v: randomF32([batch, 2, past, 16], 50 + past),
          pos: int64(
            [batch, seq],
            Array.from({ length: batch * seq }, (_, i) => past + (i % seq)),
          ),
        };
        const got = m.runSync(feeds);
        const want = await runOrt(model, feeds);
        for (const o of ['y', 'present_k', 'present_v']) {
          expect(got[o].shape).toEqual(want[o].shape);
          expect(compareTensors(got[o], want[o])?.message, `${o} at ${batch},${seq},${past}`).toBeUndefined();
        }
      }
    } finally {
      m.dispose();
    }
  });
});

describe('Attention (opset 23) on [batch, sequence, hidden] with a mask of symbolic length', () => {
  it('compiles once and matches ONNX Runtime at every length in range', async () => {
    const model = buildModel({
      inputs: [
        ['q', 'float32', ['batch', 'seq', 32]],
        ['k', 'float32', ['batch', 'seq', 32]],
        ['v', 'float32', ['batch', 'seq', 32]],
        ['mask', 'bool', ['seq', 'seq']],
      ],
      outputs: [['y', 'float32', ['batch', 'seq', 32]]],
      nodes: [
        {
          op: 'Attention',
          inputs: ['q', 'k', 'v', 'mask'],
          outputs: ['y'],
          attrs: { q_num_heads: 4, kv_num_heads: 4, scale: 0.3 },
        },
      ],
      opset: 23,
    });
    const r = await compile(model, { dims: { batch: [1, 3], seq: [1, 12] } });
    const m = await load(r.artifact);
    try {
      for (const [batch, seq] of [
        [1, 1],
        [3, 7],
        [2, 12],
      ]) {
        const keep = randomF32([seq, seq], seq).data as Float32Array;
        const feeds: Record<string, Tensor> = {
          q: randomF32([batch, seq, 32], 1),
          k: randomF32([batch, seq, 32], 2),
          v: randomF32([batch, seq, 32], 3),
          // (every row keeps its diagonal)
          mask: {
            dtype: 'bool',
            shape: [seq, seq],
            data: Uint8Array.from(keep, (x, i) => (x > -0.3 || i % (seq + 1) === 0 ? 1 : 0)),
          },
        };
        const got = m.runSync(feeds);
        const want = await runOrt(model, feeds);
        expect(got.y.shape).toEqual(want.y.shape);
        expect(compareTensors(got.y, want.y)?.message, `at ${batch},${seq}`).toBeUndefined();
      }
    } finally {
      m.dispose();
    }
  });
});

const tokens = (batch: number, sequence: number, vocab: number): Tensor =>
  int64(
    [batch, sequence],
    Array.from({ length: batch * sequence }, (_, i) => 1 + ((i * 37) % (vocab - 1))),
  );

const transformers: {
  name: string;
  output: string;
  feeds: (batch: number, sequence: number) => Record<string, Tensor>;
}[] = [
  {
    name: 'bert_dynamic',
    output: 'last_hidden_state',
    feeds: (batch, sequence) => ({
      input_ids: tokens(batch, sequence, 1000),
      // the last token of every row after the first is padding
      attention_mask: int64(
        [batch, sequence],
        Array.from({ length: batch * sequence }, (_, i) => (i >= sequence && i % sequence === sequence - 1 ? 0 : 1)),
      ),
    }),
  },
  { name: 'gpt2', output: 'logits', feeds: (batch, sequence) => ({ input_ids: tokens(batch, sequence, 1000) }) },
];
for (const { name, output, feeds } of transformers) {
  const path = `.cache/models/${name}/model.onnx`;
  describe.skipIf(!existsSync(path))(`${name}, exported with dynamic batch and sequence axes`, () => {
    it('imports once with symbolic dims, and each binding matches ONNX Runtime', async () => {
      const bytes = readFileSync(path);
      // (their position embeddings have 512 and 256 rows: the range of sequence must stay within them)
      const g = importAndOptimize(bytes, { dims: { batch: [1, 8], sequence: [1, 128] } });
      expect(g.graph.params.map((p) => printType(p.type))).toEqual(g.graph.params.map(() => 'int64[batch,sequence]'));
      expect(printType(g.graph.body.type)).toMatch(/\[batch,sequence,\d+\]$/);
      for (const [batch, sequence] of [
        [1, 1],
        [2, 7],
      ])
        await matchesOrtAt(g, bytes, { batch, sequence }, feeds(batch, sequence), output);
    });

    it('imports with the sequence fixed and the batch ranged (a Range over a known size of a symbolic shape)', async () => {
      const bytes = readFileSync(path);
      const g = importAndOptimize(bytes, { dims: { batch: [1, 8], sequence: 12 } });
      expect(g.graph.params.map((p) => printType(p.type))).toEqual(g.graph.params.map(() => 'int64[batch,12]'));
      await matchesOrtAt(g, bytes, { batch: 3 }, feeds(3, 12), output);
    });
  });
}

const resnet = '.cache/models/resnet18_dynamic/model.onnx';
describe.skipIf(!existsSync(resnet))('a ResNet-18 exported with a dynamic batch axis', () => {
  it('imports once with a symbolic batch, and each binding matches ONNX Runtime', async () => {
    const bytes = readFileSync(resnet);
    const g = importAndOptimize(bytes);
    expect(printType(g.graph.params[0].type)).toBe('float32[batch,3,32,32]');
    expect(printType(g.graph.body.type)).toBe('float32[batch,1000]');
    for (const batch of [1, 3, 8])
      await matchesOrtAt(g, bytes, { batch }, { input: randomF32([batch, 3, 32, 32], batch) }, 'output');
  });
});

const gpt2Past = '.cache/models/gpt2_past/model.onnx';
describe.skipIf(!existsSync(gpt2Past))('a GPT-2 decoder with past key/values (scripts/gen_models.py gpt2_past)', () => {
  it('imports once, with present = past + sequence, and decodes at past lengths 0, 1 and 31 like ONNX Runtime', async () => {
    const bytes = readFileSync(gpt2Past);
    const g = importAndOptimize(bytes, {
      dims: { batch: [1, 4], sequence: [1, 64], past: [0, 64], total: [1, 128] },
    });
    const body = g.graph.body;
    expect(body.kind === 'tuple' && body.fields.map((f) => printType(f.type))).toEqual([
      'float32[batch,sequence,1000]',
      ...Array(4).fill('float32[batch,4,past + sequence,32]'),
    ]);
    for (const [past, sequence] of [
      [0, 4],
      [1, 1],
      [31, 1],
    ]) {
      const feeds: Record<string, Tensor> = {
        input_ids: tokens(1, sequence, 1000),
        attention_mask: int64([1, past + sequence], Array(past + sequence).fill(1)),
      };
      for (const layer of [0, 1])
        for (const kind of ['key', 'value'])
          feeds[`past_${kind}_${layer}`] = randomF32([1, 4, past, 32], 10 * layer + past + kind.length);
      const values = { batch: 1, sequence, past, total: past + sequence };
      await matchesOrtAt(g, bytes, values, feeds, 'logits', 'present_key_0', 'present_value_1');
    }
  });
});
