// torch.export .pt2 import (src/frontend/pytorch): a hand-built archive (shared storage, strides, offsets, scalar
// arguments) and every way it can be wrong, which need no fixtures; then the models scripts/gen_pytorch_models.py
// exports (ResNet-18, MobileNetV2 and a small module, each as exported and after run_decompositions()) compiled
// and run, compared with PyTorch's own outputs within rtol 1e-3 / atol 1e-4.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { strToU8, zipSync } from 'fflate';
import { compile, load, type Tensor } from '../src/index.js';
import { compileGraph, importAndOptimize, specializeGraph } from '../src/compiler/compile.js';
import { printFunc } from '../src/relay-ir/printer.js';
import { importPt2 } from '../src/frontend/pytorch/import.js';
import { supportedAtenOps } from '../src/frontend/pytorch/converter.js';
import { parseSymExpr, symExprToDim } from '../src/frontend/pytorch/sym-expr.js';
import { withDimRanges } from '../src/relay-ir/sym-dim.js';
import type { KilnError } from '../src/runtime/errors.js';
import { tempDir } from './helpers/temp.js';
import { kilnError } from './helpers/errors.js';
import { HALF_TOLERANCE, matchesPyTorch } from './helpers/pytorch-fixtures.js';

const sizes = (s: number[]) => s.map((d) => ({ as_int: d }));
const meta = (shape: number[], strides: number[], offset = 0) => ({
  dtype: 7,
  sizes: sizes(shape),
  strides: sizes(strides),
  storage_offset: { as_int: offset },
  requires_grad: false,
  device: { type: 'cpu', index: null },
  layout: 7,
});
const tensorArg = (name: string) => ({ as_tensor: { name } });
const node = (target: string, name: string, inputs: [string, object][]) => ({
  target: `torch.ops.aten.${target}`,
  name,
  inputs: inputs.map(([n, arg]) => ({ name: n, arg, kind: 1 })),
  outputs: [tensorArg(name)],
  metadata: {},
});

/**
 * y = relu(x + w) * 2 and z = x + v.view(2, 1): w ([3], stride 2, offset 1) and v ([2], stride 6) are views of
 * one 7-element storage [0, 1, ..., 6], so w = [1, 3, 5] and v = [0, 6].
 */
function tinyProgram() {
  return {
    graph_module: {
      graph: {
        inputs: [tensorArg('p_w'), tensorArg('b_v'), tensorArg('x')],
        outputs: [tensorArg('mul'), tensorArg('add_1')],
        nodes: [
          node('add.Tensor', 'add', [
            ['self', tensorArg('x')],
            ['other', tensorArg('p_w')],
          ]),
          node('relu.default', 'relu', [['self', tensorArg('add')]]),
          node('mul.Tensor', 'mul', [
            ['self', tensorArg('relu')],
            ['other', { as_float: 2 }],
          ]),
          node('view.default', 'view', [
            ['self', tensorArg('b_v')],
            ['size', { as_ints: [2, 1] }],
          ]),
          node('add.Tensor', 'add_1', [
            ['self', tensorArg('x')],
            ['other', tensorArg('view')],
          ]),
        ],
        tensor_values: {
          x: meta([2, 3], [3, 1]),
          p_w: meta([3], [2], 1),
          b_v: meta([2], [6]),
          add: meta([2, 3], [3, 1]),
          relu: meta([2, 3], [3, 1]),
          mul: meta([2, 3], [3, 1]),
          view: meta([2, 1], [1, 1]),
          add_1: meta([2, 3], [3, 1]),
        },
        sym_int_values: {},
        is_single_tensor_return: false,
      },
      signature: {
        input_specs: [
          { parameter: { arg: { name: 'p_w' }, parameter_name: 'w' } },
          { buffer: { arg: { name: 'b_v' }, buffer_name: 'v', persistent: true } },
          { user_input: { arg: tensorArg('x') } },
        ],
        output_specs: [{ user_output: { arg: tensorArg('mul') } }, { user_output: { arg: tensorArg('add_1') } }],
      },
      module_call_graph: [],
    },
    opset_version: { aten: 10 },
    range_constraints: {},
    schema_version: { major: 8, minor: 20 },
    verifiers: ['ATEN'],
    torch_version: '2.13.0+cpu',
  };
}

