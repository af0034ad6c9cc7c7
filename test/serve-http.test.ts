// `kiln serve --models` over HTTP on loopback: the KServe v2 endpoints (health, metadata, infer with JSON tensors
// and with the binary-data extension), /predict on PNG and JPEG uploads, /metrics, the demo page at /, a 4xx JSON
// error with the KilnError code and a hint for each kind of bad request, 503 + Retry-After on a full queue, 504 on
// a queue timeout, and a graceful shutdown that answers the queued requests. Numbers are compared with ONNX Runtime
// on each request's own input. The classifier is MobileNetV2 (32x32 fixture) compiled with a batch of 4.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { compile } from '../src/index.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { preprocessImageNet, topK } from '../src/demo/preprocess.js';
import { MODEL_DEFAULTS, SERVE_DEFAULTS } from '../src/serve/config.js';
import { type ModelServer, startModelServer } from '../src/serve/server.js';
import { runOrt } from './helpers/ort.js';

const CLASSIFIER = '.cache/models/mobilenet_v2_small/model.onnx';
const W = randomF32([8, 4], 3);
const mlp = (n: number) =>
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
let server: ModelServer;
const url = (path: string) => new URL(path, server.url).toString();
const LABELS = Array.from({ length: 1000 }, (_, i) => `class-${i}`);

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) - 1e-3 * Math.abs(want[i]));
  expect(worst).toBeLessThan(1e-4);
}

const postJson = (path: string, body: unknown) =>
  fetch(url(path), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

/** A bad request's answer: the status, and a JSON body with the code and a hint. */
async function expectError(res: Response, status: number, code: string, pattern?: RegExp): Promise<void> {
  const body = (await res.json()) as { error: string; code: string; hint?: string };
  expect(res.status, JSON.stringify(body)).toBe(status);
  expect(body.code).toBe(code);
  expect(body.error).toContain(`[${code}]`);
  expect(body.hint?.length).toBeGreaterThan(5);
  if (pattern) expect(body.error).toMatch(pattern);
}

/** A landscape test picture: gradients, a disc and stripes. */
function testImage(w: number, h: number): Uint8Array {
  const px = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const disc = (x - w * 0.45) ** 2 + (y - h * 0.5) ** 2 < (h * 0.3) ** 2;
      px[i] = disc ? 230 : (x * 255) / (w - 1);
      px[i + 1] = disc ? 180 - (y % 16) * 4 : (y * 255) / (h - 1);
      px[i + 2] = (x >> 3) % 2 ? 40 : 200;
    }
  return px;
}

const classifierRef = async (x: Float32Array) =>
  (await runOrt(CLASSIFIER, { input: { dtype: 'float32', shape: [1, 3, 32, 32], data: x } })).output
    .data as Float32Array;

