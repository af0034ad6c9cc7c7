// The CUDA PTX backend, verified without a GPU: every kernel emitted for the five models and for every ONNX node
// case that passes on the WebAssembly target is assembled by ptxas for sm_80, sm_86 and sm_90 (a kernel ptxas
// rejects fails the test), and the kernels' semantics are checked on the PTX simulator (test/support/ptx-sim.ts)
// against the node cases' expected outputs, ONNX Runtime on small handcrafted models, and the five models'
// architectures on small inputs.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { compile } from '../src/compiler/compile.js';
import { gpuPrimFunc } from '../src/compiler/cuda-program.js';
import { type SmTarget, SM_TARGETS, emitPtxModule } from '../src/codegen/ptx/codegen.js';
import { type PtxasResult, ptxasAvailable, runPtxasAsync, runPtxas } from '../src/codegen/ptx/ptxas.js';
import { decodeTensorProto } from '../src/frontend/onnx/tensor-proto.js';
import { decodeModel } from '../src/frontend/onnx/import.js';
import { compareTensors } from '../src/conformance/compare.js';
import type { Tensor } from '../src/runtime/tensor.js';
import { buffer, type PrimFunc, type Stmt } from '../src/schedule/loop-ir.js';
import { freshVar, int, sub, load } from '../src/tensor-expr/expr.js';
import { PtxSimError, parsePtx, launch, GLOBAL_BASE } from './support/ptx-sim.js';
import { runCudaSim } from './support/cuda-sim-runtime.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { runOrt } from './helpers/ort.js';

const HAVE_PTXAS = ptxasAvailable();
const NODE_DIR = '.cache/onnx-node';
/** Simulated instructions per node case; larger cases are assembled but not simulated (listed by name). */
const SIM_BUDGET = 3e7;
/** Node cases that must simulate and match (of the WebAssembly-passing list). Raise it; never lower it. */
const SIM_FLOOR = 1211;

const wasmPassing = readFileSync('test/data/wasm-passing-node-cases.txt', 'utf8')
  .split('\n')
  .filter((l) => l && !l.startsWith('#'));

/** PTX of several modules as one: the first module's directives, then every module's entries. */
function concatModules(texts: string[], sm: SmTarget): string {
  const body = texts.map((t) => t.slice(t.indexOf('.address_size 64') + '.address_size 64'.length));
  return `.version 8.0\n.target sm_${sm}\n.address_size 64\n${body.join('\n')}`;
}

