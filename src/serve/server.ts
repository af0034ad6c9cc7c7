// The model server (`kiln serve --models`): fastify with its pino logger, the KServe v2 / Triton HTTP protocol,
// /predict for image classifiers, Prometheus /metrics, and the browser demo at /. Every model runs on its own
// worker thread behind a dynamic batcher (model.ts, batcher.ts). The server's packages are optional peer
// dependencies of kiln, loaded here (E_DEPENDENCY with the npm install line when one is missing).
import type { AddressInfo } from 'node:net';
import type * as Fastify from 'fastify';
import type * as Prom from 'prom-client';
import type Sharp from 'sharp';
import { KilnError, type KilnErrorCode } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { topK } from '../demo/preprocess.js';
import { importOptional } from '../node/optional-dependency.js';
import { checkUniqueNames, type ServeConfig } from './config.js';
import { DEMO_HEADERS, demoAsset, distRoot } from './demo-assets.js';
import { decodeImage, imageNetTensor } from './image.js';
import { createMetrics, type ServeMetrics } from './metrics.js';
import { ServedModel } from './model.js';
import { HEADER_LENGTH, inferResponse, parseInferRequest } from './protocol.js';

export interface ModelServerOptions {
  /** fastify's logger option: true (info to stdout), false, or pino options (e.g. { level: 'warn' }). */
  logger?: boolean | Record<string, unknown>;
}

export interface ModelServer {
  url: string;
  port: number;
  models: Map<string, ServedModel>;
  metrics: ServeMetrics;
  app: Fastify.FastifyInstance;
  /** Refuses new requests, answers every queued and running one, then stops listening and the models' workers. */
  close(): Promise<void>;
}

/** HTTP status of each error code a request can get. */
const STATUS: Partial<Record<KilnErrorCode, number>> = {
  E_INPUT: 400,
  E_USAGE: 400,
  E_NOT_FOUND: 404,
  E_TOO_LARGE: 413,
  E_UNAVAILABLE: 503,
  E_TIMEOUT: 504,
};

/** Seconds a client refused for a full queue is asked to wait. */
const RETRY_AFTER_S = 1;

/** A fastify or plugin error (body limit, multipart, content type) as the KilnError a client gets. */
function asKilnError(e: unknown): KilnError {
  if (e instanceof KilnError) return e;
  const err = e as { code?: string; statusCode?: number; message?: string };
  const msg = String(err?.message ?? e);
  if (err?.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || err?.code === 'FST_REQ_FILE_TOO_LARGE' || err?.statusCode === 413)
    return new KilnError('E_TOO_LARGE', `the request body is too large (${msg})`, {
      hint: 'send a smaller body, or start the server with a larger --body-limit',
    });
  if (typeof err?.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500)
    return new KilnError('E_INPUT', `bad request: ${msg}`, {
      hint: 'send JSON (or binary tensors with Inference-Header-Content-Length) to /infer, multipart/form-data to /predict',
    });
  return new KilnError('E_INTERNAL', `internal error: ${msg}`, { hint: 'please report this with the request' });
}

/** The image classifier's input: one float32 [N|1, 3, S, S] input. */
function imageInput(model: ServedModel): { name: string; size: number } {
  const [inp] = model.inputs;
  const s = inp.shape;
  if (model.inputs.length !== 1 || inp.dtype !== 'float32' || s.length !== 4 || s[1] !== 3 || s[2] !== s[3])
    throw new KilnError(
      'E_INPUT',
      `model '${model.name}' is not an image classifier: /predict needs one float32 [N,3,S,S] input`,
      {
        hint: `use /v2/models/${model.name}/infer for this model`,
      },
    );
  return { name: inp.name, size: s[2] };
}