describe.skipIf(!existsSync(CLASSIFIER))('kiln serve --models (HTTP)', () => {
  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'kiln-serve-'));
    writeFileSync(join(tmp, 'labels.txt'), `${LABELS.join('\n')}\n`);
    // The batch-1 classifier as an artifact (the .kiln path; the demo page's model), the batch-4 one from .onnx.
    writeFileSync(join(tmp, 'mobilenet1.kiln'), (await compile(readFileSync(CLASSIFIER))).artifact);
    writeFileSync(join(tmp, 'mlp.kiln'), (await compile(mlp(4))).artifact);
    const model = { ...MODEL_DEFAULTS, threads: 1 };
    server = await startModelServer(
      {
        ...SERVE_DEFAULTS,
        port: 0,
        body_limit: 1 << 20,
        models: [
          {
            ...model,
            name: 'mobilenet',
            path: CLASSIFIER,
            input_shapes: { input: [4, 3, 32, 32] },
            max_batch_size: 4,
            max_queue_delay_ms: 20,
            labels: join(tmp, 'labels.txt'),
          },
          { ...model, name: 'mobilenet1', path: join(tmp, 'mobilenet1.kiln'), labels: join(tmp, 'labels.txt') },
          {
            ...model,
            name: 'queue',
            path: join(tmp, 'mlp.kiln'),
            max_batch_size: 4,
            max_queue_delay_ms: 60_000,
            max_queue_size: 2,
          },
        ],
      },
      { logger: false },
    );
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('answers health and metadata, with -1 for the batch dim', async () => {
    expect(await (await fetch(url('/v2/health/live'))).json()).toEqual({ live: true });
    expect(await (await fetch(url('/v2/health/ready'))).json()).toEqual({ ready: true });
    expect(await (await fetch(url('/v2/models/mobilenet'))).json()).toEqual({
      name: 'mobilenet',
      versions: ['1'],
      platform: 'kiln',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 3, 32, 32] }],
      outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 1000] }],
    });
    const one = (await (await fetch(url('/v2/models/mobilenet1'))).json()) as { inputs: { shape: number[] }[] };
    expect(one.inputs[0].shape).toEqual([1, 3, 32, 32]);
    const cfg = (await (await fetch(url('/v2/models/mobilenet/config'))).json()) as Record<string, unknown>;
    expect(cfg).toMatchObject({ max_batch_size: 4, batching: 'padded' });
  });

  it('infers concurrent JSON requests as batches, each equal to ONNX Runtime on its own input', async () => {
    const xs = Array.from({ length: 6 }, (_, i) => randomF32([1, 3, 32, 32], 10 + i).data as Float32Array);
    const two = randomF32([2, 3, 32, 32], 99).data as Float32Array;
    const before =
      (await server.metrics.batchSize.get()).values.find(
        (v) => v.metricName === 'kiln_batch_size_count' && v.labels.model === 'mobilenet',
      )?.value ?? 0;
    const answers = await Promise.all([
      ...xs.map((x, i) =>
        postJson('/v2/models/mobilenet/infer', {
          id: `r${i}`,
          inputs: [{ name: 'input', shape: [1, 3, 32, 32], datatype: 'FP32', data: Array.from(x) }],
        }),
      ),
      postJson('/v2/models/mobilenet/infer', {
        inputs: [{ name: 'input', shape: [2, 3, 32, 32], datatype: 'FP32', data: Array.from(two) }],
      }),
    ]);
    const bodies = (await Promise.all(answers.map((r) => r.json()))) as {
      id?: string;
      model_name: string;
      outputs: { name: string; datatype: string; shape: number[]; data: number[] }[];
    }[];
    for (const [i, x] of xs.entries()) {
      expect(answers[i].status).toBe(200);
      expect(bodies[i]).toMatchObject({ id: `r${i}`, model_name: 'mobilenet' });
      expect(bodies[i].outputs[0]).toMatchObject({ name: 'output', datatype: 'FP32', shape: [1, 1000] });
      expectClose(bodies[i].outputs[0].data, await classifierRef(x));
    }
    const last = bodies[xs.length].outputs[0];
    expect(last.shape).toEqual([2, 1000]);
    expectClose(last.data.slice(0, 1000), await classifierRef(two.subarray(0, 3072)));
    expectClose(last.data.slice(1000), await classifierRef(two.subarray(3072)));
    // 8 rows in 4-row batches: at least 2 and fewer than 7 runs.
    const after = (await server.metrics.batchSize.get()).values.find(
      (v) => v.metricName === 'kiln_batch_size_count' && v.labels.model === 'mobilenet',
    )!.value;
    expect(after - before).toBeGreaterThanOrEqual(2);
    expect(after - before).toBeLessThan(7);
  });

  it('infers with the binary-data extension, both ways', async () => {
    const x = randomF32([1, 3, 32, 32], 7).data as Float32Array;
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: 'input', shape: [1, 3, 32, 32], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } },
        ],
        outputs: [{ name: 'output', parameters: { binary_data: true } }],
      }),
    );
    const res = await fetch(url('/v2/models/mobilenet/infer'), {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'Inference-Header-Content-Length': String(header.length) },
      body: Buffer.concat([header, Buffer.from(x.buffer)]),
    });
    expect(res.status).toBe(200);
    const n = Number(res.headers.get('inference-header-content-length'));
    const body = Buffer.from(await res.arrayBuffer());
    const meta = JSON.parse(body.subarray(0, n).toString()) as {
      outputs: { parameters: { binary_data_size: number } }[];
    };
    expect(meta.outputs[0].parameters.binary_data_size).toBe(4000);
    const y = new Float32Array(body.buffer.slice(body.byteOffset + n, body.byteOffset + n + 4000));
    expectClose(y, await classifierRef(x));
  });

  it('classifies uploaded PNG and JPEG images on /predict, as ONNX Runtime on the same preprocessing', async () => {
    const [w, h] = [96, 64];
    const pixels = testImage(w, h);
    const png = await sharp(pixels, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toBuffer();
    const jpeg = await sharp(pixels, { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer();
    const jpegPixels = await sharp(jpeg).raw().toBuffer();
    for (const [file, px, model] of [
      [png, pixels, 'mobilenet'],
      [jpeg, new Uint8Array(jpegPixels), 'mobilenet1'],
    ] as const) {
      const form = new FormData();
      form.append('file', new Blob([file]), 'image');
      const res = await fetch(url(`/v2/models/${model}/predict?top_k=3`), { method: 'POST', body: form });
      const body = (await res.json()) as {
        predictions: { class_id: number; class_name: string; probability: number }[];
      };
      expect(res.status, JSON.stringify(body)).toBe(200);
      const ref = topK(await classifierRef(preprocessImageNet(px, w, h, { channels: 3, crop: 32, resize: 37 })), 3);
      expect(body.predictions).toHaveLength(3);
      body.predictions.forEach((p, i) => {
        expect(p.class_id).toBe(ref[i].index);
        expect(p.class_name).toBe(`class-${ref[i].index}`);
        expect(Math.abs(p.probability - ref[i].prob)).toBeLessThan(1e-3 * ref[i].prob + 1e-6);
      });
    }
  });

  it('serves the browser demo at / with the batch-1 classifier', async () => {
    const page = await fetch(url('/'));
    expect(page.status).toBe(200);
    expect(page.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
    expect(await (await fetch(url('/info.json'))).json()).toMatchObject({ name: 'mobilenet1' });
    expect((await fetch(url('/model.kiln'))).status).toBe(200);
    expect((await fetch(url('/kiln/cli/kiln.js'))).status).toBe(404);
  });

  it('answers every bad request with a 4xx JSON error, its KilnError code and a hint', async () => {
    const good = { name: 'input', shape: [1, 3, 32, 32], datatype: 'FP32', data: new Array(3072).fill(0.5) };
    await expectError(await postJson('/v2/models/nope/infer', { inputs: [good] }), 404, 'E_NOT_FOUND', /nope/);
    await expectError(await fetch(url('/v2/models/nope')), 404, 'E_NOT_FOUND');
    await expectError(await fetch(url('/v3/anything')), 404, 'E_NOT_FOUND');
    await expectError(
      await postJson('/v2/models/mobilenet/infer', { inputs: [{ ...good, name: 'image' }] }),
      400,
      'E_INPUT',
      /no input 'image'/,
    );
    await expectError(
      await postJson('/v2/models/mobilenet/infer', {
        inputs: [{ ...good, datatype: 'INT32', data: new Array(3072).fill(1) }],
      }),
      400,
      'E_INPUT',
      /INT32, not FP32/,
    );
    await expectError(
      await postJson('/v2/models/mobilenet/infer', { inputs: [{ ...good, shape: [1, 3, 16, 64] }] }),
      400,
      'E_INPUT',
      /dim 2/,
    );
    await expectError(
      await postJson('/v2/models/mobilenet/infer', {
        inputs: [{ ...good, shape: [5, 3, 32, 32], data: new Array(5 * 3072).fill(0) }],
      }),
      400,
      'E_INPUT',
      /dim 0/,
    );
    await expectError(
      await postJson('/v2/models/mobilenet/infer', { inputs: [{ ...good, data: [1, 2, 3] }] }),
      400,
      'E_INPUT',
      /3 values/,
    );
    await expectError(
      await postJson('/v2/models/mobilenet/infer', { inputs: [good], outputs: [{ name: 'logits' }] }),
      400,
      'E_INPUT',
      /no output 'logits'/,
    );
    await expectError(
      await fetch(url('/v2/models/mobilenet/infer'), { method: 'POST', body: '{"inputs": [' }),
      400,
      'E_INPUT',
      /does not parse/,
    );
    await expectError(
      await fetch(url('/v2/models/mobilenet/infer'), {
        method: 'POST',
        headers: { 'Inference-Header-Content-Length': '9999' },
        body: '{"inputs": []}',
      }),
      400,
      'E_INPUT',
      /Inference-Header-Content-Length/,
    );
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'input', shape: [1, 3, 32, 32], datatype: 'FP32', parameters: { binary_data_size: 100 } }],
      }),
    );
    await expectError(
      await fetch(url('/v2/models/mobilenet/infer'), {
        method: 'POST',
        headers: { 'Inference-Header-Content-Length': String(header.length) },
        body: Buffer.concat([header, Buffer.alloc(100)]),
      }),
      400,
      'E_INPUT',
      /binary_data_size/,
    );
    await expectError(
      await fetch(url('/v2/models/mobilenet/infer'), { method: 'POST', body: Buffer.alloc(2 << 20, 32) }),
      413,
      'E_TOO_LARGE',
    );
    const junk = new FormData();
    junk.append('file', new Blob([Buffer.from('not an image at all')]), 'x.png');
    await expectError(
      await fetch(url('/v2/models/mobilenet/predict'), { method: 'POST', body: junk }),
      400,
      'E_INPUT',
      /not an image/,
    );
    const big = new FormData();
    big.append('file', new Blob([Buffer.alloc(2 << 20)]), 'x.png');
    await expectError(
      await fetch(url('/v2/models/mobilenet/predict'), { method: 'POST', body: big }),
      413,
      'E_TOO_LARGE',
    );
    await expectError(await postJson('/v2/models/mobilenet/predict', { file: 1 }), 400, 'E_INPUT', /multipart/);
    await expectError(await postJson('/v2/models/queue/predict', {}), 400, 'E_INPUT', /not an image classifier/);
    // The server is still up and right.
    const x = randomF32([1, 3, 32, 32], 3).data as Float32Array;
    const ok = await postJson('/v2/models/mobilenet/infer', {
      inputs: [{ ...good, data: Array.from(x) }],
    });
    expectClose(((await ok.json()) as { outputs: { data: number[] }[] }).outputs[0].data, await classifierRef(x));
  });

  it('exports Prometheus metrics per model', async () => {
    const text = await (await fetch(url('/metrics'))).text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
    expect(value(/^kiln_inference_requests_total\{model="mobilenet"\} (\d+)/m)).toBeGreaterThanOrEqual(10);
    expect(value(/^kiln_inference_failures_total\{model="mobilenet",code="E_INPUT"\} (\d+)/m)).toBeGreaterThanOrEqual(
      5,
    );
    expect(value(/^kiln_inference_failures_total\{model="mobilenet",code="E_TOO_LARGE"\} (\d+)/m)).toBe(2);
    expect(value(/^kiln_batch_size_count\{model="mobilenet"\} (\d+)/m)).toBeGreaterThanOrEqual(3);
    expect(value(/^kiln_queue_duration_seconds_count\{model="mobilenet"\} (\d+)/m)).toBeGreaterThanOrEqual(10);
    expect(value(/^kiln_compute_duration_seconds_sum\{model="mobilenet"\} ([\d.e-]+)/m)).toBeGreaterThan(0);
    expect(value(/^kiln_inflight_requests\{model="mobilenet"\} (\d+)/m)).toBe(0);
    expect(value(/^kiln_queued_requests\{model="mobilenet"\} (\d+)/m)).toBe(0);
  });

  it('times out in the queue (504), refuses a full queue (503 + Retry-After), and drains on shutdown', async () => {
    const req = (seed: number, timeoutUs?: number) =>
      postJson('/v2/models/queue/infer', {
        inputs: [
          {
            name: 'x',
            shape: [1, 8],
            datatype: 'FP32',
            data: Array.from(randomF32([1, 8], seed).data as Float32Array),
          },
        ],
        ...(timeoutUs ? { parameters: { timeout: timeoutUs } } : {}),
      });
    await expectError(await req(1, 100_000), 504, 'E_TIMEOUT');
    // a client that gives up while its request is queued leaves the in-flight gauge (the request times out later)
    const gone = new AbortController();
    const abandoned = fetch(url('/v2/models/queue/infer'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ name: 'x', shape: [1, 8], datatype: 'FP32', data: new Array(8).fill(1) }],
        parameters: { timeout: 300_000 },
      }),
      signal: gone.signal,
    }).catch((e: Error) => e.name);
    while (server.models.get('queue')!.batcher.queued < 1) await new Promise((r) => setTimeout(r, 10));
    gone.abort();
    expect(await abandoned).toBe('AbortError');
    while (server.models.get('queue')!.batcher.queued > 0) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    const metrics = await (await fetch(url('/metrics'))).text();
    expect(/^kiln_inflight_requests\{model="queue"\} (\d+)/m.exec(metrics)?.[1]).toBe('0');
    const queued = [req(2), req(3)];
    while (server.models.get('queue')!.batcher.queued < 2) await new Promise((r) => setTimeout(r, 10));
    const full = await req(4);
    expect(full.headers.get('retry-after')).toBe('1');
    await expectError(full, 503, 'E_UNAVAILABLE');
    // SIGTERM's path: the two queued requests (waiting out a 60 s delay) are answered, right, before the server stops.
    const closed = server.close();
    const answers = await Promise.all(queued);
    await closed;
    for (const [i, res] of answers.entries()) {
      expect(res.status).toBe(200);
      const x = randomF32([1, 8], 2 + i);
      const ref = (await runOrt(mlp(1), { x })).y.data as Float32Array;
      expectClose(((await res.json()) as { outputs: { data: number[] }[] }).outputs[0].data, ref);
    }
    await expect(fetch(url('/v2/health/live'))).rejects.toThrow();
  });
});
