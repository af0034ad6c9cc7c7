// The CUDA runtime path: load(artifact, { target: 'cuda' }).
// (a) Without a driver (no libcuda.so.1, no GPU) loading fails with E_NO_DEVICE naming what is missing.
// (b) The real executor (src/runtime/cuda.ts) runs end to end on a fake CUDA driver built on the PTX simulator:
//     module load parses the PTX, launches queue on the stream and simulate the grid over simulated device memory
//     when the stream is synchronized; outputs are compared with ONNX Runtime. Only the FFI binding is not covered.
// (b') The koffi binding itself (handles, u64 device pointers, kernelParams as pointers to u64 values, error names)
//     against a stand-in libcuda written in C (test/support/fake-libcuda.c), where a C compiler exists.
// (c) The same models on a real GPU through koffi + libcuda, skipped by name when no driver/device is present.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers/temp.js';
import koffi from 'koffi';
import { compile } from '../src/compiler/compile.js';
import { load as loadNode, KilnError } from '../src/index.js';
import { load as loadRuntime, type CudaDriver, type CudaDeviceInfo, type CudaHandle } from '../src/runtime/index.js';
import { cudaAvailable, openCudaDriver } from '../src/node/cuda-driver.js';
import { compareTensors } from '../src/conformance/compare.js';
import type { Tensor } from '../src/runtime/tensor.js';
import { GLOBAL_BASE, type PtxProgram, launch, parsePtx } from './support/ptx-sim.js';
import { runCudaSim } from './support/cuda-sim-runtime.js';
import { CudaExecutor } from '../src/runtime/cuda.js';
import { readArtifact } from '../src/runtime/artifact.js';
import { buildModel, randomF32, type ModelSpec } from '../src/frontend/onnx/model-builder.js';
import { runOrt } from './helpers/ort.js';
import { seqSoftmax, shapeChains } from './helpers/shape-chain-model.js';
import { bertFeeds, gpt2PastFeeds } from './helpers/transformer-feeds.js';

const hasCuda = await cudaAvailable();

const MODELS: { name: string; spec: ModelSpec; feeds: Record<string, Tensor> }[] = [
  {
    name: 'conv + relu',
    spec: {
      inputs: [['x', 'float32', [1, 3, 10, 10]]],
      outputs: [['y', 'float32', [1, 4, 10, 10]]],
      initializers: { w: randomF32([4, 3, 3, 3], 31), b: randomF32([4], 32) },
      nodes: [
        { op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['c'], attrs: { pads: [1, 1, 1, 1] } },
        { op: 'Relu', inputs: ['c'], outputs: ['y'] },
      ],
    },
    feeds: { x: randomF32([1, 3, 10, 10], 33) },
  },
  {
    name: 'matmul + softmax',
    spec: {
      inputs: [['a', 'float32', [2, 5, 16]]],
      outputs: [['y', 'float32', [2, 5, 12]]],
      initializers: { w: randomF32([16, 12], 34) },
      nodes: [
        { op: 'MatMul', inputs: ['a', 'w'], outputs: ['m'] },
        { op: 'Softmax', inputs: ['m'], outputs: ['y'], attrs: { axis: -1 } },
      ],
    },
    feeds: { a: randomF32([2, 5, 16], 35) },
  },
];

/**
 * A CUDA driver over the PTX simulator, strict where the real one is: handles must be ones it handed out, pointers
 * must lie in live allocations, launches are asynchronous (they run when the stream is synchronized, so reading
 * results before that fails), no dynamic shared memory is asked for and a block holds at most 1024 threads.
 */
class SimDriver implements CudaDriver {
  readonly log: string[] = [];
  readonly mem: Uint8Array;
  private top = 0;
  private readonly allocs = new Map<bigint, number>();
  private readonly modules = new Map<object, PtxProgram>();
  private readonly fns = new Map<object, { prog: PtxProgram; entry: string }>();
  private readonly streams = new Map<object, (() => void)[]>();
  contexts = 0;
  launches = 0;
  /** Blocks launched, over all launches. */
  blocks = 0;