async function assembleAll(bySm: Map<SmTarget, string[]>): Promise<Map<SmTarget, PtxasResult[]>> {
  const out = new Map<SmTarget, PtxasResult[]>();
  const jobs: (() => Promise<void>)[] = [];
  for (const [sm, texts] of bySm) {
    out.set(sm, []);
    // chunks of about 0.5 MB of PTX: one ptxas process each
    let chunk: string[] = [],
      size = 0;
    const flush = () => {
      const c = chunk;
      if (c.length)
        jobs.push(async () => {
          out.get(sm)!.push(await runPtxasAsync(concatModules(c, sm), sm));
        });
      chunk = [];
      size = 0;
    };
    for (const t of texts) {
      chunk.push(t);
      size += t.length;
      if (size > 5e5) flush();
    }
    flush();
  }
  // two at a time (two cores)
  const queue = [...jobs];
  const t0 = performance.now();
  await Promise.all(
    [0, 1].map(async () => {
      while (queue.length) await queue.shift()!();
    }),
  );
  console.log(`ptxas: ${jobs.length} modules in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return out;
}

const rejected = (rs: PtxasResult[]) =>
  rs.flatMap((r) =>
    r.ok ? [] : r.errors.length ? r.errors.map((e) => `${e.entry ?? '?'}: ${e.message}`) : [r.log.slice(0, 500)],
  );

function readCase(dir: string) {
  const bytes = readFileSync(join(dir, 'model.onnx'));
  const graph = decodeModel(bytes).graph!;
  const inits = new Set(graph.initializer.map((t) => t.name));
  const inputNames = graph.input.map((i) => i.name).filter((n) => !inits.has(n));
  const outputNames = graph.output.map((o) => o.name);
  const set = join(dir, 'test_data_set_0');
  const files = readdirSync(set).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const inputs = files.filter((f) => f.startsWith('input_')).map((f) => decodeTensorProto(readFileSync(join(set, f))));
  const expected = files
    .filter((f) => f.startsWith('output_'))
    .map((f) => decodeTensorProto(readFileSync(join(set, f))));
  const feeds: Record<string, Tensor> = {};
  inputNames.forEach((n, i) => {
    if (inputs[i]) feeds[n] = inputs[i];
  });
  return { bytes, feeds, outputNames, expected };
}

describe.skipIf(!HAVE_PTXAS || !existsSync(NODE_DIR))('PTX backend: ONNX node cases', () => {
  it('assembles every WebAssembly-passing node case for sm_80/86/90 and simulates them to the expected outputs', async () => {
    const bySm = new Map<SmTarget, string[]>(SM_TARGETS.map((s) => [s, []]));
    const compileErrors: string[] = [],
      mismatches: string[] = [],
      tooLarge: string[] = [];
    let simulated = 0,
      kernels = 0,
      launches = 0;
    for (const [i, name] of wasmPassing.entries()) {
      const dir = join(NODE_DIR, name);
      try {
        const { bytes, feeds, outputNames, expected } = readCase(dir);
        const c = await compile(bytes, {
          target: 'cuda',
          sm: 80,
          optimize: false,
          specialize: feeds,
          inputShapes: Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.shape])),
        });
        const prims = c.program.kernels.map(gpuPrimFunc);
        for (const sm of SM_TARGETS) bySm.get(sm)!.push(emitPtxModule(prims, { sm, prefix: `c${i}_` }).ptx);
        kernels += prims.length;
        launches += c.header.cuda!.kernels.reduce((a, k) => a + k.launches.length, 0);
        try {
          const run = await runCudaSim(
            c.artifact,
            Object.fromEntries(c.header.inputs.map((inp) => [inp.name, feeds[inp.name]])),
            SIM_BUDGET,
          );
          const bad = outputNames
            .map((o, j) => expected[j] && compareTensors(run.outputs[o], expected[j]))
            .find(Boolean);
          if (bad) mismatches.push(`${name}: ${bad.message}`);
          else simulated++;
        } catch (e) {
          if (e instanceof PtxSimError && /more than .* instructions/.test(e.message)) tooLarge.push(name);
          else mismatches.push(`${name}: ${(e as Error).message}`);
        }
      } catch (e) {
        compileErrors.push(`${name}: ${(e as Error).message}`);
      }
    }
    const results = await assembleAll(bySm);
    for (const sm of SM_TARGETS) {
      console.log(
        `ptxas sm_${sm}: ${kernels} kernels (${launches} entries) of ${wasmPassing.length} node cases in ${results.get(sm)!.length} modules, ${rejected(results.get(sm)!).length} rejected`,
      );
    }
    console.log(
      `simulated: ${simulated} node cases match; too large to simulate (${tooLarge.length}): ${tooLarge.join(', ')}`,
    );
    expect(compileErrors).toEqual([]);
    for (const sm of SM_TARGETS) expect(rejected(results.get(sm)!)).toEqual([]);
    expect(mismatches).toEqual([]);
    expect(simulated).toBeGreaterThanOrEqual(SIM_FLOOR);
  });
});

const MODELS = ['squeezenet1_1', 'super_resolution', 'mobilenet_v2', 'resnet18', 'bert'];

describe.skipIf(!HAVE_PTXAS || !existsSync('.cache/models'))('PTX backend: the five models', () => {
  it('assembles every kernel for sm_80/86/90 and reports resource usage', async () => {
    const bySm = new Map<SmTarget, string[]>(SM_TARGETS.map((s) => [s, []]));
    let kernels = 0;
    for (const [i, name] of MODELS.entries()) {
      const modelPath = join('.cache/models', name, 'model.onnx');
      const c = await compile(readFileSync(modelPath), { target: 'cuda', sm: 80, optimize: false, modelPath });
      expect(c.header.cuda!.kernels.length).toBe(c.header.kernels.length);
      const prims = c.program.kernels.map(gpuPrimFunc);
      kernels += prims.length;
      for (const sm of SM_TARGETS) bySm.get(sm)!.push(emitPtxModule(prims, { sm, prefix: `m${i}_` }).ptx);
    }
    const results = await assembleAll(bySm);
    for (const sm of SM_TARGETS) {
      const rs = results.get(sm)!;
      expect(rejected(rs)).toEqual([]);
      const res = rs.flatMap((r) => r.resources);
      const spills = res.filter((r) => r.spillStores || r.spillLoads);
      console.log(
        `ptxas sm_${sm}: ${kernels} kernels of the five models, ${res.length} entries, max ${Math.max(...res.map((r) => r.registers))} registers, ${spills.length} with spills`,
      );
      expect(res.length).toBeGreaterThan(kernels);
    }
  });
});

/**
 * The five models' architectures on small inputs (scripts/gen_models.py *_small: ResNet-18 and MobileNetV2 at
 * 32x32, SqueezeNet at 64x64, super-resolution at 24x24, the BERT encoder on 16 tokens): every kernel assembled
 * and the whole model simulated against ONNX Runtime's outputs.
 */
const SMALL_MODELS = MODELS.map((m) => `${m}_small`);

describe.skipIf(!existsSync('.cache/models/bert_small'))(
  'PTX backend: reduced-size models on the simulator vs ONNX Runtime',
  () => {
    for (const name of SMALL_MODELS) {
      it(name, async () => {
        const dir = join('.cache/models', name),
          modelPath = join(dir, 'model.onnx');
        const c = await compile(readFileSync(modelPath), { target: 'cuda', sm: 86, optimize: false, modelPath });
        if (HAVE_PTXAS) expect(rejected([runPtxas(c.header.cuda!.ptx, 86)])).toEqual([]);
        const set = join(dir, 'test_data_set_0'),
          files = readdirSync(set).sort();
        const inputs = files
          .filter((f) => f.startsWith('input_'))
          .map((f) => decodeTensorProto(readFileSync(join(set, f))));
        const expected = files
          .filter((f) => f.startsWith('output_'))
          .map((f) => decodeTensorProto(readFileSync(join(set, f))));
        const t0 = performance.now();
        const run = await runCudaSim(
          c.artifact,
          Object.fromEntries(c.header.inputs.map((inp, i) => [inp.name, inputs[i]])),
          5e9,
        );
        console.log(
          `${name}: ${c.header.cuda!.kernels.length} kernels simulated in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
        );
        c.header.outputs.forEach((o, i) =>
          expect(compareTensors(run.outputs[o.name], expected[i])?.message).toBeUndefined(),
        );
      }, 600_000);
    }
  },
);

