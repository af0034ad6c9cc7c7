// The model server's dynamic batcher on a real compiled model (a MatMul + Tanh with a static leading batch of 4,
// served in 'padded' mode) running on its worker thread: concurrent requests are stacked into one run() and split
// back, each request's result equal to ONNX Runtime's on that request's input alone; a burst of N requests runs
// as ceil(N / max_batch_size) batches; preferred sizes, no batching, the queue timeout, the queue limit and
// draining; the command answering its queue on SIGTERM before it exits; batches on native code. Also the
// configuration file (YAML) and flags.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compile } from '../src/index.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import type { Tensor } from '../src/runtime/tensor.js';
import { type BatchStats, DynamicBatcher } from '../src/serve/batcher.js';
import { MODEL_DEFAULTS, type ModelConfig, parseConfigFile } from '../src/serve/config.js';
import { ServedModel } from '../src/serve/model.js';
import { serveConfigFromFlags } from '../src/cli/serve.js';
import { findLlvm } from '../src/codegen/native/toolchain.js';
import { runOrt } from './helpers/ort.js';

const W = randomF32([8, 4], 3);
/** y = tanh(x @ W) with a leading batch of `n`. */
const mlp = (n: number | string) =>
  buildModel({
    inputs: [['x', 'float32', [n, 8]]],
    initializers: { w: W },
    outputs: [['y', 'float32', [n, 4]]],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w'], outputs: ['m'] },
      { op: 'Tanh', inputs: ['m'], outputs: ['y'] },
    ],
  });

