// TorchScript .pt import (src/frontend/pytorch/torchscript): a hand-built archive (a pickle written opcode by
// opcode, a strided weight, serialized code) and the ways it can be wrong, which need no fixtures; then the models
// scripts/gen_pytorch_models.py saves with torch.jit.trace / torch.jit.script (ts_*: a small CNN, a tiny GPT,
// ResNet-18 and MobileNetV2 at 32x32, a transformers BERT encoder, static scripted control flow), compiled and run, compared
// with PyTorch's own outputs within rtol 1e-3 / atol 1e-4, on WebAssembly and (four of them) WebGPU.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { strToU8, zipSync } from 'fflate';
import { KilnError, compile, load } from '../src/index.js';
import { compareTensors } from '../src/conformance/compare.js';
import { nodeGpuDevice } from '../src/conformance/node-webgpu.js';
import { readNpy } from '../src/cli/tensor-files.js';
import { printFunc } from '../src/relay-ir/printer.js';
import { importTorchScript } from '../src/frontend/pytorch/torchscript/import.js';
import { unpickle } from '../src/frontend/pytorch/pickle.js';
import { parseCodeFile } from '../src/frontend/pytorch/torchscript/parse.js';
import { tempDir } from './helpers/temp.js';
import { kilnError } from './helpers/errors.js';
import { HALF_TOLERANCE, matchesPyTorch } from './helpers/pytorch-fixtures.js';

/** Pickle opcodes, written as torch.jit.save writes them (protocol 2). */
const P = {
  proto: [0x80, 2],
  global: (mod: string, name: string) => [0x63, ...strToU8(`${mod}\n${name}\n`)],
  str: (s: string) => {
    const b = strToU8(s);
    return [0x58, b.length, 0, 0, 0, ...b];
  },
  int: (n: number) => [0x4b, n],
  mark: [0x28],
  tuple: [0x74],
  emptyTuple: [0x29],
  emptyDict: [0x7d],
  newobj: [0x81],
  build: [0x62],
  setitems: [0x75],
  persid: [0x51],
  reduce: [0x52],
  newFalse: [0x89],
  stop: [0x2e],
};

/**
 * The module object of class __torch__.M with attribute w: a [3]-tensor with stride 2 and offset 1 into the
 * 7-element float storage data/0 (so w = [1, 3, 5] of storage [0..6]).
 */
function modulePickle(global: number[] = P.global('torch._utils', '_rebuild_tensor_v2')): Uint8Array {
  return new Uint8Array([
    ...P.proto,
    ...P.global('__torch__', 'M'),
    ...P.emptyTuple,
    ...P.newobj,
    ...P.emptyDict,
    ...P.mark,
    ...P.str('w'),
    ...global,
    ...P.mark,
    ...[...P.mark, ...P.str('storage'), ...P.global('torch', 'FloatStorage'), ...P.str('0'), ...P.str('cpu')],
    ...[...P.int(7), ...P.tuple, ...P.persid],
    ...P.int(1),
    ...[...P.mark, ...P.int(3), ...P.tuple],
    ...[...P.mark, ...P.int(2), ...P.tuple],
    ...P.newFalse,
    ...[...P.global('collections', 'OrderedDict'), ...P.emptyTuple, ...P.reduce],
    ...P.tuple,
    ...P.reduce,
    ...P.setitems,
    ...P.build,
    ...P.stop,
  ]);
}

const CODE = `class M(Module):
  __parameters__ = ["w", ]
  __buffers__ = []
  w : Tensor
  training : bool
  def forward(self: __torch__.M,
    x: Tensor) -> Tensor:
    w = self.w
    y = torch.relu(torch.add(x, w))
    n = ops.prim.NumToTensor(torch.size(x, 0))
    for i in range(int(n)):
      y = torch.mul(y, 2)
    return y
`;

function tinyFiles(code = CODE, pickle = modulePickle()): Record<string, Uint8Array> {
  return {
    'm/data.pkl': pickle,
    'm/code/__torch__.py': strToU8(code),
    'm/constants.pkl': new Uint8Array([...P.proto, ...P.emptyTuple, ...P.stop]),
    'm/data/0': new Uint8Array(new Float32Array([0, 1, 2, 3, 4, 5, 6]).buffer),
    'm/.data/version': strToU8('3\n'),
    'm/byteorder': strToU8('little'),
  };
}
const tinyArchive = (code?: string, pickle?: Uint8Array) => zipSync(tinyFiles(code, pickle));