/** Small models built here, simulated and compared with ONNX Runtime. */
const SMALL: {
  name: string;
  spec: Parameters<typeof buildModel>[0];
  feeds: Record<string, Tensor>;
  tiled?: boolean;
}[] = [
  {
    name: 'conv + bias + relu + maxpool',
    spec: {
      inputs: [['x', 'float32', [1, 3, 10, 10]]],
      outputs: [['y', 'float32', [1, 4, 4, 4]]],
      initializers: { w: randomF32([4, 3, 3, 3], 7), b: randomF32([4], 8) },
      nodes: [
        { op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['c'], attrs: { pads: [1, 1, 1, 1], strides: [1, 1] } },
        { op: 'Relu', inputs: ['c'], outputs: ['r'] },
        { op: 'MaxPool', inputs: ['r'], outputs: ['y'], attrs: { kernel_shape: [3, 3], strides: [2, 2] } },
      ],
    },
    feeds: { x: randomF32([1, 3, 10, 10], 1) },
  },
  {
    name: 'matmul + add + gelu (erf)',
    spec: {
      inputs: [['a', 'float32', [2, 5, 16]]],
      outputs: [['y', 'float32', [2, 5, 12]]],
      initializers: {
        w: randomF32([16, 12], 3),
        b: randomF32([12], 4),
        half: { dtype: 'float32', shape: [], data: new Float32Array([0.5]) },
        one: { dtype: 'float32', shape: [], data: new Float32Array([1]) },
        rs2: { dtype: 'float32', shape: [], data: new Float32Array([Math.SQRT1_2]) },
      },
      nodes: [
        { op: 'MatMul', inputs: ['a', 'w'], outputs: ['m'] },
        { op: 'Add', inputs: ['m', 'b'], outputs: ['h'] },
        { op: 'Mul', inputs: ['h', 'rs2'], outputs: ['hs'] },
        { op: 'Erf', inputs: ['hs'], outputs: ['e'] },
        { op: 'Add', inputs: ['e', 'one'], outputs: ['e1'] },
        { op: 'Mul', inputs: ['h', 'e1'], outputs: ['g'] },
        { op: 'Mul', inputs: ['g', 'half'], outputs: ['y'] },
      ],
    },
    feeds: { a: randomF32([2, 5, 16], 2) },
  },
  {
    name: 'softmax over the last axis',
    spec: {
      inputs: [['x', 'float32', [3, 4, 33]]],
      outputs: [['y', 'float32', [3, 4, 33]]],
      nodes: [{ op: 'Softmax', inputs: ['x'], outputs: ['y'], attrs: { axis: -1 } }],
    },
    feeds: { x: { ...randomF32([3, 4, 33], 5), data: randomF32([3, 4, 33], 5).data.map((v) => v * 8) } },
  },
  {
    name: 'layer normalization',
    spec: {
      inputs: [['x', 'float32', [2, 7, 24]]],
      outputs: [['y', 'float32', [2, 7, 24]]],
      initializers: { g: randomF32([24], 9), b: randomF32([24], 10) },
      nodes: [
        {
          op: 'LayerNormalization',
          inputs: ['x', 'g', 'b'],
          outputs: ['y'],
          attrs: { axis: -1, epsilon: { float: 1e-5 } },
        },
      ],
    },
    feeds: { x: randomF32([2, 7, 24], 6) },
  },
  {
    name: 'elementwise chain (sigmoid, tanh, exp, log, sqrt, div, pow)',
    spec: {
      inputs: [
        ['x', 'float32', [5, 37]],
        ['z', 'float32', [37]],
      ],
      outputs: [['y', 'float32', [5, 37]]],
      initializers: { two: { dtype: 'float32', shape: [], data: new Float32Array([2]) } },
      nodes: [
        { op: 'Sigmoid', inputs: ['x'], outputs: ['s'] },
        { op: 'Tanh', inputs: ['z'], outputs: ['t'] },
        { op: 'Mul', inputs: ['s', 't'], outputs: ['st'] },
        { op: 'Exp', inputs: ['st'], outputs: ['e'] },
        { op: 'Log', inputs: ['e'], outputs: ['l'] },
        { op: 'Abs', inputs: ['x'], outputs: ['ax'] },
        { op: 'Sqrt', inputs: ['ax'], outputs: ['q'] },
        { op: 'Pow', inputs: ['q', 'two'], outputs: ['q2'] },
        { op: 'Add', inputs: ['q2', 'e'], outputs: ['d0'] },
        { op: 'Div', inputs: ['l', 'd0'], outputs: ['y'] },
      ],
    },
    feeds: { x: randomF32([5, 37], 11), z: randomF32([37], 12) },
  },
  {
    name: 'squeezenet-like block (conv, relu, concat, global average pool, softmax)',
    spec: {
      inputs: [['x', 'float32', [1, 3, 12, 12]]],
      outputs: [['y', 'float32', [1, 8]]],
      initializers: {
        w0: randomF32([4, 3, 3, 3], 21),
        w1: randomF32([4, 4, 1, 1], 22),
        w2: randomF32([4, 4, 3, 3], 23),
        b0: randomF32([4], 24),
      },
      nodes: [
        { op: 'Conv', inputs: ['x', 'w0', 'b0'], outputs: ['c0'], attrs: { strides: [2, 2] } },
        { op: 'Relu', inputs: ['c0'], outputs: ['r0'] },
        { op: 'Conv', inputs: ['r0', 'w1'], outputs: ['c1'] },
        { op: 'Conv', inputs: ['r0', 'w2'], outputs: ['c2'], attrs: { pads: [1, 1, 1, 1] } },
        { op: 'Concat', inputs: ['c1', 'c2'], outputs: ['cat'], attrs: { axis: 1 } },
        { op: 'Relu', inputs: ['cat'], outputs: ['r1'] },
        { op: 'GlobalAveragePool', inputs: ['r1'], outputs: ['gp'] },
        { op: 'Flatten', inputs: ['gp'], outputs: ['f'] },
        { op: 'Softmax', inputs: ['f'], outputs: ['y'] },
      ],
    },
    feeds: { x: randomF32([1, 3, 12, 12], 25) },
  },
  // the default GPU schedules' shared-memory tiles (matmul, conv) and workgroup tree reductions
  {
    name: 'tiled matmul 100x70x50 + bias + relu (shared memory, register tiles, non-dividing)',
    spec: {
      inputs: [['a', 'float32', [100, 70]]],
      outputs: [['y', 'float32', [100, 50]]],
      initializers: { w: randomF32([70, 50], 31), b: randomF32([50], 32) },
      nodes: [
        { op: 'MatMul', inputs: ['a', 'w'], outputs: ['m'] },
        { op: 'Add', inputs: ['m', 'b'], outputs: ['s'] },
        { op: 'Relu', inputs: ['s'], outputs: ['y'] },
      ],
    },
    feeds: { a: randomF32([100, 70], 33) },
    tiled: true,
  },
  {
    name: 'tiled strided, padded conv with bias',
    spec: {
      inputs: [['x', 'float32', [1, 16, 20, 20]]],
      outputs: [['y', 'float32', [1, 32, 10, 10]]],
      initializers: { w: randomF32([32, 16, 3, 3], 34), b: randomF32([32], 35) },
      nodes: [
        {
          op: 'Conv',
          inputs: ['x', 'w', 'b'],
          outputs: ['y'],
          attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] },
        },
      ],
    },
    feeds: { x: randomF32([1, 16, 20, 20], 36) },
    tiled: true,
  },
  {
    name: 'tree reductions: softmax 6x300, layer normalization over 200, reduce sum/max, global average pool',
    spec: {
      inputs: [
        ['x', 'float32', [6, 300]],
        ['z', 'float32', [2, 7, 200]],
        ['p', 'float32', [2, 8, 15, 15]],
      ],
      outputs: [
        ['y', 'float32', [6, 300]],
        ['ln', 'float32', [2, 7, 200]],
        ['s', 'float32', [2, 1, 1, 15]],
        ['g', 'float32', [2, 8, 1, 1]],
        ['mx', 'float32', [2, 8]],
      ],
      initializers: {
        gam: randomF32([200], 37),
        bet: randomF32([200], 38),
        ax: { dtype: 'int64', shape: [2], data: BigInt64Array.from([1n, 2n]) },
      },
      nodes: [
        { op: 'Softmax', inputs: ['x'], outputs: ['y'], attrs: { axis: -1 } },
        {
          op: 'LayerNormalization',
          inputs: ['z', 'gam', 'bet'],
          outputs: ['ln'],
          attrs: { axis: -1, epsilon: { float: 1e-5 } },
        },
        { op: 'ReduceSum', inputs: ['p', 'ax'], outputs: ['s'], attrs: { keepdims: 1 } },
        { op: 'GlobalAveragePool', inputs: ['p'], outputs: ['g'] },
        { op: 'ReduceMax', inputs: ['p'], outputs: ['mx'], attrs: { axes: [2, 3], keepdims: 0 } },
      ],
    },
    feeds: {
      x: { ...randomF32([6, 300], 39), data: randomF32([6, 300], 39).data.map((v) => v * 10) },
      z: randomF32([2, 7, 200], 40),
      p: randomF32([2, 8, 15, 15], 41),
    },
    tiled: true,
  },
  {
    name: 'integer tree reductions: argmax over 300, int64 sum and min over 100',
    spec: {
      inputs: [
        ['x', 'float32', [4, 300]],
        ['xi', 'int64', [2, 100]],
      ],
      outputs: [
        ['am', 'int64', [4]],
        ['si', 'int64', [2]],
        ['mi', 'int64', [2]],
      ],
      initializers: { ax1: { dtype: 'int64', shape: [1], data: BigInt64Array.from([1n]) } },
      nodes: [
        { op: 'ArgMax', inputs: ['x'], outputs: ['am'], attrs: { axis: 1, keepdims: 0 } },
        { op: 'ReduceSum', inputs: ['xi', 'ax1'], outputs: ['si'], attrs: { keepdims: 0 } },
        { op: 'ReduceMin', inputs: ['xi'], outputs: ['mi'], attrs: { axes: [1], keepdims: 0 } },
      ],
    },
    feeds: {
      x: randomF32([4, 300], 42),
      xi: {
        dtype: 'int64',
        shape: [2, 100],
        data: BigInt64Array.from({ length: 200 }, (_, i) => BigInt(((i * 7919) % 201) - 100) * 10_000_000_000n),
      },
    },
    tiled: true,
  },
];