let tmp: string;
let batch4: string;
let batch1: string;
let batchRange: string;
const opened: ServedModel[] = [];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'kiln-batcher-'));
  batch4 = join(tmp, 'mlp4.kiln');
  batch1 = join(tmp, 'mlp1.kiln');
  writeFileSync(batch4, (await compile(mlp(4))).artifact);
  writeFileSync(batch1, (await compile(mlp(1))).artifact);
  // one artifact for every batch in 1..4 (run-time sizes, test/dynamic-kernels.test.ts)
  batchRange = join(tmp, 'mlp-dynamic.kiln');
  writeFileSync(batchRange, (await compile(mlp('batch'), { dims: { batch: [1, 4] } })).artifact);
});
afterAll(() => {
  for (const m of opened) m.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

async function open(path: string, cfg: Partial<ModelConfig>): Promise<{ model: ServedModel; batches: BatchStats[] }> {
  const batches: BatchStats[] = [];
  const model = await ServedModel.open(
    { ...MODEL_DEFAULTS, name: 'mlp', path, ...cfg },
    () => {},
    (s) => batches.push(s),
  );
  opened.push(model);
  return { model, batches };
}

/** Request i: `rows` rows of distinct values. */
const input = (i: number, rows = 1): Tensor => randomF32([rows, 8], 100 + i);

async function expectOrt(x: Tensor, y: Tensor): Promise<void> {
  const ref = (await runOrt(mlp(x.shape[0]), { x })).y;
  expect(y.shape).toEqual(ref.shape);
  const got = y.data as Float32Array;
  const want = ref.data as Float32Array;
  for (let i = 0; i < want.length; i++)
    expect(Math.abs(got[i] - want[i])).toBeLessThan(1e-4 + 1e-3 * Math.abs(want[i]));
}

const infer = async (m: ServedModel, x: Tensor, timeoutMs?: number) => m.infer(m.check(new Map([['x', x]])), timeoutMs);

describe('dynamic batcher (padded mode, a static batch of 4)', () => {
  it('runs a burst of 10 requests as ceil(10/4) = 3 batches, each result equal to ONNX Runtime on its input', async () => {
    const { model, batches } = await open(batch4, { max_batch_size: 4, max_queue_delay_ms: 50 });
    expect(model.mode).toBe('padded');
    expect(model.metadata().inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [-1, 8] }]);
    const xs = Array.from({ length: 10 }, (_, i) => input(i));
    const done: number[] = [];
    const ys = await Promise.all(
      xs.map(async (x, i) => {
        const y = await infer(model, x);
        done.push(i);
        return y;
      }),
    );
    expect(batches.map((b) => b.rows)).toEqual([4, 4, 2]);
    expect(done).toEqual([...done].sort((a, b) => a - b)); // answered in arrival order
    for (let i = 0; i < xs.length; i++) await expectOrt(xs[i], ys[i].y);
  });

  it('stacks requests of several rows and splits them back', async () => {
    const { model, batches } = await open(batch4, { max_batch_size: 4, max_queue_delay_ms: 50 });
    const xs = [input(20, 2), input(21, 1), input(22, 3), input(23, 1)];
    const ys = await Promise.all(xs.map((x) => infer(model, x)));
    // 2+1 fit, 3 does not: the batch closes; then 3+1.
    expect(batches.map((b) => [b.requests, b.rows])).toEqual([
      [2, 3],
      [2, 4],
    ]);
    for (let i = 0; i < xs.length; i++) await expectOrt(xs[i], ys[i].y);
    await expect(infer(model, input(24, 5))).rejects.toMatchObject({ code: 'E_INPUT' });
  });

  it('sends a preferred batch size at once, the rest after max_queue_delay_ms', async () => {
    const { model, batches } = await open(batch4, {
      max_batch_size: 4,
      preferred_batch_sizes: [2],
      max_queue_delay_ms: 300,
    });
    const t0 = performance.now();
    const xs = [input(30), input(31), input(32)];
    const ys = await Promise.all(xs.map((x) => infer(model, x)));
    expect(batches.map((b) => b.rows)).toEqual([2, 1]);
    expect(batches[0].queueMs.every((q) => q < 250)).toBe(true);
    expect(Math.min(...batches[1].queueMs)).toBeGreaterThanOrEqual(290);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    for (let i = 0; i < xs.length; i++) await expectOrt(xs[i], ys[i].y);
  });

  it('without batching (max_batch_size 0) runs each request alone at the model shape', async () => {
    const { model, batches } = await open(batch1, { max_batch_size: 0 });
    expect(model.mode).toBe('none');
    expect(model.metadata().inputs[0].shape).toEqual([1, 8]);
    const xs = [input(40), input(41), input(42)];
    const ys = await Promise.all(xs.map((x) => infer(model, x)));
    expect(batches.map((b) => b.rows)).toEqual([1, 1, 1]);
    for (let i = 0; i < xs.length; i++) await expectOrt(xs[i], ys[i].y);
    await expect(infer(model, input(43, 2))).rejects.toMatchObject({ code: 'E_INPUT' });
  });

  it('times a request out in the queue, refuses beyond max_queue_size, and drains what is queued', async () => {
    const { model, batches } = await open(batch4, {
      max_batch_size: 4,
      max_queue_delay_ms: 60_000,
      max_queue_size: 2,
    });
    const t0 = performance.now();
    await expect(infer(model, input(50), 150)).rejects.toMatchObject({ code: 'E_TIMEOUT' });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    expect(model.batcher.queued).toBe(0);
    const xs = [input(51), input(52)];
    const pending = xs.map((x) => infer(model, x));
    await expect(infer(model, input(53))).rejects.toMatchObject({ code: 'E_UNAVAILABLE' });
    expect(batches).toEqual([]);
    // Draining sends what waits without the delay, answers it, and refuses new requests.
    await model.batcher.drain();
    const ys = await Promise.all(pending);
    expect(batches.map((b) => b.rows)).toEqual([2]);
    for (let i = 0; i < xs.length; i++) await expectOrt(xs[i], ys[i].y);
    await expect(infer(model, input(54))).rejects.toMatchObject({ code: 'E_UNAVAILABLE' });
  });

  it('refuses a max_batch_size the model cannot run', async () => {
    await expect(open(batch1, { max_batch_size: 4 })).rejects.toMatchObject({ code: 'E_USAGE' });
    await expect(open(batch4, { max_batch_size: 4, preferred_batch_sizes: [8] })).rejects.toMatchObject({
      code: 'E_USAGE',
    });
  });
});

describe('dynamic batcher (dynamic mode, one artifact for batch 1..4)', () => {
  it('stacks requests into a run at the batch they fill, without padding', async () => {
    const { model, batches } = await open(batchRange, { max_queue_delay_ms: 50 });
    expect([model.mode, model.maxBatchSize]).toEqual(['dynamic', 4]);
    expect(model.metadata().inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [-1, 8] }]);
    const xs = [input(40, 2), input(41, 1), input(42, 1), input(43, 3)];
    const ys = await Promise.all(xs.map((x) => infer(model, x)));
    expect(batches.map((b) => b.rows)).toEqual([4, 3]);
    for (let i = 0; i < xs.length; i++) await expectOrt(xs[i], ys[i].y);
  });
});