  constructor(capacity = 1 << 24) {
    this.mem = new Uint8Array(capacity);
  }

  init(ordinal = 0): CudaDeviceInfo {
    this.log.push('init');
    if (ordinal !== 0) throw new Error(`no device ${ordinal}`);
    this.contexts++;
    return { name: 'PTX simulator', sm: 90, totalBytes: this.mem.length };
  }
  moduleLoadData(ptx: string): CudaHandle {
    this.log.push('moduleLoadData');
    const h = {};
    this.modules.set(h, parsePtx(ptx));
    return h;
  }
  moduleGetFunction(module: CudaHandle, name: string): CudaHandle {
    const prog = this.modules.get(module as object) ?? this.fail('moduleGetFunction: not a loaded module');
    if (!prog.entries.has(name)) this.fail(`moduleGetFunction: no entry ${name}`);
    const h = {};
    this.fns.set(h, { prog, entry: name });
    return h;
  }
  moduleUnload(module: CudaHandle): void {
    if (!this.modules.delete(module as object)) this.fail('moduleUnload: not a loaded module');
    this.log.push('moduleUnload');
  }
  memAlloc(bytes: number): bigint {
    this.log.push(`memAlloc ${bytes}`);
    const at = this.top;
    this.top = Math.ceil((at + bytes) / 256) * 256;
    if (this.top > this.mem.length) this.fail('memAlloc: out of simulated memory');
    const p = BigInt(GLOBAL_BASE + at);
    this.allocs.set(p, bytes);
    return p;
  }
  memFree(ptr: bigint): void {
    if (!this.allocs.delete(ptr)) this.fail('memFree: not an allocation');
    this.log.push('memFree');
  }
  /** Offset of [p, p + n) in `mem`, which must lie inside one live allocation. */
  private at(p: bigint, n: number): number {
    for (const [base, size] of this.allocs)
      if (p >= base && p + BigInt(n) <= base + BigInt(size)) return Number(p) - GLOBAL_BASE;
    return this.fail(`pointer 0x${p.toString(16)} (+${n}) is outside every allocation`);
  }
  memcpyHtoD(dst: bigint, src: Uint8Array): void {
    this.log.push(`HtoD ${src.byteLength}`);
    this.mem.set(src, this.at(dst, src.byteLength));
  }
  memcpyDtoH(dst: Uint8Array, src: bigint): void {
    for (const q of this.streams.values())
      if (q.length) this.fail('memcpyDtoH while launches are pending: synchronize the stream first');
    this.log.push(`DtoH ${dst.byteLength}`);
    const o = this.at(src, dst.byteLength);
    dst.set(this.mem.subarray(o, o + dst.byteLength));
  }
  streamCreate(): CudaHandle {
    this.log.push('streamCreate');
    const s = {};
    this.streams.set(s, []);
    return s;
  }
  streamDestroy(stream: CudaHandle): void {
    if (!this.streams.delete(stream as object)) this.fail('streamDestroy: not a stream');
    this.log.push('streamDestroy');
  }
  launchKernel(
    fn: CudaHandle,
    grid: readonly [number, number, number],
    block: readonly [number, number, number],
    dynamicSharedBytes: number,
    stream: CudaHandle,
    params: readonly bigint[],
  ): void {
    const f = this.fns.get(fn as object) ?? this.fail('launchKernel: not a function handle');
    const q = this.streams.get(stream as object) ?? this.fail('launchKernel: not a stream');
    const e = f.prog.entries.get(f.entry)!;
    if (grid.some((g) => g < 1) || block.some((b) => b < 1))
      this.fail(`launchKernel ${f.entry}: empty grid ${grid} / block ${block}`);
    if (block[0] * block[1] * block[2] > 1024)
      this.fail(`launchKernel ${f.entry}: block ${block} exceeds 1024 threads`);
    // (Kiln's entries declare their shared memory: asking for more, dynamic, would cost occupancy or fail)
    if (dynamicSharedBytes !== 0)
      this.fail(
        `launchKernel ${f.entry}: ${dynamicSharedBytes} bytes of dynamic shared memory (the entry declares its own)`,
      );
    if (params.length !== e.params.length)
      this.fail(`launchKernel ${f.entry}: ${params.length} parameters, the entry takes ${e.params.length}`);
    params.forEach((p) => this.at(p, 1));
    this.log.push(`launch ${f.entry}`);
    const spec = {
      entry: f.entry,
      grid: [...grid] as [number, number, number],
      block: [...block] as [number, number, number],
      params: new Map(e.params.map((n, i) => [n, params[i]])),
    };
    q.push(() => {
      launch(f.prog, spec, new DataView(this.mem.buffer));
      this.launches++;
      this.blocks += grid[0] * grid[1] * grid[2];
    });
  }
  streamSynchronize(stream: CudaHandle): void {
    const q = this.streams.get(stream as object) ?? this.fail('streamSynchronize: not a stream');
    this.log.push('streamSynchronize');
    for (const run of q.splice(0)) run();
  }
  /** Events around what is enqueued; the simulated GPU takes 10 us per launch. */
  timeOnStream(stream: CudaHandle, enqueue: () => void): number {
    const q = this.streams.get(stream as object) ?? this.fail('timeOnStream: not a stream');
    const before = this.launches;
    this.log.push('eventRecord');
    enqueue();
    this.log.push('eventRecord');
    for (const run of q.splice(0)) run();
    return (this.launches - before) * 0.01;
  }
  release(): void {
    this.log.push('release');
    this.contexts--;
  }
  /** Nothing left allocated, loaded or retained. */
  get clean(): boolean {
    return !this.allocs.size && !this.modules.size && !this.streams.size && this.contexts === 0;
  }
  private fail(msg: string): never {
    throw new Error(`SimDriver: ${msg}`);
  }
}

