// Symbolic input dims fixed at compile time (`dims` / `kiln compile --dim`): one value per symbol for every input
// that declares it, shape subgraphs over them folded, results against ONNX Runtime running the symbolic model;
// every wrong use named clearly. (torch.export symbols: test/pytorch.test.ts.)
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compile, load } from '../src/index.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { evaluateSymExpr, parseSymExpr, printSymExpr, symbolsIn } from '../src/frontend/pytorch/sym-expr.js';
import { runOrt } from './helpers/ort.js';
import { int64, shapeChainModel } from './helpers/shape-chain-model.js';
import { tempDir } from './helpers/temp.js';
import { kilnError } from './helpers/errors.js';

/** The shape chain a dynamic-axes export writes (test/helpers/shape-chain-model.ts). */
const attentionLike = shapeChainModel();

/** Compiles with `options`, runs at the compiled shapes, and compares with ONNX Runtime on the symbolic model. */
async function matchesOrt(options: Parameters<typeof compile>[1], batch: number, seq: number) {
  const r = await compile(attentionLike, options);
  expect(r.header.inputs.map((i) => i.shape)).toEqual([
    [batch, seq, 8],
    [batch, seq, 4],
  ]);
  const feeds = { x: randomF32([batch, seq, 8], 5), y: randomF32([batch, seq, 4], 6) };
  const m = await load(r.artifact);
  const got = m.runSync(feeds).z;
  m.dispose();
  const want = (await runOrt(attentionLike, feeds)).z;
  expect(got.shape).toEqual([batch, seq, 4]);
  expect(compareTensors(got, want)?.message).toBeUndefined();
}

describe('dims: symbolic input dims fixed at compile time', () => {
  it('without values, names every symbolic dim and the flag that fixes it', async () => {
    const e = await kilnError(() => compile(attentionLike));
    expect(e.code).toBe('E_DYNAMIC');
    expect(e.hint).toMatch(/--dim batch=N --dim seq=N/);
    expect(e.hint).toMatch(/dims: \{ batch: N, seq: N \}/);
  });

  it('fixes a symbol in every input that declares it, and folds the shape arithmetic over it', async () => {
    await matchesOrt({ dims: { batch: 3, seq: 5 } }, 3, 5);
    await matchesOrt({ dims: { batch: [2, 2], seq: 1 } }, 2, 1);
  });

  it("binds the symbols of one input's inputShapes for the others", async () => {
    await matchesOrt({ inputShapes: { x: [2, 7, 8] } }, 2, 7);
    await matchesOrt({ inputShapes: { y: [1, 4, 4] }, dims: { batch: 1 } }, 1, 4);
  });

  it('rejects values that disagree, unknown names, malformed values and ranges clearly', async () => {
    const conflict = await kilnError(() =>
      compile(attentionLike, { dims: { batch: 3 }, inputShapes: { y: [2, 5, 4] } }),
    );
    expect([conflict.code, conflict.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/dim 'batch' is 3 in dims\['batch'\] but 2 in inputShapes\['y'\]/),
    ]);
    const twoShapes = await kilnError(() => compile(attentionLike, { inputShapes: { x: [2, 5, 8], y: [2, 6, 4] } }));
    expect(twoShapes.message).toMatch(/dim 'seq' is 5 in inputShapes\['x'\] \(dim 1\) but 6 in inputShapes\['y'\]/);
    const unknown = await kilnError(() => compile(attentionLike, { dims: { Batch: 1 } }));
    expect([unknown.code, unknown.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/'Batch'.*symbolic dims are 'batch' \(input 'x' dim 0\), 'seq' \(input 'x' dim 1\)/),
    ]);
    for (const bad of [-1, 2.5, [5, 1], [1, 2, 3], 'x', Number.NaN]) {
      const e = await kilnError(() => compile(attentionLike, { dims: { batch: bad as number, seq: 2 } }));
      expect([e.code, e.message]).toEqual(['E_INPUT', expect.stringMatching(/dims\['batch'\] = .* is not a size/)]);
    }
    const notObject = await kilnError(() => compile(attentionLike, { dims: [1] as never }));
    expect(notObject.code).toBe('E_INPUT');
    // a range keeps the dim symbolic: one artifact for every batch in 1..16 (test/dynamic-kernels.test.ts)
    const ranged = await compile(attentionLike, { dims: { batch: [1, 16], seq: 8 } });
    expect(ranged.header.inputs[0].dims).toEqual(['batch', 8, 8]);
    const outside = await kilnError(() =>
      compile(attentionLike, { dims: { batch: [1, 4] }, inputShapes: { x: [5, 2, 8] } }),
    );
    expect([outside.code, outside.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/inputShapes\['x'\] gives dim 0 \('batch'\) the size 5, outside dims\['batch'\] = 1\.\.4/),
    ]);
  });

  it('names unnamed dims after their input and position', async () => {
    const model = buildModel({
      inputs: [['u', 'float32', [null, 4]]],
      outputs: [['r', 'float32', [null, 4]]],
      nodes: [{ op: 'Relu', inputs: ['u'], outputs: ['r'] }],
    });
    const e = await kilnError(() => compile(model));
    expect([e.code, e.hint]).toEqual(['E_DYNAMIC', expect.stringMatching(/--dim u_d0=N/)]);
    expect((await compile(model, { dims: { u_d0: 6 } })).header.inputs[0].shape).toEqual([6, 4]);
  });
});