describe('dynamic batcher with several instances', () => {
  it('runs a batch on each idle instance at once and answers in arrival order', async () => {
    const { model, batches } = await open(batchRange, { instances: 2, max_batch_size: 2 });
    expect(model.modelConfig()).toMatchObject({ instance_group: [{ count: 2, kind: 'KIND_CPU' }] });
    const xs = Array.from({ length: 7 }, (_, i) => input(70 + i));
    const done: number[] = [];
    const answers = xs.map(async (x, i) => {
      const y = await infer(model, x);
      done.push(i);
      return y;
    });
    // the first two requests went out at once (a batch is full at 2 rows only once the queue holds two, so each
    // instance took the head of the queue as it was), one batch per instance
    expect(model.batcher.running).toBe(2);
    const ys = await Promise.all(answers);
    expect(done).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(batches.reduce((a, b) => a + b.rows, 0)).toBe(7);
    for (let i = 0; i < xs.length; i++) await expectOrt(xs[i], ys[i].y);
    await model.batcher.drain();
    expect(model.batcher.running).toBe(0);
  });

  it('holds the answers of a batch that finishes first until the earlier batches are answered', async () => {
    const finish: (() => void)[] = [];
    const batcher = new DynamicBatcher<number, number>(
      'order',
      { maxBatchSize: 0, preferredBatchSizes: [], maxQueueDelayMs: 0, maxQueueSize: 0, timeoutMs: 0, instances: 2 },
      (reqs) => new Promise((resolve) => finish.push(() => resolve(reqs.map((r) => r * 10)))),
    );
    const answered: number[] = [];
    const pending = [1, 2, 3].map((r) => batcher.submit(r, 1, '').then((y) => answered.push(y)));
    expect(finish.length).toBe(2); // requests 1 and 2 run; 3 waits for an instance
    finish[1](); // request 2 finishes first: its instance takes request 3, its answer waits for request 1's
    await new Promise((r) => setTimeout(r, 10));
    expect([answered, finish.length]).toEqual([[], 3]);
    finish[0]();
    finish[2]();
    await Promise.all(pending);
    expect(answered).toEqual([10, 20, 30]);
  });
});

describe.skipIf(!findLlvm())('dynamic batcher (native code, an .onnx compiled with a batch range on start-up)', () => {
  it('runs the batches on the native code, off the event loop, each result equal to ONNX Runtime', async () => {
    const onnx = join(tmp, 'mlp-dynamic.onnx');
    writeFileSync(onnx, mlp('batch'));
    const { model, batches } = await open(onnx, { target: 'native', dims: { batch: [1, 4] }, max_queue_delay_ms: 50 });
    expect([model.runsOn, model.mode, model.maxBatchSize]).toEqual(['native', 'dynamic', 4]);
    expect(model.modelConfig()).toMatchObject({ target: 'native', runs_on: 'native' });
    const xs = [input(50, 3), input(51, 1), input(52, 2)];
    const ys = await Promise.all(xs.map((x) => infer(model, x)));
    expect(batches.map((b) => b.rows)).toEqual([4, 2]);
    for (let i = 0; i < xs.length; i++) await expectOrt(xs[i], ys[i].y);
  });
});