describe('TorchScript .pt reader', () => {
  it('reads the pickle, the strided weight and the code, and runs the loop it unrolls', async () => {
    const r = await compile(tinyArchive(), { inputShapes: { x: [2, 3] } });
    const m = await load(r.artifact);
    const x = { dtype: 'float32' as const, shape: [2, 3], data: new Float32Array([-2, 0, 1, -6, 2, -5]) };
    const y = m.runSync({ x }).output;
    // relu(x + [1, 3, 5]) * 2 * 2 (the loop runs size(x, 0) = 2 times)
    expect([...y.data]).toEqual([0, 12, 24, 0, 20, 0]);
    m.dispose();
  });

  it('names the ATen op and the module line of every graph node', () => {
    const g = printFunc(importTorchScript(tinyArchive(), { inputShapes: { x: [2, 3] } }).func);
    expect(g).toMatch(/add\(%x, @c0:float32\[3\]\).*# forward:9 \(aten\.add\.Tensor\)/);
    expect(g).toMatch(/# forward:12 \(aten\.mul\.Scalar\)/);
    expect(g.match(/= mul\(/g)).toHaveLength(2);
  });

  it('detects the format from the entries; asks for the shapes and types a scripted program does not record', async () => {
    const e = await kilnError(() => compile(tinyArchive()));
    expect([e.code, e.message, e.hint]).toEqual([
      'E_INPUT',
      expect.stringMatching(/input 'x' has no recorded shape/),
      expect.stringMatching(/--input-shape x=.*--input-dtype x=int64.*inputDTypes/),
    ]);
    const typed = importTorchScript(tinyArchive(), { inputShapes: { x: [2, 3] }, inputDTypes: { x: 'float64' } });
    expect(typed.func.params[0].type).toMatchObject({ dtype: 'float64', shape: [2, 3] });
    const wrongType = await kilnError(() =>
      compile(tinyArchive(), { inputShapes: { x: [2, 3] }, inputDTypes: { y: 'int64' } }),
    );
    expect([wrongType.code, wrongType.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/inputDTypes names 'y', the model's inputs are 'x'/),
    ]);
    const wrong = await kilnError(() => compile(tinyArchive(), { inputShapes: { y: [2, 3] } }));
    expect([wrong.code, wrong.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/inputShapes names 'y', the model's inputs are 'x'/),
    ]);
  });

  it('reads a per-tensor quantized tensor with its scale and zero point; refuses other schemes by name', () => {
    const float = (v: number) => {
      const b = new DataView(new ArrayBuffer(8));
      b.setFloat64(0, v); // BINFLOAT is big-endian
      return [0x47, ...new Uint8Array(b.buffer)];
    };
    const qtensor = (scheme: string) =>
      new Uint8Array([
        ...P.proto,
        ...P.global('torch._utils', '_rebuild_qtensor'),
        ...P.mark,
        ...[...P.mark, ...P.str('storage'), ...P.global('torch', 'QInt8Storage'), ...P.str('0'), ...P.str('cpu')],
        ...[...P.int(4), ...P.tuple, ...P.persid],
        ...P.int(0),
        ...[...P.mark, ...P.int(4), ...P.tuple],
        ...[...P.mark, ...P.int(1), ...P.tuple],
        ...[...P.mark, ...P.global('torch', scheme), ...float(0.05), ...P.int(3), ...P.tuple],
        ...P.newFalse,
        ...[...P.global('collections', 'OrderedDict'), ...P.emptyTuple, ...P.reduce],
        ...P.tuple,
        ...P.reduce,
        ...P.stop,
      ]);
    expect(unpickle(qtensor('per_tensor_affine'), 'data.pkl')).toMatchObject({
      storageType: 'QInt8Storage',
      sizes: [4],
      quantized: { scale: 0.05, zeroPoint: 3 },
    });
    const e = (() => {
      try {
        unpickle(qtensor('per_channel_affine'), 'data.pkl');
      } catch (err) {
        return err as { code: string; message: string };
      }
    })();
    expect([e?.code, e?.message]).toEqual([
      'E_UNSUPPORTED',
      expect.stringMatching(/per_channel_affine quantized tensor/),
    ]);
  });

  it('rejects a truncated archive and a truncated pickle', async () => {
    const bytes = tinyArchive();
    const cut = await kilnError(() => compile(bytes.slice(0, bytes.length - 40), { format: 'torchscript' }));
    expect(cut.code).toBe('E_MODEL_DECODE');
    const pkl = modulePickle();
    const short = await kilnError(() => compile(tinyArchive(CODE, pkl.slice(0, 60)), { inputShapes: { x: [2, 3] } }));
    expect([short.code, short.message]).toEqual([
      'E_MODEL_DECODE',
      expect.stringMatching(/data\.pkl ends in the middle/),
    ]);
  });

  it('never runs a global outside the subset: it names it', async () => {
    const evil = modulePickle(P.global('os', 'system'));
    const e = await kilnError(() => compile(tinyArchive(CODE, evil), { inputShapes: { x: [2, 3] } }));
    expect([e.code, e.message]).toEqual([
      'E_UNSUPPORTED',
      expect.stringMatching(/references the Python global 'os\.system'/),
    ]);
    // the same for any non-module class
    expect(() => unpickle(new Uint8Array([...P.proto, ...P.global('builtins', 'eval'), ...P.stop]), 'x.pkl')).toThrow(
      /builtins\.eval/,
    );
  });

  it('lists every unsupported operator at once, with counts', async () => {
    const code = CODE.replace(
      '    return y\n',
      '    z = torch.frobnicate(y)\n    return ops.aten.zorg(torch.frobnicate(z), ops.prim.Mystery(z))\n',
    );
    const e = await kilnError(() => compile(tinyArchive(code), { inputShapes: { x: [2, 3] } }));
    expect(e.code).toBe('E_UNSUPPORTED_OP');
    expect(e.message).toMatch(
      /3 operators are not supported: aten\.frobnicate \(2 calls\), aten\.zorg \(1 call\), prim\.Mystery \(1 call\)/,
    );
  });

  it('refuses control flow on tensor values, naming it', async () => {
    const code = CODE.replace(
      '    return y\n',
      '    if bool(torch.gt(torch.sum(y), 0)):\n      y = torch.neg(y)\n    return y\n',
    );
    const e = await kilnError(() => compile(tinyArchive(code), { inputShapes: { x: [2, 3] } }));
    expect([e.code, e.message]).toEqual([
      'E_UNSUPPORTED_OP',
      expect.stringMatching(/bool\(\) of a tensor \(aten::Bool\) at forward:13 depends on tensor values/),
    ]);
  });

  it('reports code it cannot parse with the file and line, and arguments no overload takes', async () => {
    const bad = await kilnError(() =>
      compile(tinyArchive(CODE.replace('w = self.w', 'w = self.w)')), { inputShapes: { x: [2, 3] } }),
    );
    expect([bad.code, bad.message]).toEqual([
      'E_MODEL_DECODE',
      expect.stringMatching(/code\/__torch__\.py:8: expected the end of the statement/),
    ]);
    const args = await kilnError(() =>
      compile(tinyArchive(CODE.replace('torch.relu(torch.add(x, w))', 'torch.relu(x, "no")')), {
        inputShapes: { x: [2, 3] },
      }),
    );
    expect([args.code, args.message]).toEqual([
      'E_UNSUPPORTED',
      expect.stringMatching(/no overload of aten::relu takes \(Tensor, str\)/),
    ]);
  });

  it('mutated pickles and code: an import succeeds or throws a KilnError, never anything else', () => {
    // a seeded xorshift: the same cases on every run
    let seed = 0x2545f491;
    const rand = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const pickle = modulePickle();
    const code = strToU8(CODE);
    const counts = { ok: 0, kiln: 0 };
    for (let i = 0; i < 300; i++) {
      const p = pickle.slice();
      const c = code.slice();
      const target = i % 2 ? p : c;
      for (let k = 0; k <= rand(3); k++) target[rand(target.length)] = i % 2 ? rand(256) : 32 + rand(95);
      try {
        importTorchScript(zipSync({ ...tinyFiles(), 'm/data.pkl': p, 'm/code/__torch__.py': c }), {
          inputShapes: { x: [2, 3] },
        });
        counts.ok++;
      } catch (e) {
        if (!(e instanceof KilnError)) throw new Error(`case ${i}: ${(e as Error).stack}`);
        expect(e.code).not.toBe('E_INTERNAL');
        counts.kiln++;
      }
    }
    expect(counts.ok + counts.kiln).toBe(300);
    expect(counts.kiln).toBeGreaterThan(0);
  });

  it('parses the Python subset TorchScript prints', () => {
    const f = parseCodeFile(
      'import __torch__\nclass A(Module):\n  __annotations__["0"] = __torch__.B\n  n : Final[int] = 3\n  def f(self: __torch__.A, x: Tensor, k: float=2.) -> Tuple[Tensor, Tensor]:\n    a, b, = x[1:-1], (x if k > 1. and not k == 3 else None)\n    while a:\n      pass\n    return (a, b)\n',
      'a.py',
      '__torch__.a',
    );
    const a = f.classes.get('A')!;
    expect(a.qualName).toBe('__torch__.a.A');
    expect([...a.attrs.keys()]).toEqual(['0', 'n']);
    const m = a.methods.get('f')!;
    expect(m.params.map((p) => p.name)).toEqual(['self', 'x', 'k']);
    expect(m.body.map((s) => s.k)).toEqual(['assign', 'while', 'return']);
  });
});

// ---- saved models ---------------------------------------------------------------------------------------------------

const ROOT = '.cache/pytorch';
const MODELS = [
  'ts_small_cnn',
  'ts_tiny_gpt',
  'ts_resnet18',
  'ts_mobilenet_v2',
  'ts_efficientnet_b0',
  'ts_bert',
  'ts_scripted',
];
const present = [...MODELS, 'ts_data_dependent'].every((m) => existsSync(join(ROOT, m, 'info.json')));

interface Info {
  inputs: [string, number[]][];
  outputs: number;
  mode: 'trace' | 'script';
}
const readInfo = (name: string) => JSON.parse(readFileSync(join(ROOT, name, 'info.json'), 'utf8')) as Info;
// a scripted program records no input shapes: they are given; a traced one's come from the archive
const shapesFor = (info: Info) => (info.mode === 'script' ? { inputShapes: Object.fromEntries(info.inputs) } : {});

describe.skipIf(!present)('TorchScript models match PyTorch (fixtures: scripts/gen_pytorch_models.py ts_*)', () => {
  for (const name of MODELS) {
    it(name, async () => {
      const dir = join(ROOT, name);
      const info = readInfo(name);
      const t0 = performance.now();
      const r = await compile(readFileSync(join(dir, 'model.pt')), shapesFor(info));
      const errs = await matchesPyTorch(r.artifact, dir, info);
      console.log(
        `${name}: ${r.header.kernels.length} kernels, max abs error ${errs.map((e) => e.toExponential(2)).join(', ')}, ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
    });
  }

  // float16 storages and inputs; bfloat16 weights behind a cast (a few half ulps: HALF_TOLERANCE)
  for (const [name, tolerance] of [
    ['ts_half_cnn', HALF_TOLERANCE.float16],
    ['ts_bfloat16_head', HALF_TOLERANCE.bfloat16],
  ] as const) {
    it.skipIf(!existsSync(join(ROOT, name, 'info.json')))(name, async () => {
      const dir = join(ROOT, name);
      const r = await compile(readFileSync(join(dir, 'model.pt')));
      expect(printFunc(r.graph)).toMatch(name === 'ts_half_cnn' ? /%x: float16\[/ : /bfloat16\[/);
      const errs = await matchesPyTorch(r.artifact, dir, readInfo(name), tolerance);
      console.log(`${name}: max abs error ${errs.map((e) => e.toExponential(2)).join(', ')}`);
    });
  }

  // torch.ao.quantization's converted Linear: qint8/quint8 storages, quantize_per_tensor, quantized::linear with its
  // packed (weight, bias), dequantize; the QDQ values are PyTorch's own, so the default tolerance holds
  it.skipIf(!existsSync(join(ROOT, 'ts_quantized_linear', 'info.json')))('ts_quantized_linear', async () => {
    const dir = join(ROOT, 'ts_quantized_linear');
    const r = await compile(readFileSync(join(dir, 'model.pt')));
    const graph = printFunc(r.graph);
    expect(graph).toMatch(/= round\(.*\(aten\.quantize_per_tensor\.default\)/);
    expect(graph).toMatch(/= clip\(.*# fc\.forward/);
    const errs = await matchesPyTorch(r.artifact, dir, readInfo('ts_quantized_linear'));
    console.log(`ts_quantized_linear: max abs error ${errs.map((e) => e.toExponential(2)).join(', ')}`);
  });

  it('the same imports run on WebGPU (Dawn) and match PyTorch', async () => {
    const device = await nodeGpuDevice();
    for (const name of ['ts_small_cnn', 'ts_tiny_gpt', 'ts_bert', 'ts_scripted']) {
      const dir = join(ROOT, name);
      const info = readInfo(name);
      const r = await compile(readFileSync(join(dir, 'model.pt')), { ...shapesFor(info), target: 'webgpu' });
      const m = await load(r.artifact, { target: 'webgpu', device });
      const inputs = Object.fromEntries(
        info.inputs.map(([n], i) => [n, readNpy(readFileSync(join(dir, `input_${i}.npy`)), n)]),
      );
      const out = await m.run(inputs);
      expect(m.outputs).toHaveLength(info.outputs);
      m.outputs.forEach((o, i) => {
        const want = readNpy(readFileSync(join(dir, `output_${i}.npy`)), `output_${i}`);
        expect(compareTensors(out[o.name], want)?.message, `${name} ${o.name}`).toBeUndefined();
      });
      m.dispose();
    }
  });

  it('a scripted branch on tensor values is refused (E_UNSUPPORTED_OP)', async () => {
    const info = readInfo('ts_data_dependent');
    const e = await kilnError(() =>
      compile(readFileSync(join(ROOT, 'ts_data_dependent', 'model.pt')), shapesFor(info)),
    );
    expect([e.code, e.message]).toEqual([
      'E_UNSUPPORTED_OP',
      expect.stringMatching(/aten::Bool.*data-dependent control flow/),
    ]);
  });

  it('a traced program keeps its recorded element types; inputDTypes is for TorchScript only', async () => {
    const bytes = readFileSync(join(ROOT, 'ts_tiny_gpt', 'model.pt'));
    const ids = readInfo('ts_tiny_gpt').inputs[0][0];
    const e = await kilnError(() => compile(bytes, { inputDTypes: { [ids]: 'int32' } }));
    expect([e.code, e.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/is int32, the model was traced with int64/),
    ]);
    const pt2 = await kilnError(() =>
      compile(readFileSync(join(ROOT, 'small', 'model.pt2')), { inputDTypes: { x: 'float32' } }),
    );
    expect([pt2.code, pt2.message]).toEqual(['E_INPUT', expect.stringMatching(/a \.pt2 model records its inputs'/)]);
  });

  it('a truncated real archive fails cleanly', async () => {
    const bytes = readFileSync(join(ROOT, 'ts_small_cnn', 'model.pt'));
    for (const n of [100, bytes.length >> 1, bytes.length - 10]) {
      const e = await kilnError(() => compile(bytes.subarray(0, n), { format: 'torchscript' }));
      expect(e.code).toBe('E_MODEL_DECODE');
    }
  });
});

const cli = join(process.cwd(), 'dist/cli/kiln.js');
describe.skipIf(!existsSync(cli))('kiln compile / inspect a .pt', () => {
  it('compiles next to the model and prints the graph with ATen names', () => {
    const dir = tempDir('kiln-pt-');
    const model = join(dir, 'tiny.pt');
    writeFileSync(model, tinyArchive());
    const out = execFileSync('node', [cli, 'compile', model, '--input-shape', 'x=2,3', '--no-tuning'], {
      encoding: 'utf8',
    });
    expect(out).toMatch(/input {2}x: float32\[2,3\]/);
    expect(existsSync(join(dir, 'tiny.kiln'))).toBe(true);
    const args = ['inspect', model, '--level', 'graph', '--input-shape', 'x=2,3'];
    expect(execFileSync('node', [cli, ...args, '--input-dtype', 'x=float64'], { encoding: 'utf8' })).toMatch(
      /%x: float64\[2,3\]/,
    );
    const bad = spawnSync('node', [cli, ...args, '--input-dtype', 'x=double'], { encoding: 'utf8' });
    expect([bad.status, bad.stderr]).toEqual([expect.any(Number), expect.stringMatching(/E_USAGE.*--input-dtype/)]);
    expect(bad.status).not.toBe(0);
    const graph = execFileSync('node', [cli, 'inspect', model, '--level', 'graph', '--input-shape', 'x=2,3'], {
      encoding: 'utf8',
    });
    expect(graph).toMatch(/\(aten\.relu\.default\)/);
  });
});