describe('PTX backend: small models on the simulator vs ONNX Runtime', () => {
  for (const m of SMALL) {
    it(m.name, async () => {
      const bytes = buildModel(m.spec);
      const c = await compile(bytes, { target: 'cuda', sm: 86, optimize: false });
      if (HAVE_PTXAS) expect(rejected([runPtxas(c.header.cuda!.ptx, 86)])).toEqual([]);
      if (m.tiled) {
        // shared memory and barriers: every launch that uses them declares its shared bytes
        expect(c.header.cuda!.ptx).toMatch(/bar\.sync 0/);
        expect(c.header.cuda!.ptx).toMatch(/ld\.shared\.f32/);
        if (/matmul/.test(m.name))
          expect(c.header.cuda!.ptx).toMatch(/ld\.global\.v4\.f32 \{%f\d+, %f\d+, %f\d+, %f\d+\}/); // vectorized fetch
        expect(c.header.cuda!.kernels.flatMap((k) => k.launches).some((l) => l.sharedBytes > 0)).toBe(true);
      }
      const sim = await runCudaSim(c.artifact, m.feeds);
      const ref = await runOrt(bytes, m.feeds);
      for (const [name, want] of Object.entries(ref))
        expect(compareTensors(sim.outputs[name], want)?.message).toBeUndefined();
    });
  }
});