export async function startModelServer(cfg: ServeConfig, opts: ModelServerOptions = {}): Promise<ModelServer> {
  checkUniqueNames(cfg.models);
  const [{ default: fastify }, { default: multipart }, prom, { default: sharp }] = await Promise.all([
    importOptional<typeof import('fastify')>('fastify'),
    importOptional<typeof import('@fastify/multipart')>('@fastify/multipart'),
    importOptional<typeof Prom>('prom-client'),
    importOptional<{ default: typeof Sharp }>('sharp'),
  ]);
  const app = fastify({
    logger: opts.logger ?? { level: cfg.log_level },
    bodyLimit: cfg.body_limit,
    forceCloseConnections: 'idle',
  });
  const metrics = createMetrics((prom as unknown as { default?: typeof Prom }).default ?? prom);
  const models = new Map<string, ServedModel>();
  let draining = false;
  try {
    for (const m of cfg.models) {
      app.log.info(`model '${m.name}': loading ${m.path}`);
      models.set(
        m.name,
        await ServedModel.open(
          m,
          (msg) => app.log.info(msg),
          (s) => metrics.batch(m.name, s),
        ),
      );
    }
  } catch (e) {
    for (const m of models.values()) m.dispose();
    await app.close();
    throw e;
  }

  for (const [name, m] of models) metrics.trackQueue(name, () => m.batcher.queued);
  const modelOf = (name: string): ServedModel => {
    const m = models.get(name);
    if (!m)
      throw new KilnError('E_NOT_FOUND', `no model named '${name}'`, {
        hint: `models served here: ${[...models.keys()].join(', ')}`,
      });
    return m;
  };

  // Bodies stay bytes: the handlers parse them, so a malformed one is a KilnError with a hint like any other.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  await app.register(multipart, { limits: { fileSize: cfg.body_limit, files: 1, fields: 8 } });

  app.setErrorHandler((e, req, reply) => {
    const err = asKilnError(e);
    const status = STATUS[err.code] ?? 500;
    const name = (req.params as { name?: string } | undefined)?.name;
    if (name !== undefined && models.has(name)) metrics.failures.inc({ model: name, code: err.code });
    if (status >= 500 && status !== 503 && status !== 504) req.log.error({ err: e }, err.message);
    if (err.code === 'E_UNAVAILABLE') reply.header('Retry-After', String(RETRY_AFTER_S));
    reply
      .code(status)
      .send({ error: `[${err.code}] ${err.detail}`, code: err.code, ...(err.hint ? { hint: err.hint } : {}) });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({
      error: `[E_NOT_FOUND] no route ${req.method} ${req.url.split('?')[0]}`,
      code: 'E_NOT_FOUND',
      hint: 'routes: /v2/health/live, /v2/health/ready, /v2/models/NAME, /v2/models/NAME/infer, /v2/models/NAME/predict, /metrics, /',
    });
  });

  // Counts each inference request and keeps it in the in-flight gauge until its response closes: sent, or its client
  // gone (a client that disconnects after sending the whole body gets neither onResponse nor onRequestAbort).
  const counted = {
    onRequest: async (req: Fastify.FastifyRequest, reply: Fastify.FastifyReply) => {
      const name = (req.params as { name: string }).name;
      if (!models.has(name)) return;
      metrics.requests.inc({ model: name });
      metrics.inFlight.inc({ model: name });
      reply.raw.once('close', () => metrics.inFlight.dec({ model: name }));
    },
  };

  app.get('/v2/health/live', async () => ({ live: true }));
  app.get('/v2/health/ready', async (_req, reply) => {
    if (draining) reply.code(503);
    return { ready: !draining };
  });
  app.get('/v2', async () => ({ name: 'kiln', version: '0.1.0', extensions: ['binary_tensor_data'] }));
  const metadata = async (req: Fastify.FastifyRequest) => modelOf((req.params as { name: string }).name).metadata();
  app.get('/v2/models/:name', metadata);
  app.get('/v2/models/:name/versions/:version', metadata);
  app.get('/v2/models/:name/ready', async (req, reply) => {
    modelOf((req.params as { name: string }).name);
    if (draining) reply.code(503);
    return { ready: !draining };
  });
  app.get('/v2/models/:name/config', async (req) => modelOf((req.params as { name: string }).name).modelConfig());

  const infer = async (req: Fastify.FastifyRequest, reply: Fastify.FastifyReply) => {
    const model = modelOf((req.params as { name: string }).name);
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const headerLength = req.headers[HEADER_LENGTH];
    const r = parseInferRequest(body, Array.isArray(headerLength) ? headerLength[0] : headerLength);
    const wanted = r.outputs ?? model.outputs.map((o) => ({ name: o.name, binary: r.binaryOutput }));
    for (const o of wanted)
      if (!model.outputs.some((b) => b.name === o.name))
        throw new KilnError('E_INPUT', `model '${model.name}' has no output '${o.name}'`, {
          hint: `its outputs: ${model.outputs.map((b) => b.name).join(', ')}`,
        });
    const checked = model.check(r.inputs, true);
    const out = await model.infer(checked, r.timeoutUs !== undefined ? r.timeoutUs / 1000 : undefined);
    const res = inferResponse(
      model.name,
      r.id,
      wanted.map((o) => ({ name: o.name, tensor: out[o.name], binary: o.binary })),
    );
    if (res.headerLength !== undefined) {
      reply.header('Inference-Header-Content-Length', String(res.headerLength));
      reply.type('application/octet-stream');
    } else reply.type('application/json');
    return reply.send(res.body);
  };
  app.post('/v2/models/:name/infer', counted, infer);
  app.post('/v2/models/:name/versions/:version/infer', counted, infer);

  app.post('/v2/models/:name/predict', counted, async (req) => {
    const model = modelOf((req.params as { name: string }).name);
    const { name: inputName, size } = imageInput(model);
    const q = req.query as { k?: string; top_k?: string };
    const kText = q.top_k ?? q.k;
    const k = kText === undefined ? 5 : Number(kText);
    if (!Number.isInteger(k) || k < 1)
      throw new KilnError('E_INPUT', `top_k is '${kText}', not a positive integer`, { hint: 'e.g. ?top_k=5' });
    if (!req.isMultipart())
      throw new KilnError('E_INPUT', 'predict takes a multipart/form-data upload', {
        hint: "send the image as the form field 'file' (curl -F file=@cat.jpg URL)",
      });
    const file = await req.file();
    if (file?.fieldname !== 'file')
      throw new KilnError('E_INPUT', `the upload has no field 'file'${file ? ` (it has '${file.fieldname}')` : ''}`, {
        hint: "send the image as the form field 'file' (curl -F file=@cat.jpg URL)",
      });
    const img = await decodeImage(sharp, await file.toBuffer());
    const x: Tensor = { dtype: 'float32', shape: [1, 3, size, size], data: imageNetTensor(img, size) };
    const out = await model.infer(model.check(new Map([[inputName, x]]), true));
    const logits = out[model.outputs[0].name].data as Float32Array;
    return {
      model_name: model.name,
      predictions: topK(logits, Math.min(k, logits.length)).map((t) => ({
        class_id: t.index,
        class_name: model.labels?.[t.index] ?? String(t.index),
        probability: t.prob,
      })),
    };
  });

  app.get('/metrics', async (_req, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  // The browser demo at /: the named model, else the first that takes one float32 [1,3,S,S] image.
  const demo =
    cfg.demo !== undefined
      ? modelOf(cfg.demo)
      : [...models.values()].find((m) => {
          const s = m.inputs[0].shape;
          return m.inputs.length === 1 && m.inputs[0].dtype === 'float32' && s.length === 4 && s[0] === 1 && s[1] === 3;
        });
  const dist = distRoot();
  const demoInfo = demo ? JSON.stringify({ name: demo.name, ...(demo.labels ? { labels: demo.labels } : {}) }) : '';
  const demoRoute = async (req: Fastify.FastifyRequest, reply: Fastify.FastifyReply) => {
    const asset = demo && demoAsset(req.url.split('?')[0], dist, demo.artifact, demoInfo);
    if (!asset)
      throw new KilnError('E_NOT_FOUND', demo ? `no demo file ${req.url}` : 'no model here runs in the browser demo', {
        hint: demo
          ? 'the demo page is at /'
          : 'serve an image classifier taking float32 [1,3,S,S] (or name it with demo:)',
      });
    reply.headers(DEMO_HEADERS).type(asset.type);
    return reply.send(asset.body);
  };
  for (const path of ['/', '/index.html', '/model.kiln', '/info.json', '/kiln/*']) app.get(path, demoRoute);

  try {
    await app.listen({ port: cfg.port, host: cfg.host });
  } catch (e) {
    for (const m of models.values()) m.dispose();
    const err = e as NodeJS.ErrnoException;
    throw err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL'
      ? new KilnError('E_IO', `cannot listen on ${cfg.host}:${cfg.port} (${err.code})`, {
          hint: 'pick another with --port N (or --host)',
        })
      : e;
  }
  const { port } = app.server.address() as AddressInfo;
  const host = cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host === '0.0.0.0' ? '127.0.0.1' : cfg.host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}/`,
    port,
    models,
    metrics,
    app,
    close: () => {
      closing ??= (async () => {
        draining = true;
        app.log.info('draining: answering queued requests, refusing new ones');
        const stopped = app.close();
        await Promise.all([...models.values()].map((m) => m.batcher.drain()));
        // Connections whose requests were just answered turn idle after close() began: close them as they do,
        // rather than waiting out the keep-alive timeout.
        const idle = setInterval(() => app.server.closeIdleConnections(), 20);
        await stopped.finally(() => clearInterval(idle));
        for (const m of models.values()) m.dispose();
        app.log.info('stopped');
      })();
      return closing;
    },
  };
}
