// kiln serve --models [NAME=]PATH... (or --config FILE): the model server (src/serve). Without them,
// kiln serve [MODEL.kiln|MODEL.onnx] [--port N]: the browser demo. Serves the page, the runtime and the demo script
// (from dist/), and the artifact, on 127.0.0.1 only, cross-origin isolated (COOP/COEP) so the runtime can use
// Web Workers on shared memory. An .onnx model is compiled first with target 'webgpu' (the artifact then holds
// WGSL and WebAssembly, and the page picks).
import { createServer, type Server } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { KilnError } from '../runtime/errors.js';
import { DEMO_HEADERS, demoAsset, distRoot } from '../serve/demo-assets.js';
import { intFlag, namedValue, usageError } from './usage.js';
import { parseDim, parseNamedShape } from './tensor-files.js';
import {
  type ModelConfig,
  type ServeConfig,
  checkUniqueNames,
  logLevel,
  modelConfig,
  parseConfigFile,
  parseModelSpec,
  serveConfig,
} from '../serve/config.js';

export const DEFAULT_DEMO_MODEL = join('.cache', 'models', 'mobilenet_v2', 'model.onnx');

export interface DemoServerOptions {
  /** An .onnx model (compiled on start) or a .kiln artifact. Default: DEFAULT_DEMO_MODEL. */
  model?: string;
  /** An artifact to serve instead of `model`. */
  artifact?: Uint8Array;
  /** Port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  log?: (line: string) => void;
}

export interface DemoServer {
  url: string;
  port: number;
  artifact: Uint8Array;
  close(): Promise<void>;
}

async function artifactFor(path: string, log: (s: string) => void): Promise<Uint8Array> {
  if (!existsSync(path)) {
    throw new KilnError('E_IO', `no model at ${path}`, {
      hint:
        path === DEFAULT_DEMO_MODEL
          ? 'generate the test models first: npm run fixtures'
          : 'give an .onnx model or a .kiln artifact',
    });
  }
  const bytes = readFileSync(path);
  if (!path.endsWith('.onnx')) return bytes;
  const { compile } = await import('../compiler/compile.js');
  const t0 = performance.now();
  let r: Awaited<ReturnType<typeof compile>>;
  try {
    r = await compile(bytes, { modelPath: path, target: 'webgpu' });
  } catch (e) {
    if (!(e instanceof KilnError) || e.code !== 'E_UNSUPPORTED') throw e;
    log(`kiln: no WebGPU kernels for this model (${e.message}); serving WebAssembly only`);
    r = await compile(bytes, { modelPath: path });
  }
  log(
    `kiln: compiled ${path} in ${((performance.now() - t0) / 1000).toFixed(2)} s (${(r.artifact.length / 1048576).toFixed(2)} MiB${r.header.webgpu ? ', WebGPU + WebAssembly' : ''})`,
  );
  return r.artifact;
}

export async function startDemoServer(opts: DemoServerOptions = {}): Promise<DemoServer> {
  const log = opts.log ?? (() => {});
  const modelPath = opts.model ?? DEFAULT_DEMO_MODEL;
  const artifact = opts.artifact ?? (await artifactFor(modelPath, log));
  const name = opts.artifact
    ? 'model'
    : basename(modelPath) === 'model.onnx'
      ? basename(dirname(modelPath))
      : basename(modelPath).replace(/\.(onnx|kiln)$/, '');
  const info = JSON.stringify({ name });
  const dist = distRoot();
  if (!existsSync(join(dist, 'demo', 'app.js')))
    throw new KilnError('E_IO', `no demo script at ${join(dist, 'demo', 'app.js')}`, {
      hint: 'build first: npm run build',
    });
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    const asset = demoAsset(path, dist, artifact, info);
    if (asset === undefined) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    const body = asset.body;
    res.writeHead(200, { 'Content-Type': asset.type, ...DEMO_HEADERS });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'EADDRINUSE'
          ? new KilnError('E_IO', `port ${opts.port} is in use`, { hint: 'pick another with --port N' })
          : e,
      ),
    );
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    artifact,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface ServeFlags {
  port?: string;
  models?: string[];
  config?: string;
  host?: string;
  threads?: string;
  labels?: string[];
  'max-batch-size'?: string;
  'preferred-batch-sizes'?: string;
  'max-queue-delay-ms'?: string;
  'max-queue-size'?: string;
  'timeout-ms'?: string;
  'body-limit'?: string;
  'input-shape'?: string[];
  dim?: string[];
  target?: string;
  instances?: string;
  'log-level'?: string;
}

export async function serveCommand(pos: string[], v: ServeFlags): Promise<number> {
  if (v.models !== undefined || v.config !== undefined) return modelServerCommand(pos, v);
  if (pos.length > 1)
    throw usageError(`kiln serve: unexpected argument '${pos[1]}'`, 'serve several models with --models A B');
  const port = intFlag(v.port, '--port', 8080, 0, 65535);
  const server = await startDemoServer({ model: pos[0], port, log: (s) => console.log(s) });
  console.log(`kiln: demo at ${server.url} (127.0.0.1 only; Ctrl-C stops)`);
  await new Promise<void>((resolve) => process.once('SIGINT', resolve));
  await server.close();
  return 0;
}

/** The flags as a config: per-model defaults from the flags, models from --models (and the words after it). */
export async function serveConfigFromFlags(pos: string[], v: ServeFlags): Promise<ServeConfig> {
  const defaults: Partial<ModelConfig> = {};
  if (v.threads !== undefined) defaults.threads = intFlag(v.threads, '--threads', 1, 1, 64);
  if (v.instances !== undefined) defaults.instances = intFlag(v.instances, '--instances', 1, 1, 64);
  if (v['max-batch-size'] !== undefined)
    defaults.max_batch_size = intFlag(v['max-batch-size'], '--max-batch-size', 0, 0);
  if (v['preferred-batch-sizes'] !== undefined)
    defaults.preferred_batch_sizes = v['preferred-batch-sizes']
      .split(',')
      .map((s) => intFlag(s.trim(), '--preferred-batch-sizes', 1));
  if (v['max-queue-delay-ms'] !== undefined)
    defaults.max_queue_delay_ms = intFlag(v['max-queue-delay-ms'], '--max-queue-delay-ms', 0, 0);
  if (v['max-queue-size'] !== undefined)
    defaults.max_queue_size = intFlag(v['max-queue-size'], '--max-queue-size', 0, 0);
  if (v['timeout-ms'] !== undefined) defaults.timeout_ms = intFlag(v['timeout-ms'], '--timeout-ms', 0, 0);
  if (v['input-shape']) defaults.input_shapes = Object.fromEntries(v['input-shape'].map(parseNamedShape));
  if (v.dim) defaults.dims = Object.fromEntries(v.dim.map(parseDim));
  if (v.target !== undefined) defaults.target = v.target as ModelConfig['target'];
  const cfg = v.config
    ? await parseConfigFile(v.config, defaults)
    : serveConfig({}, 'kiln serve', process.cwd(), defaults);
  for (const spec of [...(v.models ?? []), ...pos]) {
    const { name, path } = parseModelSpec(spec);
    cfg.models.push(modelConfig({ name, path: resolve(path) }, `--models ${spec}`, defaults));
  }
  for (const spec of v.labels ?? []) {
    const [name, file] = spec.includes('=') ? namedValue(spec, '--labels', 'NAME=labels.txt') : ['', spec];
    const targets = name ? cfg.models.filter((m) => m.name === name) : cfg.models;
    if (name && targets.length === 0) throw usageError(`--labels ${spec}: no model named '${name}'`);
    if (!name && cfg.models.length > 1)
      throw usageError(`--labels ${spec}: several models are served`, 'name the model: --labels NAME=FILE');
    for (const m of targets) m.labels = resolve(file);
  }
  if (v.port !== undefined) cfg.port = intFlag(v.port, '--port', 8080, 0, 65535);
  if (v.host !== undefined) cfg.host = v.host;
  if (v['body-limit'] !== undefined) cfg.body_limit = intFlag(v['body-limit'], '--body-limit', 32, 1) * 1024 * 1024;
  if (v['log-level'] !== undefined) cfg.log_level = logLevel(v['log-level'], '--log-level');
  checkUniqueNames(cfg.models);
  return cfg;
}

async function modelServerCommand(pos: string[], v: ServeFlags): Promise<number> {
  const cfg = await serveConfigFromFlags(pos, v);
  const { startModelServer } = await import('../serve/server.js');
  const server = await startModelServer(cfg);
  server.app.log.info(
    `kiln: serving ${[...server.models.keys()].join(', ')} at ${server.url} (SIGTERM or Ctrl-C drains and stops)`,
  );
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  server.app.log.info(`kiln: ${signal}: draining`);
  await server.close();
  return 0;
}