/** A hand-written loop-IR kernel with shared memory and a barrier: out[b*N + i] = in[b*N + (N-1-i)] through shared. */
function reverseKernel(n: number, blocks: number): PrimFunc {
  const inp = buffer('in0', 'float32', n * blocks),
    out = buffer('out0', 'float32', n * blocks),
    sh = buffer('tile', 'float32', n, 'shared');
  const b = freshVar('b'),
    t = freshVar('t');
  const g = (i: ReturnType<typeof int>) =>
    ({
      k: 'bin',
      op: 'add',
      a: { k: 'bin', op: 'mul', a: b, b: int(n), dtype: 'int32' },
      b: i,
      dtype: 'int32',
    }) as const;
  const body: Stmt = {
    k: 'for',
    v: b,
    extent: blocks,
    kind: 'blockIdx.x',
    body: {
      k: 'alloc',
      buf: sh,
      body: {
        k: 'for',
        v: t,
        extent: n,
        kind: 'threadIdx.x',
        body: {
          k: 'seq',
          body: [
            { k: 'store', buf: sh, index: t, value: load(inp, [g(t)]) },
            { k: 'barrier' },
            { k: 'store', buf: out, index: g(t), value: load(sh, [sub(n - 1, t)]) },
          ],
        },
      },
    },
  };
  return { name: 'rev', inputs: [inp], outputs: [out], temps: [], body };
}