const bertDynamic = '.cache/models/bert_dynamic/model.onnx';
describe.skipIf(!existsSync(bertDynamic))(
  'a BERT encoder exported with dynamic batch and sequence axes (scripts/gen_models.py bert_dynamic)',
  () => {
    it('compiles at each size given with dims, and matches ONNX Runtime running the dynamic model', async () => {
      const bytes = readFileSync(bertDynamic);
      // its position ids are a Slice of a 512-row table by sequence: only a range up to 512 makes them broadcast
      const e = await kilnError(() => compile(bytes));
      expect([e.code, e.hint]).toEqual(['E_SHAPE', expect.stringMatching(/--dim sequence=LO\.\.HI/)]);
      for (const [batch, sequence] of [
        [1, 1],
        [1, 7],
        [2, 16],
      ]) {
        const n = batch * sequence;
        const ids = int64(
          [batch, sequence],
          Array.from({ length: n }, (_, i) => 1 + ((i * 37) % 999)),
        );
        // the last token of every row after the first is padding
        const mask = int64(
          [batch, sequence],
          Array.from({ length: n }, (_, i) => (i >= sequence && i % sequence === sequence - 1 ? 0 : 1)),
        );
        const r = await compile(bytes, { dims: { batch, sequence } });
        const m = await load(r.artifact);
        const got = m.runSync({ input_ids: ids, attention_mask: mask }).last_hidden_state;
        m.dispose();
        const want = (await runOrt(bytes, { input_ids: ids, attention_mask: mask })).last_hidden_state;
        expect(got.shape).toEqual([batch, sequence, 256]);
        expect(compareTensors(got, want)?.message, `at ${batch}x${sequence}`).toBeUndefined();
      }
    });
  },
);

describe('torch.export size expressions', () => {
  const sym = (name: string) => `Symbol('${name}', positive=True, integer=True)`;
  it('reads sympy srepr text and bare names, and evaluates them once the symbols have values', () => {
    const values = new Map([
      ['s17', 3],
      ['s27', 7],
    ]);
    const cases: [string, number, string][] = [
      [sym('s17'), 3, 's17'],
      ['s5', 11, 's5'],
      ['Integer(12)', 12, '12'],
      [`Mul(Integer(8), ${sym('s27')})`, 56, '8*s27'],
      [`Add(${sym('s17')}, Integer(-1))`, 2, 's17 + -1'],
      [`FloorDiv(Mul(${sym('s17')}, ${sym('s27')}), Integer(2))`, 10, '(s17*s27) // 2'],
      [`Mod(Add(${sym('s27')}, Integer(-9)), Integer(4))`, 2, '(s27 + -9) % 4'],
      [`Max(Integer(1), ${sym('s17')})`, 3, 'Max(1, s17)'],
    ];
    for (const [text, want, printed] of cases) {
      const e = parseSymExpr(text);
      expect(evaluateSymExpr(e, new Map([...values, ['s5', 11]]))).toBe(want);
      expect(printSymExpr(e)).toBe(printed);
    }
    const e = parseSymExpr(`Mul(${sym('s17')}, ${sym('s99')})`);
    expect(symbolsIn(e)).toEqual(['s17', 's99']);
    expect(evaluateSymExpr(e, values)).toBeUndefined();
  });

  it('rejects malformed text and unknown functions clearly', () => {
    for (const text of ['Mul(Integer(2),', 'Symbol()', 'Integer(2) 3', '+']) {
      expect(() => parseSymExpr(text)).toThrow(expect.objectContaining({ code: 'E_MODEL_INVALID' }));
    }
    expect(() => evaluateSymExpr(parseSymExpr('Sqrt(Integer(4))'), new Map())).toThrow(
      expect.objectContaining({ code: 'E_UNSUPPORTED' }),
    );
  });
});

const cli = join(process.cwd(), 'dist/cli/kiln.js');
describe.skipIf(!existsSync(cli))('kiln compile --dim', () => {
  it('fixes symbolic dims from the command line, and rejects a malformed flag as a usage error', () => {
    const dir = tempDir('kiln-dims-');
    const model = join(dir, 'm.onnx');
    writeFileSync(model, attentionLike);
    const ok = spawnSync('node', [cli, 'compile', model, '--dim', 'batch=2', '--dim', 'seq=3'], { encoding: 'utf8' });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/input {2}x: float32\[2,3,8\]/);
    expect(ok.stdout).toMatch(/input {2}y: float32\[2,3,4\]/);
    const malformed = spawnSync('node', [cli, 'compile', model, '--dim', 'batch=two'], { encoding: 'utf8' });
    expect([malformed.status, malformed.stderr]).toEqual([2, expect.stringMatching(/bad --dim 'batch=two'/)]);
    const range = spawnSync('node', [cli, 'compile', model, '--dim', 'batch=1..8', '--dim', 'seq=3'], {
      encoding: 'utf8',
    });
    expect(range.status, range.stderr).toBe(0);
    expect(range.stdout).toMatch(/input {2}x: float32\[batch,3,8\]/);
    expect(range.stdout).toMatch(/dim {4}batch: 1\.\.8 \(memory planned at 8\)/);
    const missing = spawnSync('node', [cli, 'compile', model], { encoding: 'utf8' });
    expect([missing.status, missing.stderr]).toEqual([1, expect.stringMatching(/--dim batch=N --dim seq=N/)]);
  });
});