describe('serve configuration', () => {
  it('reads a YAML file, with flags as defaults under it', async () => {
    const file = join(tmp, 'serve.yaml');
    writeFileSync(
      file,
      [
        'port: 9000',
        'log_level: warn',
        'models:',
        '  - name: a',
        '    path: mlp4.kiln',
        '    max_batch_size: 4',
        '    max_queue_delay_ms: 2',
        '  - name: b',
        '    path: mlp.onnx',
        '    target: native',
        '    dims: { batch: 1..8, sequence: [1, 64], past: 0..64, heads: 4 }',
      ].join('\n'),
    );
    const cfg = await serveConfigFromFlags([batch1], { config: file, threads: '2', 'max-queue-size': '16' });
    expect([cfg.port, cfg.log_level]).toEqual([9000, 'warn']);
    expect(
      cfg.models.map((m) => [m.name, m.path, m.max_batch_size, m.threads, m.max_queue_size, m.max_queue_delay_ms]),
    ).toEqual([
      ['a', batch4, 4, 2, 16, 2],
      ['b', join(tmp, 'mlp.onnx'), undefined, 2, 16, 0],
      ['mlp1', batch1, undefined, 2, 16, 0],
    ]);
    expect(cfg.models.map((m) => m.target)).toEqual(['wasm', 'native', 'wasm']);
    expect(cfg.models[1].dims).toEqual({ batch: [1, 8], sequence: [1, 64], past: [0, 64], heads: 4 });
    const flags = await serveConfigFromFlags([batch1], { dim: ['batch=2..6'], target: 'native' });
    expect([flags.models[0].dims, flags.models[0].target]).toEqual([{ batch: [2, 6] }, 'native']);
  });

  it('names a bad key or value', async () => {
    const file = join(tmp, 'bad.json');
    writeFileSync(file, JSON.stringify({ models: [{ path: 'x.kiln', max_batch: 4 }] }));
    await expect(parseConfigFile(file)).rejects.toMatchObject({ code: 'E_USAGE', message: /max_batch/ });
    writeFileSync(file, '{ "models": [');
    await expect(parseConfigFile(file)).rejects.toMatchObject({ code: 'E_USAGE', message: /not valid JSON/ });
    await expect(serveConfigFromFlags([batch1, batch1], {})).rejects.toMatchObject({ code: 'E_USAGE' });
    expect((await serveConfigFromFlags([batch1], { 'log-level': 'error' })).log_level).toBe('error');
    await expect(serveConfigFromFlags([batch1], { 'log-level': 'loud' })).rejects.toMatchObject({
      code: 'E_USAGE',
      message: /'?loud'? is not a log level|"loud" is not a log level/,
    });
    await expect(serveConfigFromFlags([batch1], { target: 'cuda' })).rejects.toMatchObject({
      code: 'E_USAGE',
      message: /target/,
    });
    writeFileSync(file, JSON.stringify({ models: [{ path: 'x.onnx', dims: { batch: '8..1' } }] }));
    await expect(parseConfigFile(file)).rejects.toMatchObject({ code: 'E_USAGE', message: /8\.\.1 is empty/ });
    await expect(serveConfigFromFlags([batch1], { 'max-queue-delay-ms': '-1' })).rejects.toMatchObject({
      code: 'E_USAGE',
    });
  });
});

describe('kiln serve --models (the command)', () => {
  it('on SIGTERM answers the queued requests, then exits 0', async () => {
    const { spawn } = await import('node:child_process');
    const cli = join(process.cwd(), 'dist/cli/kiln.js');
    const proc = spawn(
      process.execPath,
      [
        cli,
        'serve',
        '--models',
        `q=${batch4}`,
        '--max-batch-size',
        '4',
        '--max-queue-delay-ms',
        '60000',
        '--port',
        '0',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      // pino's JSON lines: the listening address is in the 'serving' line.
      const deadline = Date.now() + 60_000;
      let base: string | undefined;
      while (!base && Date.now() < deadline) {
        base = /serving q at (http:\/\/[^ ]+\/)/.exec(out)?.[1];
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(base, out).toBeDefined();
      const x = input(60);
      const answer = fetch(new URL('v2/models/q/infer', base), {
        method: 'POST',
        body: JSON.stringify({
          inputs: [{ name: 'x', shape: [1, 8], datatype: 'FP32', data: Array.from(x.data as Float32Array) }],
        }),
      });
      // The request waits out a 60 s delay in the queue until SIGTERM drains it.
      const queued = async () =>
        /^kiln_queued_requests\{model="q"\} 1$/m.test(await (await fetch(new URL('metrics', base))).text());
      while (!(await queued())) await new Promise((r) => setTimeout(r, 20));
      proc.kill('SIGTERM');
      const res = await answer;
      expect(res.status).toBe(200);
      const y = ((await res.json()) as { outputs: { shape: number[]; data: number[] }[] }).outputs[0];
      await expectOrt(x, { dtype: 'float32', shape: y.shape, data: Float32Array.from(y.data) });
      expect(await exited).toBe(0);
      expect(out).toContain('draining');
    } finally {
      proc.kill('SIGKILL');
    }
  }, 90_000);
});