const expectClose = (got: Record<string, Tensor>, want: Record<string, Tensor>) => {
  for (const [name, w] of Object.entries(want)) expect(compareTensors(got[name], w)?.message, name).toBeUndefined();
};

describe.skipIf(hasCuda)('CUDA runtime path without a driver', () => {
  it("load(artifact, { target: 'cuda' }) rejects with E_NO_DEVICE naming libcuda", async () => {
    const c = await compile(buildModel(MODELS[0].spec), { target: 'cuda', sm: 80 });
    const err = await loadNode(c.artifact, { target: 'cuda' }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KilnError);
    expect((err as KilnError).code).toBe('E_NO_DEVICE');
    expect((err as KilnError).message).toMatch(/libcuda\.so\.1/);
    expect((err as KilnError).hint).toMatch(/NVIDIA driver/);
  });
  it('the runtime alone (no Node entry) asks for a driver binding', async () => {
    const c = await compile(buildModel(MODELS[0].spec), { target: 'cuda', sm: 80 });
    await expect(loadRuntime(c.artifact, { target: 'cuda' })).rejects.toMatchObject({ code: 'E_NO_DEVICE' });
  });
});

describe('CUDA executor on a simulated driver (PTX simulator) vs ONNX Runtime', () => {
  for (const m of MODELS) {
    it(m.name, async () => {
      const bytes = buildModel(m.spec);
      const c = await compile(bytes, { target: 'cuda', sm: 86 });
      const sec = c.header.cuda!;
      const drv = new SimDriver();
      const model = await loadRuntime(c.artifact, { target: 'cuda', cudaDriver: drv });
      // load: one module, one allocation of memoryBytes, the weights uploaded once, one stream
      expect(drv.log.slice(0, 3)).toEqual(['init', 'moduleLoadData', `memAlloc ${sec.memoryBytes}`]);
      expect(drv.log[3]).toMatch(/^HtoD \d+$/);
      expect(drv.log[4]).toBe('streamCreate');
      expect(drv.log.filter((l) => l.startsWith('memAlloc'))).toHaveLength(1);
      const loadLog = drv.log.length;
      const ref = await runOrt(bytes, m.feeds);
      for (let r = 0; r < 2; r++) {
        drv.log.length = loadLog;
        const out = await model.run(m.feeds);
        expectClose(out, ref);
        // run: inputs in, every entry launched in order, one synchronize, outputs out
        const entries = c.header.calls.flatMap((call) =>
          sec.kernels[call.kernel].launches.filter((l) => l.grid.every((g) => g > 0)).map((l) => `launch ${l.entry}`),
        );
        const run = drv.log.slice(loadLog);
        expect(run).toEqual([
          ...c.header.inputs.map((i) => `HtoD ${i.shape.reduce((a, b) => a * b, 1) * 4}`),
          ...entries,
          'streamSynchronize',
          ...c.header.outputs.map((o) => `DtoH ${o.shape.reduce((a, b) => a * b, 1) * 4}`),
        ]);
        expect(entries.length).toBeGreaterThan(0);
      }
      // the executor and the simulated runtime of test/support agree exactly
      const sim = await runCudaSim(c.artifact, m.feeds);
      const out = await model.run(m.feeds);
      for (const name of Object.keys(sim.outputs))
        expect(Array.from(out[name].data as Float32Array)).toEqual(Array.from(sim.outputs[name].data as Float32Array));
      expect(() => model.runSync(m.feeds)).toThrow(/runSync is not available on the CUDA target/);
      await expect(model.run({})).rejects.toMatchObject({ code: 'E_INPUT' });
      model.dispose();
      expect(drv.clean).toBe(true);
      await expect(model.run(m.feeds)).rejects.toMatchObject({ code: 'E_INPUT' });
    });
  }

  it('an artifact for a newer SM than the device is refused before loading', async () => {
    const c = await compile(buildModel(MODELS[1].spec), { target: 'cuda', sm: 90 });
    const drv = new SimDriver();
    drv.init = () => {
      drv.contexts++;
      return { name: 'sim sm_80', sm: 80 };
    };
    await expect(loadRuntime(c.artifact, { target: 'cuda', cudaDriver: drv })).rejects.toMatchObject({
      code: 'E_UNSUPPORTED',
      message: expect.stringMatching(/--sm 80/),
    });
    expect(drv.clean).toBe(true);
  });

  it("times the kernels on the GPU timeline: passes back to back, no copies (the tuner's measure)", async () => {
    const c = await compile(buildModel(MODELS[0].spec), { target: 'cuda', sm: 86 });
    const parts = await readArtifact(c.artifact);
    const drv = new SimDriver();
    const ex = await CudaExecutor.create(parts.header, parts.weights, drv);
    await ex.run(MODELS[0].feeds);
    const entries = c.header.calls.flatMap((call) =>
      c.header
        .cuda!.kernels[call.kernel].launches.filter((l) => l.grid.every((g) => g > 0))
        .map((l) => `launch ${l.entry}`),
    );
    drv.log.length = 0;
    expect(ex.timeKernels(3)).toBeCloseTo(entries.length * 0.01, 9);
    expect(drv.log).toEqual(['eventRecord', ...entries, ...entries, ...entries, 'eventRecord']);
    ex.dispose();
    // a driver without events: undefined (the tuner then times whole runs by the wall clock)
    const plain = new SimDriver();
    (plain as { timeOnStream?: unknown }).timeOnStream = undefined;
    const ex2 = await CudaExecutor.create(parts.header, parts.weights, plain);
    expect(ex2.timeKernels(1)).toBeUndefined();
    ex2.dispose();
    expect(drv.clean && plain.clean).toBe(true);
  });

  it('control flow: the control program branches and loops on values read back from device memory', async () => {
    // y = Loop(M, x): x <- tanh(x * w) + x, then If(sum(y) > 0): y * 2, else y - 1
    const branch = (op: string, k: number) => ({
      graph: {
        inputs: [],
        outputs: [['r', 'float32', [2, 3]]] as [string, 'float32', number[]][],
        nodes: [
          {
            op: 'Constant',
            inputs: [],
            outputs: ['k'],
            attrs: { value: { dtype: 'float32' as const, shape: [], data: new Float32Array([k]) } },
          },
          { op, inputs: ['y', 'k'], outputs: ['r'] },
        ],
      },
    });
    const spec: ModelSpec = {
      opset: 17,
      inputs: [
        ['x', 'float32', [2, 3]],
        ['M', 'int64', []],
      ],
      outputs: [['out', 'float32', [2, 3]]],
      initializers: { w: randomF32([2, 3], 31) },
      nodes: [
        {
          op: 'Loop',
          inputs: ['M', '', 'x'],
          outputs: ['y'],
          attrs: {
            body: {
              graph: {
                inputs: [
                  ['i', 'int64', []],
                  ['c', 'bool', []],
                  ['xc', 'float32', [2, 3]],
                ],
                outputs: [
                  ['c_out', 'bool', []],
                  ['xn', 'float32', [2, 3]],
                ],
                nodes: [
                  { op: 'Identity', inputs: ['c'], outputs: ['c_out'] },
                  { op: 'Mul', inputs: ['xc', 'w'], outputs: ['xw'] },
                  { op: 'Tanh', inputs: ['xw'], outputs: ['t'] },
                  { op: 'Add', inputs: ['t', 'xc'], outputs: ['xn'] },
                ],
              },
            },
          },
        },
        { op: 'ReduceSum', inputs: ['y'], outputs: ['s'], attrs: { keepdims: 0 } },
        {
          op: 'Constant',
          inputs: [],
          outputs: ['zero'],
          attrs: { value: { dtype: 'float32', shape: [], data: new Float32Array([0]) } },
        },
        { op: 'Greater', inputs: ['s', 'zero'], outputs: ['cond'] },
        {
          op: 'If',
          inputs: ['cond'],
          outputs: ['out'],
          attrs: { then_branch: branch('Mul', 2), else_branch: branch('Sub', 1) },
        },
      ],
    };
    const bytes = buildModel(spec);
    const c = await compile(bytes, { target: 'cuda', sm: 86 });
    expect(c.header.control?.length).toBeGreaterThan(0);
    const drv = new SimDriver();
    const model = await loadRuntime(c.artifact, { target: 'cuda', cudaDriver: drv });
    const x = randomF32([2, 3], 32);
    const neg = { ...x, data: (x.data as Float32Array).map((v) => -Math.abs(v) - 1) };
    for (const feeds of [
      { x, M: { dtype: 'int64', shape: [], data: new BigInt64Array([3n]) } },
      { x, M: { dtype: 'int64', shape: [], data: new BigInt64Array([0n]) } },
      { x: neg, M: { dtype: 'int64', shape: [], data: new BigInt64Array([1n]) } },
    ] as Record<string, Tensor>[])
      expectClose(await model.run(feeds), await runOrt(bytes, feeds));
    model.dispose();
    expect(drv.clean).toBe(true);
  });

  it('run-time sizes: one artifact for every batch and sequence length in range, each matching ONNX Runtime', async () => {
    const c = await compile(shapeChains, { target: 'cuda', sm: 86, dims: { batch: [1, 4], seq: [1, 16] } });
    expect(c.header.symbols?.map((s) => s.name)).toEqual(['batch', 'seq']);
    const drv = new SimDriver();
    const model = await loadRuntime(c.artifact, { target: 'cuda', cudaDriver: drv });
    // and a softmax along seq, a reduction over a run-time length
    const softmax = await compile(seqSoftmax, { target: 'cuda', sm: 86, dims: { batch: [1, 4], seq: [1, 16] } });
    const softmaxModel = await loadRuntime(softmax.artifact, { target: 'cuda', cudaDriver: drv });
    for (const [batch, seq] of [
      [1, 1],
      [3, 5],
      [4, 16],
    ]) {
      const feeds = { x: randomF32([batch, seq, 8], 5 + seq), y: randomF32([batch, seq, 4], 6 + batch) };
      for (const [m, bytes] of [
        [model, shapeChains],
        [softmaxModel, seqSoftmax],
      ] as const) {
        const got = await m.run(feeds);
        const want = await runOrt(bytes, feeds);
        expect(got.z.shape).toEqual(want.z.shape);
        expectClose({ z: got.z }, { z: want.z });
      }
    }
    softmaxModel.dispose();
    // grids sized from each run's sizes: far below the bounds, a fraction of the blocks the bounds take
    const wide = await compile(shapeChains, { target: 'cuda', sm: 86, dims: { batch: [1, 64], seq: [1, 16] } });
    const boundBlocks = wide.header.calls
      .flatMap((c) => wide.header.cuda!.kernels[c.kernel].launches)
      .reduce((n, l) => n + l.grid[0] * l.grid[1] * l.grid[2], 0);
    const wideModel = await loadRuntime(wide.artifact, { target: 'cuda', cudaDriver: drv });
    const feeds = { x: randomF32([2, 3, 8], 7), y: randomF32([2, 3, 4], 8) };
    const before = drv.blocks;
    const got = await wideModel.run(feeds);
    expectClose({ z: got.z }, { z: (await runOrt(shapeChains, feeds)).z });
    expect((drv.blocks - before) * 8).toBeLessThanOrEqual(boundBlocks);
    wideModel.dispose();
    await expect(model.run({ x: randomF32([5, 1, 8], 1), y: randomF32([5, 1, 4], 1) })).rejects.toMatchObject({
      code: 'E_INPUT',
      message: expect.stringMatching(/\(batch\) is 5, outside the range 1\.\.4/),
    });
    model.dispose();
    expect(drv.clean).toBe(true);
  });

  // the models of the dynamic-shapes tests (test/dynamic-kernels.test.ts), each compiled once with ranges, at small
  // sizes: a run's grids follow its sizes, so the simulator's time does too
  const dynamicModels: {
    name: string;
    dims: Record<string, [number, number]>;
    sizes: Record<string, Tensor>[];
  }[] = [
    {
      name: 'bert_dynamic',
      dims: { batch: [1, 2], sequence: [1, 8] },
      sizes: [bertFeeds(2, 3)],
    },
    {
      name: 'resnet18_dynamic',
      dims: { batch: [1, 2] },
      sizes: [{ input: randomF32([1, 3, 32, 32], 2) }],
    },
    {
      name: 'gpt2_past',
      dims: { batch: [1, 2], sequence: [1, 5], past: [0, 11], total: [1, 16] },
      sizes: [gpt2PastFeeds(1, 0, 3), gpt2PastFeeds(2, 3, 1)],
    },
  ];
  for (const { name, dims, sizes } of dynamicModels) {
    const path = `.cache/models/${name}/model.onnx`;
    it.skipIf(!existsSync(path))(
      `${name} with run-time sizes: one artifact at small sizes, like ONNX Runtime`,
      async () => {
        const bytes = readFileSync(path);
        const c = await compile(bytes, { target: 'cuda', sm: 86, dims });
        const drv = new SimDriver(1 << 26);
        const model = await loadRuntime(c.artifact, { target: 'cuda', cudaDriver: drv });
        for (const feeds of sizes) {
          const got = await model.run(feeds);
          const want = await runOrt(bytes, feeds);
          for (const o of Object.keys(want)) expect(got[o].shape, o).toEqual(want[o].shape);
          expectClose(got, want);
        }
        model.dispose();
        expect(drv.clean).toBe(true);
      },
    );
  }

  it('sizes counted from the data: NonZero and what follows it, NMS, Range, the counts read back from device memory', async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [4, 50]]],
      outputs: [
        ['nz', 'int64', [2, 'n']],
        ['vals', 'float32', ['n']],
      ],
      nodes: [
        { op: 'NonZero', inputs: ['x'], outputs: ['nz'] },
        { op: 'Transpose', inputs: ['nz'], outputs: ['t'] },
        { op: 'GatherND', inputs: ['x', 't'], outputs: ['vals'] },
      ],
    });
    const c = await compile(bytes, { target: 'cuda', sm: 86 });
    expect(c.header.symbols).toEqual([{ name: 'nonzero_0', min: 0, max: 200, counted: true }]);
    const drv = new SimDriver();
    const model = await loadRuntime(c.artifact, { target: 'cuda', cudaDriver: drv });
    for (const keep of [0, 0.4, 1]) {
      const x = randomF32([4, 50], 3);
      const data = (x.data as Float32Array).map((v, i) => ((i * 0.618) % 1 < keep ? v : 0));
      const feeds = { x: { ...x, data } };
      const got = await model.run(feeds);
      const want = await runOrt(bytes, feeds);
      expect(got.nz.shape).toEqual(want.nz.shape);
      expect(got.nz.data).toEqual(want.nz.data);
      expectClose({ vals: got.vals }, { vals: want.vals });
    }
    model.dispose();
    // NonMaxSuppression: its kept-box recurrence runs in order inside each (batch, class) thread
    const nms = buildModel({
      inputs: [
        ['boxes', 'float32', [1, 12, 4]],
        ['scores', 'float32', [1, 2, 12]],
      ],
      outputs: [['selected', 'int64', ['n', 3]]],
      nodes: [{ op: 'NonMaxSuppression', inputs: ['boxes', 'scores', 'max', 'iou'], outputs: ['selected'] }],
      initializers: {
        max: { dtype: 'int64', shape: [1], data: BigInt64Array.of(4n) },
        iou: { dtype: 'float32', shape: [1], data: Float32Array.of(0.2) },
      },
      opset: 11,
    });
    const nmsModel = await loadRuntime((await compile(nms, { target: 'cuda', sm: 86 })).artifact, {
      target: 'cuda',
      cudaDriver: drv,
    });
    const u = randomF32([1, 12, 4], 8).data as Float32Array;
    const boxes = u.map((v, i) => (i % 4 < 2 ? 2 * v : 2 * v + 2.5)); // [y1, x1] in [-2, 2), [y2, x2] in [0.5, 4.5)
    const feeds = { boxes: { dtype: 'float32', shape: [1, 12, 4], data: boxes }, scores: randomF32([1, 2, 12], 9) };
    const got = await nmsModel.run(feeds as Record<string, Tensor>);
    const want = await runOrt(nms, feeds as Record<string, Tensor>);
    expect(got.selected.shape).toEqual(want.selected.shape);
    expect(got.selected.shape[0]).toBeGreaterThan(2);
    expect(got.selected.data).toEqual(want.selected.data);
    nmsModel.dispose();
    // Range over a run-time limit, bounded by the user; a limit past the bound fails the run, not truncates it
    const range = buildModel({
      inputs: [['limit', 'int64', []]],
      outputs: [['y', 'float32', ['n']]],
      nodes: [
        { op: 'Range', inputs: ['zero', 'limit', 'two'], outputs: ['r'] },
        { op: 'Cast', inputs: ['r'], outputs: ['rf'], attrs: { to: 1 } },
        { op: 'Sqrt', inputs: ['rf'], outputs: ['y'] },
      ],
      initializers: {
        zero: { dtype: 'int64', shape: [], data: BigInt64Array.of(0n) },
        two: { dtype: 'int64', shape: [], data: BigInt64Array.of(2n) },
      },
    });
    const rangeModel = await loadRuntime(
      (await compile(range, { target: 'cuda', sm: 86, dims: { range_0: [0, 30] } })).artifact,
      { target: 'cuda', cudaDriver: drv },
    );
    for (const limit of [0, 9, 60]) {
      const feeds = { limit: { dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(limit)) } } as const;
      const got = await rangeModel.run(feeds as Record<string, Tensor>);
      const want = await runOrt(range, feeds as Record<string, Tensor>);
      expect(got.y.shape).toEqual(want.y.shape);
      expectClose({ y: got.y }, { y: want.y });
    }
    await expect(
      rangeModel.run({ limit: { dtype: 'int64', shape: [], data: BigInt64Array.of(62n) } }),
    ).rejects.toMatchObject({ code: 'E_INPUT', message: expect.stringMatching(/range_0.*longer than 30/) });
    rangeModel.dispose();
    expect(drv.clean).toBe(true);
  });

  it('a wasm-only artifact is refused with a hint to compile for cuda', async () => {
    const c = await compile(buildModel(MODELS[1].spec));
    await expect(loadRuntime(c.artifact, { target: 'cuda', cudaDriver: new SimDriver() })).rejects.toMatchObject({
      code: 'E_ARTIFACT',
      message: expect.stringMatching(/target 'cuda'/),
    });
  });
});