type Program = ReturnType<typeof tinyProgram>;

function tinyFiles(edit: (p: Program) => void = () => {}): Record<string, Uint8Array> {
  const p = tinyProgram();
  edit(p);
  const storage = new Float32Array([0, 1, 2, 3, 4, 5, 6]);
  const payload = (m: object) => ({ path_name: 'weight_0', is_param: true, use_pickle: false, tensor_meta: m });
  return {
    'tiny/archive_format': strToU8('pt2'),
    'tiny/archive_version': strToU8('0'),
    'tiny/byteorder': strToU8('little'),
    'tiny/models/model.json': strToU8(JSON.stringify(p)),
    'tiny/data/weights/model_weights_config.json': strToU8(
      JSON.stringify({ config: { w: payload(meta([3], [2], 1)), v: payload(meta([2], [6])) } }),
    ),
    'tiny/data/weights/weight_0': new Uint8Array(storage.buffer),
    'tiny/data/constants/model_constants_config.json': strToU8('{"config": {}}'),
  };
}
const tinyArchive = (edit?: (p: Program) => void) => zipSync(tinyFiles(edit));

describe('torch.export .pt2 reader', () => {
  it('rebuilds views of a shared storage and converts the graph', async () => {
    const r = await compile(tinyArchive());
    const m = await load(r.artifact);
    const x: Tensor = { dtype: 'float32', shape: [2, 3], data: new Float32Array([-2, -1, 0, 1, 2, 3]) };
    const out = m.runSync({ x });
    expect(m.outputs.map((o) => o.name)).toEqual(['output_0', 'output_1']);
    const w = [1, 3, 5],
      v = [0, 6];
    expect(Array.from(out.output_0.data as Float32Array)).toEqual(
      [-2, -1, 0, 1, 2, 3].map((a, i) => 2 * Math.max(0, a + w[i % 3])),
    );
    expect(Array.from(out.output_1.data as Float32Array)).toEqual(
      [-2, -1, 0, 1, 2, 3].map((a, i) => a + v[Math.floor(i / 3)]),
    );
    m.dispose();
  });

  it('names the ATen op of every graph node', () => {
    const text = printFunc(importPt2(tinyArchive()).func);
    expect(text).toMatch(/add\(%x, .*# add \(aten\.add\.Tensor\)/);
    expect(text).toMatch(/relu\(.*# relu \(aten\.relu\.default\)/);
    expect(text).toMatch(/reshape\(.*# view \(aten\.view\.default\)/);
  });

  it('detects the format, and a wrong explicit one fails cleanly', async () => {
    expect((await compile(tinyArchive(), { format: 'pt2' })).header.outputs).toHaveLength(2);
    const e = await kilnError(() => compile(new Uint8Array([8, 1, 18, 0]), { format: 'pt2' }));
    expect(e.code).toBe('E_MODEL_DECODE');
    expect(e.message).toMatch(/not a zip file/);
    const f = await kilnError(() => compile(tinyArchive(), { format: 'onnx' }));
    expect(f.code).toBe('E_MODEL_DECODE');
    const g = await kilnError(() => compile(tinyArchive(), { format: 'keras' as 'onnx' }));
    expect(g.message).toMatch(/unknown model format 'keras'/);
  });

  it('rejects a truncated archive', async () => {
    const bytes = tinyArchive();
    for (const n of [bytes.length - 10, Math.floor(bytes.length / 2), 30]) {
      const e = await kilnError(() => compile(bytes.slice(0, n)));
      expect(e.code).toBe('E_MODEL_DECODE');
      expect(e.message).toMatch(/not a readable \.pt2 archive/);
    }
  });

  it('rejects an unknown schema version', async () => {
    const e = await kilnError(() =>
      compile(
        tinyArchive((p) => {
          p.schema_version = { major: 99, minor: 1 };
        }),
      ),
    );
    expect(e.code).toBe('E_UNSUPPORTED');
    expect(e.message).toMatch(
      /schema version 99\.1 \(written by torch 2\.13\.0\+cpu\) is not supported; Kiln reads schema 8\.x/,
    );
    const f = await kilnError(() =>
      compile(
        tinyArchive((p) => {
          delete (p as Partial<Program>).schema_version;
        }),
      ),
    );
    expect(f.code).toBe('E_MODEL_DECODE');
  });

  it('rejects an archive missing a weight file, or whose weight reads past its storage', async () => {
    const files = tinyFiles();
    delete files['tiny/data/weights/weight_0'];
    const e = await kilnError(() => compile(zipSync(files)));
    expect(e.code).toBe('E_MODEL_INVALID');
    expect(e.message).toMatch(/weight 'w' is stored in 'tiny\/data\/weights\/weight_0', which the archive lacks/);
    const short = tinyFiles();
    short['tiny/data/weights/weight_0'] = short['tiny/data/weights/weight_0'].slice(0, 20);
    const f = await kilnError(() => compile(zipSync(short)));
    expect(f.code).toBe('E_MODEL_INVALID');
    expect(f.message).toMatch(/weight 'w' .*reads past its storage of 5 elements/);
  });

  it('lists every unsupported operator at once, with counts', async () => {
    const e = await kilnError(() =>
      compile(
        tinyArchive((p) => {
          const n = p.graph_module.graph.nodes;
          n[1].target = 'torch.ops.aten.frobnicate.default';
          n[2].target = 'torch.ops.aten.frobnicate.default';
          n[3].target = 'torch.ops.aten.quux.Tensor';
        }),
      ),
    );
    expect(e.code).toBe('E_UNSUPPORTED_OP');
    expect(e.message).toMatch(
      /2 operators are not supported: aten\.frobnicate\.default \(2 nodes\), aten\.quux\.Tensor \(1 node\)/,
    );
    const cond = await kilnError(() =>
      compile(
        tinyArchive((p) => {
          p.graph_module.graph.nodes[1].target = 'torch.ops.higher_order.cond';
        }),
      ),
    );
    expect(cond.message).toMatch(/higher_order\.cond/);
    expect(cond.hint).toMatch(/control flow in the graph IR/);
  });

  it('rejects arguments a converter cannot honour, naming them; reads inf as JSON writes it', async () => {
    // node 1 (relu of `add`, [2, 3]) replaced by another op on the same value
    const withNode1 = (target: string, inputs: [string, object][]) =>
      tinyArchive((p) => {
        p.graph_module.graph.nodes[1] = node(target, 'relu', inputs);
      });
    const dropout = await kilnError(() =>
      compile(
        withNode1('scaled_dot_product_attention.default', [
          ['query', tensorArg('add')],
          ['key', tensorArg('add')],
          ['value', tensorArg('add')],
          ['dropout_p', { as_float: 0.5 }],
        ]),
      ),
    );
    expect([dropout.code, dropout.message]).toEqual(['E_UNSUPPORTED', expect.stringMatching(/dropout_p/)]);
    const select = await kilnError(() =>
      compile(
        withNode1('select.int', [
          ['self', tensorArg('add')],
          ['dim', { as_int: 1 }],
          ['index', { as_int: 3 }],
        ]),
      ),
    );
    expect(select.message).toMatch(/index 3 out of range for dim 1 of size 3/);
    // clamp_min(add, -inf) is add itself: relu's recorded [2, 3] still holds
    const inf = await compile(
      withNode1('clamp_min.default', [
        ['self', tensorArg('add')],
        ['min', { as_float: '-Infinity' }],
      ]),
    );
    expect(inf.header.outputs[0].shape).toEqual([2, 3]);
  });

  it('reads SymInt expressions as graph dims: sums and products as polynomials, floors by the ranges', () => {
    const sym = (n: string) => `Symbol('${n}', positive=True, integer=True)`;
    const dim = (text: string, values: [string, number][] = []) => symExprToDim(parseSymExpr(text), new Map(values));
    expect(dim(`Mul(Integer(2), ${sym('s0')})`)).toBe('2*s0');
    expect(dim(`Add(${sym('s0')}, Integer(1))`)).toBe('s0 + 1');
    expect(dim(`Mul(${sym('s1')}, ${sym('s0')})`)).toBe(dim(`Mul(${sym('s0')}, ${sym('s1')})`));
    expect(dim(`FloorDiv(Mul(Integer(4), ${sym('s0')}), Integer(2))`)).toBe('2*s0');
    expect(dim(`FloorDiv(${sym('s0')}, Integer(2))`)).toBe('floor((s0)/2)');
    expect(dim(`Add(Mul(Integer(2), ${sym('s0')}), ${sym('s1')})`, [['s0', 3]])).toBe('s1 + 6');
    expect(dim(`Max(Integer(1), ${sym('s0')})`, [['s0', 5]])).toBe(5);
    withDimRanges(new Map([['s0', [2, 64]]]), () => expect(dim(`Max(Integer(1), ${sym('s0')})`)).toBe('s0'));
    const e = (() => {
      try {
        dim(`FloorDiv(${sym('s0')}, ${sym('s1')})`);
      } catch (err) {
        return err as KilnError;
      }
    })();
    expect([e?.code, e?.hint]).toEqual(['E_UNSUPPORTED', expect.stringMatching(/--dim NAME=N/)]);
  });

  it('keeps symbolic input dims in their ranges, or takes fixed sizes from dims or inputShapes', async () => {
    const dynamic = tinyArchive((p) => {
      const values = p.graph_module.graph.tensor_values;
      // x's batch is s0, and so is that of everything computed from it (add_1 adds w, not v's [2, 1] view)
      for (const v of [values.x, values.add, values.relu, values.mul, values.add_1])
        v.sizes[0] = { as_expr: { expr_str: "Symbol('s0', positive=True, integer=True)" } } as unknown as {
          as_int: number;
        };
      p.graph_module.graph.nodes[4].inputs[1].arg = tensorArg('p_w');
      (p.range_constraints as Record<string, object>).s0 = { min_val: 2, max_val: 64 };
    });
    const graph = importAndOptimize(dynamic);
    expect(graph.graph.params[0].type).toMatchObject({ shape: ['s0', 3] });
    expect([...graph.dimRanges]).toEqual([['s0', [2, 64]]]);
    expect([...importAndOptimize(dynamic, { dims: { s0: [4, 8] } }).dimRanges]).toEqual([['s0', [4, 8]]]);
    const wider = await kilnError(() => importAndOptimize(dynamic, { dims: { s0: [1, 8] } }));
    expect([wider.code, wider.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/1\.\.8 is outside the range 2\.\.64/),
    ]);
    // one artifact runs every size in s0's range; a size outside it is E_INPUT naming the dim
    const ranged = await load((await compile(dynamic)).artifact);
    expect(ranged.inputs[0].dims).toEqual(['s0', 3]);
    const w = [1, 3, 5];
    for (const n of [2, 9, 64]) {
      const xs = Array.from({ length: n * 3 }, (_, i) => ((i * 7) % 11) - 5);
      const out = ranged.runSync({ x: { dtype: 'float32', shape: [n, 3], data: new Float32Array(xs) } });
      expect(out.output_0.shape).toEqual([n, 3]);
      expect(Array.from(out.output_0.data as Float32Array)).toEqual(xs.map((a, i) => 2 * Math.max(0, a + w[i % 3])));
      expect(Array.from(out.output_1.data as Float32Array)).toEqual(xs.map((a, i) => a + w[i % 3]));
    }
    const small = await kilnError(() =>
      ranged.runSync({ x: { dtype: 'float32', shape: [1, 3], data: new Float32Array(3) } }),
    );
    expect([small.code, small.message]).toEqual(['E_INPUT', expect.stringMatching(/s0.*2\.\.64/)]);
    ranged.dispose();
    expect((await compile(dynamic, { inputShapes: { x: [2, 3] } })).header.inputs[0].shape).toEqual([2, 3]);
    // (the tiny program records its other values at size 2)
    expect((await compile(dynamic, { dims: { s0: 2 } })).header.inputs[0].shape).toEqual([2, 3]);
    const bad = await kilnError(() => compile(dynamic, { inputShapes: { x: [2, 4] } }));
    expect(bad.message).toMatch(/dim 1 as 4, the program fixes it at 3/);
    const outside = await kilnError(() => compile(dynamic, { dims: { s0: 65 } }));
    expect([outside.code, outside.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/s0 = 65 is outside the range 2\.\.64/),
    ]);
    const unknown = await kilnError(() => compile(tinyArchive(), { inputShapes: { y: [1] } }));
    expect(unknown.code).toBe('E_INPUT');
    const unknownDim = await kilnError(() => compile(dynamic, { dims: { batch: 1 } }));
    expect([unknownDim.code, unknownDim.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/'s0' \(input 'x' dim 0\)/),
    ]);
  });

  it('reads the legacy layout only with a known schema; rejects TorchScript archives and malformed JSON clearly', async () => {
    const legacy = (program: object) =>
      zipSync({ 'serialized_exported_program.json': strToU8(JSON.stringify(program)), version: strToU8('5.1') });
    expect((await kilnError(() => compile(legacy({})))).message).toMatch(/has no schema_version/);
    const old = await kilnError(() =>
      compile(legacy({ ...tinyProgram(), schema_version: { major: 5, minor: 1 }, torch_version: '2.3.1' })),
    );
    expect([old.code, old.message]).toEqual([
      'E_UNSUPPORTED',
      expect.stringMatching(/schema version 5\.1 \(written by torch 2\.3\.1\) is not supported/),
    ]);
    const badState = zipSync({
      'serialized_exported_program.json': strToU8(JSON.stringify(tinyProgram())),
      'serialized_state_dict.pt': strToU8('not a zip'),
    });
    expect((await kilnError(() => compile(badState))).message).toMatch(
      /serialized_state_dict\.pt is not a torch\.save zip/,
    );
    // a TorchScript archive read as .pt2 (auto-detection sends it to the TorchScript reader)
    const ts = zipSync({ 'm/data.pkl': strToU8('x'), 'm/code/__torch__.py': strToU8('') });
    expect((await kilnError(() => compile(ts, { format: 'pt2' }))).message).toMatch(
      /TorchScript or torch\.save archive/,
    );
    const files = tinyFiles();
    files['tiny/models/model.json'] = strToU8('{"graph_module": ');
    const e = await kilnError(() => compile(zipSync(files)));
    expect(e.code).toBe('E_MODEL_DECODE');
    expect(e.message).toMatch(/models\/model\.json is not valid JSON/);
    const noArgs = await kilnError(() =>
      compile(
        tinyArchive((p) => {
          p.graph_module.graph.nodes[0].inputs = [];
        }),
      ),
    );
    expect(noArgs.code).toBe('E_MODEL_INVALID');
    expect(noArgs.message).toMatch(/required argument 'self' is missing.*node 'add'/);
  });

  it('covers the ATen ops of torchvision classifiers', () => {
    const ops = supportedAtenOps();
    for (const op of [
      'convolution',
      'conv2d',
      'batch_norm',
      '_native_batch_norm_legit_no_training',
      'addmm',
      'linear',
      'relu_',
      'hardtanh_',
      'max_pool2d_with_indices',
      'adaptive_avg_pool2d',
      'mean',
      'view',
      'flatten',
      'permute',
      'cat',
      'dropout',
      'clone',
    ]) {
      expect(ops).toContain(op);
    }
  });
});

// ---- exported models -----------------------------------------------------------------------------------------------

const ROOT = '.cache/pytorch';
const MODELS = [
  'small',
  'small_decomposed',
  'resnet18',
  'resnet18_decomposed',
  'mobilenet_v2',
  'mobilenet_v2_decomposed',
  'efficientnet_b0',
  'efficientnet_b0_decomposed',
  'dynamic_attention',
  'dynamic_attention_decomposed',
  'tiny_gpt',
  'tiny_gpt_decomposed',
  'aten_mix',
  'aten_mix_decomposed',
  'aten_mix2',
  'aten_mix2_decomposed',
  // the older layout (serialized_exported_program.json + torch.save state dict), rewritten from the current export
  'small_legacy',
  'tiny_gpt_legacy',
];
const present = MODELS.every((m) => existsSync(join(ROOT, m, 'info.json')));

describe.skipIf(!present)('torch.export models match PyTorch (fixtures: scripts/gen_pytorch_models.py)', () => {
  for (const name of MODELS) {
    it(name, async () => {
      const dir = join(ROOT, name);
      const info = JSON.parse(readFileSync(join(dir, 'info.json'), 'utf8')) as {
        inputs: [string, number[]][];
        outputs: number;
        symbols?: Record<string, unknown>;
      };
      const t0 = performance.now();
      // symbolic dims: the first input's shape fixes the symbols it shares with the others
      const [first, shape] = info.inputs[0];
      const symbolic = Object.keys(info.symbols ?? {}).length > 0;
      const r = await compile(
        readFileSync(join(dir, 'model.pt2')),
        symbolic ? { inputShapes: { [first]: shape } } : {},
      );
      const errs = await matchesPyTorch(r.artifact, dir, info);
      console.log(
        `${name}: ${r.header.kernels.length} kernels, max abs error ${errs.map((e) => e.toExponential(2)).join(', ')}, ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
    });
  }
});

// torch.cond and torch.while_loop as torch.export writes them (higher-order ops with subgraph arguments)
describe.skipIf(!['cond', 'while_loop'].every((m) => existsSync(join(ROOT, m, 'info.json'))))(
  'torch.export control flow',
  () => {
    it('is refused by name (E_UNSUPPORTED_OP), as exported and after run_decompositions()', async () => {
      for (const [name, op] of [
        ['cond', 'cond'],
        ['cond_decomposed', 'cond'],
        ['while_loop', 'while_loop'],
        ['while_loop_decomposed', 'while_loop'],
      ]) {
        const e = await kilnError(() => compile(readFileSync(join(ROOT, name, 'model.pt2'))));
        expect([e.code, e.message, e.hint], name).toEqual([
          'E_UNSUPPORTED_OP',
          expect.stringContaining(`control flow is not supported yet: torch.${op} (higher_order.${op}, 1 node)`),
          expect.stringMatching(/subgraphs/),
        ]);
      }
    });
  },
);

// float16 storages, inputs and outputs; bfloat16 weights behind casts (a few half ulps: HALF_TOLERANCE)
const HALF_FIXTURES = [
  ['half_cnn', HALF_TOLERANCE.float16],
  ['half_cnn_decomposed', HALF_TOLERANCE.float16],
  ['bfloat16_head', HALF_TOLERANCE.bfloat16],
  ['bfloat16_head_decomposed', HALF_TOLERANCE.bfloat16],
] as const;
describe.skipIf(!HALF_FIXTURES.every(([m]) => existsSync(join(ROOT, m, 'info.json'))))(
  'torch.export float16 and bfloat16 weights match PyTorch',
  () => {
    for (const [name, tolerance] of HALF_FIXTURES) {
      it(name, async () => {
        const dir = join(ROOT, name);
        const info = JSON.parse(readFileSync(join(dir, 'info.json'), 'utf8')) as {
          inputs: [string, number[]][];
          outputs: number;
        };
        const r = await compile(readFileSync(join(dir, 'model.pt2')));
        const graph = printFunc(r.graph);
        expect(graph).toMatch(name.startsWith('half') ? /float16\[/ : /bfloat16\[/);
        const errs = await matchesPyTorch(r.artifact, dir, info, tolerance);
        console.log(`${name}: max abs error ${errs.map((e) => e.toExponential(2)).join(', ')}`);
      });
    }
  },
);

// torch.export.Dim dims stay symbolic (range_constraints become the dims' ranges); the graph imported once is bound
// to each size the fixture was run at (specializeGraph), compiled, and matched against PyTorch at that size.
const DYNAMIC = ['dynamic_cnn', 'dynamic_cnn_decomposed', 'dynamic_block', 'dynamic_block_decomposed'];
describe.skipIf(!DYNAMIC.every((m) => existsSync(join(ROOT, m, 'info.json'))))(
  'torch.export dynamic shapes: one symbolic import, bound to several sizes',
  () => {
    for (const name of DYNAMIC) {
      it(name, async () => {
        const dir = join(ROOT, name);
        const info = JSON.parse(readFileSync(join(dir, 'info.json'), 'utf8')) as {
          inputs: [string, number[]][];
          outputs: number;
          symbols: Record<string, [number, number]>;
          sets: number[][][];
        };
        const graph = importAndOptimize(readFileSync(join(dir, 'model.pt2')));
        expect(Object.fromEntries(graph.dimRanges)).toEqual(info.symbols);
        const declared = graph.graph.params.map((p) => (p.type as { shape: (number | string)[] }).shape);
        expect(declared.flat().filter((d) => typeof d === 'string').length).toBeGreaterThan(0);
        const printed = printFunc(graph.graph);
        for (const symbol of Object.keys(info.symbols)) expect(printed).toContain(symbol);
        expect(info.sets.length).toBeGreaterThan(1);
        for (const [k, shapes] of info.sets.entries()) {
          // each input dim that is a symbol takes the size of that input at this set
          const values: Record<string, number> = {};
          declared.forEach((dims, i) =>
            dims.forEach((d, j) => {
              if (typeof d === 'string') values[d] = shapes[i][j];
            }),
          );
          const bound = specializeGraph(graph, values);
          expect(bound.graph.params.map((p) => (p.type as { shape: number[] }).shape)).toEqual(shapes);
          const r = await compileGraph(bound);
          const errs = await matchesPyTorch(r.artifact, join(dir, `set_${k}`), info);
          console.log(
            `${name} at ${JSON.stringify(values)}: max abs error ${errs.map((e) => e.toExponential(2)).join(', ')}`,
          );
        }
      });
    }
  },
);

const cli = join(process.cwd(), 'dist/cli/kiln.js');
describe.skipIf(!existsSync(cli))('kiln compile / inspect a .pt2', () => {
  it('compiles next to the model and prints the graph with ATen names', () => {
    const dir = tempDir('kiln-pt2-');
    const model = join(dir, 'tiny.pt2');
    writeFileSync(model, tinyArchive());
    const out = execFileSync('node', [cli, 'compile', model, '--no-tuning'], { encoding: 'utf8' });
    expect(out).toMatch(/input {2}x: float32\[2,3\]/);
    expect(existsSync(join(dir, 'tiny.kiln'))).toBe(true);
    const graph = execFileSync('node', [cli, 'inspect', model, '--level', 'graph'], { encoding: 'utf8' });
    expect(graph).toMatch(/\(aten\.relu\.default\)/);
  });
});