describe('PTX backend: shared memory, barriers and the simulator subset', () => {
  it('a shared-memory kernel with bar.sync assembles and runs in lockstep phases', () => {
    const n = 64,
      blocks = 3;
    const mod = emitPtxModule([reverseKernel(n, blocks)], { sm: 90 });
    expect(mod.ptx).toContain('bar.sync 0');
    expect(mod.ptx).toContain('.shared');
    const l = mod.kernels[0].launches[0];
    expect(l).toMatchObject({ grid: [blocks, 1, 1], block: [n, 1, 1], sharedBytes: n * 4 });
    if (HAVE_PTXAS) {
      const r = runPtxas(mod.ptx, 90);
      expect(rejected([r])).toEqual([]);
      expect(r.resources[0].sharedBytes).toBe(n * 4);
    }
    const mem = new DataView(new ArrayBuffer(2 * n * blocks * 4));
    for (let i = 0; i < n * blocks; i++) mem.setFloat32(i * 4, i, true);
    const params = new Map([
      [`${l.entry}_in0`, BigInt(GLOBAL_BASE)],
      [`${l.entry}_out0`, BigInt(GLOBAL_BASE + n * blocks * 4)],
    ]);
    launch(parsePtx(mod.ptx), { entry: l.entry, grid: l.grid, block: l.block, params }, mem);
    for (let bi = 0; bi < blocks; bi++)
      for (let i = 0; i < n; i++) {
        expect(mem.getFloat32((n * blocks + bi * n + i) * 4, true)).toBe(bi * n + (n - 1 - i));
      }
  });

  it('an instruction outside the subset is an explicit failure', () => {
    const ptx =
      '.version 8.0\n.target sm_80\n.address_size 64\n.visible .entry k(\n\t.param .u64 k_p\n)\n{\n\t.reg .b32 %r<2>;\n\tpopc.b32 %r1, %r0;\n\tret;\n}\n';
    expect(() => parsePtx(ptx)).toThrow(/outside the simulated subset/);
    expect(() => parsePtx(ptx.replace('popc.b32 %r1, %r0', 'add.sat.s32 %r1, %r0, %r0'))).toThrow(PtxSimError);
  });

  it('a barrier some threads of a block skip is reported', () => {
    const ptx = `.version 8.0\n.target sm_80\n.address_size 64\n.visible .entry k(\n\t.param .u64 k_p\n)\n{\n\t.reg .pred %p<1>;\n\t.reg .b32 %r<1>;\n\tmov.u32 %r0, %tid.x;\n\tsetp.eq.s32 %p0, %r0, 0;\n\t@%p0 bra $L_end;\n\tbar.sync 0;\n$L_end:\n\tret;\n}\n`;
    expect(() =>
      launch(
        parsePtx(ptx),
        { entry: 'k', grid: [1, 1, 1], block: [4, 1, 1], params: new Map() },
        new DataView(new ArrayBuffer(0)),
      ),
    ).toThrow(/barrier divergence/);
  });

  it('an out-of-bounds global access faults', () => {
    const mod = emitPtxModule([reverseKernel(8, 1)], { sm: 80 });
    const l = mod.kernels[0].launches[0];
    const params = new Map([
      [`${l.entry}_in0`, BigInt(GLOBAL_BASE)],
      [`${l.entry}_out0`, BigInt(GLOBAL_BASE + 32)],
    ]);
    expect(() =>
      launch(
        parsePtx(mod.ptx),
        { entry: l.entry, grid: l.grid, block: l.block, params },
        new DataView(new ArrayBuffer(40)),
      ),
    ).toThrow(/out of bounds/);
  });
});