describe('CUDA runtime path on a GPU (koffi + libcuda.so.1)', () => {
  for (const m of MODELS) {
    it.skipIf(!hasCuda)(
      `on a CUDA GPU: ${m.name} matches ONNX Runtime (skipped: no CUDA driver or device here)`,
      async () => {
        const bytes = buildModel(m.spec);
        const c = await compile(bytes, { target: 'cuda', sm: 80 });
        const model = await loadNode(c.artifact, { target: 'cuda' });
        try {
          const ref = await runOrt(bytes, m.feeds);
          expectClose(await model.run(m.feeds), ref);
          expectClose(await model.run(m.feeds), ref);
        } finally {
          model.dispose();
        }
      },
    );
  }
});

const HAVE_CC = spawnSync('cc', ['--version']).status === 0;

describe.skipIf(!HAVE_CC)('CUDA driver binding (koffi) over a stand-in libcuda (C)', () => {
  it('passes handles, device pointers and kernel parameters through the FFI, and names driver errors', async () => {
    const lib = join(tempDir('kiln-fake-libcuda-'), 'libcuda.so');
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', lib, 'test/support/fake-libcuda.c']);
    const d = await openCudaDriver({ library: lib });
    expect(d.init()).toEqual({ name: 'Fake GPU', sm: 86, totalBytes: 2 ** 34 });
    expect(() => d.moduleLoadData('.version 8.0\n.entry other()')).toThrow(
      expect.objectContaining({ code: 'E_UNSUPPORTED' }),
    );
    const m = d.moduleLoadData('.version 8.0\n.entry add_one(.param .u64 a, .param .u64 b)');
    const fn = d.moduleGetFunction(m, 'add_one');
    expect(() => d.moduleGetFunction(m, 'missing')).toThrow(
      /cuModuleGetFunction\(missing\) failed \(CUDA_ERROR_NOT_FOUND: named symbol not found\)/,
    );
    const buf = d.memAlloc(512);
    const x = Float32Array.from({ length: 64 }, (_, i) => i * 0.5);
    d.memcpyHtoD(buf, new Uint8Array(x.buffer));
    const s = d.streamCreate();
    d.launchKernel(fn, [2, 1, 1], [32, 1, 1], 48, s, [buf, buf + 256n]);
    d.streamSynchronize(s);
    const y = new Float32Array(64);
    d.memcpyDtoH(new Uint8Array(y.buffer), buf + 256n);
    expect(Array.from(y)).toEqual(Array.from(x, (v) => v + 1));
    // GPU-timeline timing: events around what is enqueued (the stand-in counts 0.25 ms per launch), then freed
    expect(
      d.timeOnStream!(s, () => {
        for (let i = 0; i < 3; i++) d.launchKernel(fn, [2, 1, 1], [32, 1, 1], 48, s, [buf, buf + 256n]);
      }),
    ).toBe(0.75);
    const fake = koffi.load(lib);
    expect(fake.func('int fake_events(void)')()).toBe(0);
    const params = new BigUint64Array(2),
      dims = new Uint32Array(7),
      state = new Int32Array(3);
    fake.func('int fake_last_launch(void *params, void *dims)')(params, dims);
    expect([...params]).toEqual([buf, buf + 256n]);
    expect([...dims]).toEqual([2, 1, 1, 32, 1, 1, 48]);
    d.streamDestroy(s);
    d.memFree(buf);
    d.moduleUnload(m);
    d.release();
    fake.func('int fake_state(void *out)')(state);
    expect([...state]).toEqual([0, 0, 4]); // context released, nothing allocated, four launches
  });

  it('a library that cannot be opened is E_NO_DEVICE', async () => {
    await expect(openCudaDriver({ library: '/nonexistent/libcuda.so.1' })).rejects.toMatchObject({
      code: 'E_NO_DEVICE',
      message: expect.stringMatching(/no CUDA driver/),
    });
  });
});
