// The model server's configuration: a JSON or YAML file (`kiln serve --config FILE`) and/or command-line flags.
// Batching options keep Triton's names and meanings (max_batch_size, preferred_batch_sizes, max_queue_delay_ms,
// max_queue_size); flags give defaults for every model, a file's per-model entries override them.
import { readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { DimValue } from '../frontend/dims.js';
import { KilnError } from '../runtime/errors.js';
import { importOptional } from '../node/optional-dependency.js';

export interface ModelConfig {
  /** The name in URLs (/v2/models/NAME); default: the file's base name (the folder's for model.onnx). */
  name: string;
  /** A .kiln artifact, or an .onnx model compiled on start-up. */
  path: string;
  /** Class names, one per line (or a JSON array), for /predict. */
  labels?: string;
  /** Threads of the model's kernels (each instance's worker thread's pool). */
  threads: number;
  /**
   * Copies of the model, each on its own worker thread with its own memory, running batches at the same time
   * (Triton's instance_group count): what uses several cores when the kernels run on one (target 'native').
   */
  instances: number;
  /** Where the kernels run: WebAssembly (default) or the artifact's x86-64 code (an .onnx is compiled for it). */
  target: ServeTarget;
  /**
   * Compile options for an .onnx model: whole input shapes, and symbolic dims fixed to a size or given a range
   * (a range on the leading dim serves batches without padding).
   */
  input_shapes?: Record<string, number[]>;
  dims?: Record<string, DimValue>;
  /**
   * Largest batch the batcher forms (rows on the leading dim); 0: no batching, one request per run. For a model with
   * a symbolic leading dim the default is that symbol's upper bound; for a static model it must be its leading dim.
   */
  max_batch_size?: number;
  /** Batch sizes sent as soon as the queue holds them (Triton's preferred_batch_size). */
  preferred_batch_sizes: number[];
  /** How long the oldest queued request may wait for a fuller batch. */
  max_queue_delay_ms: number;
  /** Queued requests beyond which new ones get 503 with Retry-After; 0: no limit. */
  max_queue_size: number;
  /** A request still queued after this long gets 504 (E_TIMEOUT); 0: no limit. */
  timeout_ms: number;
}

export interface ServeConfig {
  host: string;
  port: number;
  /** Largest request body (JSON, binary tensors or an uploaded image), in bytes. */
  body_limit: number;
  /** The model whose artifact the browser demo page at / loads; default: the first taking float32[1,3,S,S]. */
  demo?: string;
  /** The lowest level logged (pino's): 'info' logs a line as each request comes in and one as it is answered. */
  log_level: LogLevel;
  models: ModelConfig[];
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const SERVE_TARGETS = ['wasm', 'native'] as const;
export type ServeTarget = (typeof SERVE_TARGETS)[number];

export const MODEL_DEFAULTS = {
  threads: 1,
  instances: 1,
  target: 'wasm' as ServeTarget,
  preferred_batch_sizes: [] as number[],
  max_queue_delay_ms: 0,
  max_queue_size: 0,
  timeout_ms: 0,
};
export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8080,
  body_limit: 32 * 1024 * 1024,
  log_level: 'info' as LogLevel,
};

const bad = (where: string, what: string, hint: string) => new KilnError('E_USAGE', `${where}: ${what}`, { hint });

function int(v: unknown, where: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max)
    throw bad(
      where,
      `${JSON.stringify(v)} is not an integer from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ' up'}`,
      `give e.g. ${where.split('.').pop()}: ${Math.max(min, 1)}`,
    );
  return n;
}

function intList(v: unknown, where: string): number[] {
  const list = typeof v === 'string' ? v.split(',').map((s) => s.trim()) : v;
  if (!Array.isArray(list)) throw bad(where, `${JSON.stringify(v)} is not a list`, 'give e.g. [4, 8] (flag: 4,8)');
  return list.map((x, i) => int(x, `${where}[${i}]`, 1));
}

/** A dim's size (8) or range ([1, 8], or "1..8" as the --dim flag writes it). */
function dimValue(v: unknown, where: string): DimValue {
  const range = typeof v === 'string' ? /^\s*(\d+)\s*\.\.\s*(\d+)\s*$/.exec(v) : null;
  const pair = range ? [range[1], range[2]] : Array.isArray(v) ? v : undefined;
  if (!pair) return int(v, where, 0);
  if (pair.length !== 2) throw bad(where, `${JSON.stringify(v)} is not a range`, 'give [LO, HI] or "LO..HI"');
  const [lo, hi] = [int(pair[0], `${where}[0]`, 0), int(pair[1], `${where}[1]`, 0)];
  if (lo > hi) throw bad(where, `${lo}..${hi} is empty`, `give a range with LO <= HI, e.g. ${hi}..${lo}`);
  return [lo, hi];
}

function record<T>(v: unknown, where: string, each: (x: unknown, w: string) => T): Record<string, T> {
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw bad(where, `${JSON.stringify(v)} is not a map`, 'give e.g. { input: [8, 3, 224, 224] }');
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, each(x, `${where}.${k}`)]));
}

/** NAME=PATH or PATH -> [name, path]; the name defaults to the file's base name (the folder's for model.onnx). */
export function parseModelSpec(spec: string): { name: string; path: string } {
  const eq = spec.indexOf('=');
  const [name, path] = eq > 0 ? [spec.slice(0, eq), spec.slice(eq + 1)] : ['', spec];
  if (!path) throw bad('--models', `'${spec}' names no file`, 'write --models NAME=PATH or --models PATH');
  return { name: name || defaultModelName(path), path };
}

export function defaultModelName(path: string): string {
  const base = basename(path);
  return /^model\.(onnx|kiln)$/.test(base) ? basename(dirname(resolve(path))) : base.replace(/\.(onnx|kiln)$/, '');
}

const MODEL_KEYS = new Set([
  'name',
  'path',
  'labels',
  'threads',
  'instances',
  'target',
  'input_shapes',
  'dims',
  'max_batch_size',
  'preferred_batch_sizes',
  'max_queue_delay_ms',
  'max_queue_size',
  'timeout_ms',
]);
const SERVER_KEYS = new Set(['host', 'port', 'body_limit', 'demo', 'log_level', 'models']);

/** A log level by pino's name. */
export function logLevel(v: unknown, where: string): LogLevel {
  if (!LOG_LEVELS.includes(v as LogLevel))
    throw bad(where, `${JSON.stringify(v)} is not a log level`, `give one of ${LOG_LEVELS.join(', ')}`);
  return v as LogLevel;
}

/** One model's entry (from a file or flags) checked, with `defaults` under it; relative paths from `baseDir`. */
export function modelConfig(
  raw: Record<string, unknown>,
  where: string,
  defaults: Partial<ModelConfig> = {},
): ModelConfig {
  for (const k of Object.keys(raw))
    if (!MODEL_KEYS.has(k))
      throw bad(`${where}.${k}`, 'is not a model option', `model options: ${[...MODEL_KEYS].join(', ')}`);
  const m = { ...MODEL_DEFAULTS, ...defaults, ...raw } as Record<string, unknown>;
  if (typeof m.path !== 'string' || !m.path) throw bad(`${where}.path`, 'is missing', 'give the model file');
  const name = typeof m.name === 'string' && m.name ? m.name : defaultModelName(m.path);
  if (!/^[A-Za-z0-9_.-]+$/.test(name))
    throw bad(`${where}.name`, `'${name}' is not a URL-safe name`, 'use letters, digits, _ . -');
  if (!SERVE_TARGETS.includes(m.target as ServeTarget))
    throw bad(
      `${where}.target`,
      `${JSON.stringify(m.target)} is not a target`,
      `give one of ${SERVE_TARGETS.join(', ')}`,
    );
  const out: ModelConfig = {
    name,
    path: m.path,
    threads: int(m.threads, `${where}.threads`, 1, 64),
    instances: int(m.instances, `${where}.instances`, 1, 64),
    target: m.target as ServeTarget,
    preferred_batch_sizes: intList(m.preferred_batch_sizes, `${where}.preferred_batch_sizes`),
    max_queue_delay_ms: int(m.max_queue_delay_ms, `${where}.max_queue_delay_ms`, 0),
    max_queue_size: int(m.max_queue_size, `${where}.max_queue_size`, 0),
    timeout_ms: int(m.timeout_ms, `${where}.timeout_ms`, 0),
  };
  if (m.labels !== undefined) {
    if (typeof m.labels !== 'string') throw bad(`${where}.labels`, 'is not a file name', 'give a labels file');
    out.labels = m.labels;
  }
  if (m.max_batch_size !== undefined) out.max_batch_size = int(m.max_batch_size, `${where}.max_batch_size`, 0);
  if (m.input_shapes !== undefined) out.input_shapes = record(m.input_shapes, `${where}.input_shapes`, intList);
  if (m.dims !== undefined) out.dims = record(m.dims, `${where}.dims`, dimValue);
  return out;
}

/** A config file's text (YAML or JSON, by extension; YAML is a superset of JSON) to a checked config. */
export async function parseConfigFile(path: string, defaults: Partial<ModelConfig> = {}): Promise<ServeConfig> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new KilnError('E_IO', `cannot read the config file ${path}: ${(e as Error).message}`, {
      hint: 'give --config a JSON or YAML file',
    });
  }
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(path)
      ? (await importOptional<typeof import('yaml')>('yaml')).parse(text)
      : (JSON.parse(text) as unknown);
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw bad(path, `is not valid ${/\.ya?ml$/i.test(path) ? 'YAML' : 'JSON'}: ${(e as Error).message}`, 'fix it');
  }
  return serveConfig(raw, path, dirname(resolve(path)), defaults);
}

/** A parsed config object checked; model paths and labels relative to `baseDir`. */
export function serveConfig(
  raw: unknown,
  where: string,
  baseDir: string,
  defaults: Partial<ModelConfig> = {},
): ServeConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw bad(where, 'is not a map of options', 'write e.g. { "models": [{ "path": "model.kiln" }] }');
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r))
    if (!SERVER_KEYS.has(k)) throw bad(`${where}: ${k}`, 'is not an option', `options: ${[...SERVER_KEYS].join(', ')}`);
  const models = r.models ?? [];
  if (!Array.isArray(models)) throw bad(`${where}: models`, 'is not a list', 'write models: [{ path: ... }]');
  const cfg: ServeConfig = {
    host: typeof r.host === 'string' ? r.host : SERVE_DEFAULTS.host,
    port: r.port === undefined ? SERVE_DEFAULTS.port : int(r.port, `${where}: port`, 0, 65535),
    body_limit: r.body_limit === undefined ? SERVE_DEFAULTS.body_limit : int(r.body_limit, `${where}: body_limit`, 1),
    log_level: r.log_level === undefined ? SERVE_DEFAULTS.log_level : logLevel(r.log_level, `${where}: log_level`),
    models: models.map((m, i) => {
      const entry = modelConfig(m as Record<string, unknown>, `${where}: models[${i}]`, defaults);
      entry.path = resolve(baseDir, entry.path);
      if (entry.labels) entry.labels = resolve(baseDir, entry.labels);
      return entry;
    }),
  };
  if (r.demo !== undefined) cfg.demo = String(r.demo);
  return cfg;
}

/** Model names must be unique: the URL names the model. */
export function checkUniqueNames(models: ModelConfig[]): void {
  const seen = new Set<string>();
  for (const m of models) {
    if (seen.has(m.name))
      throw bad('--models', `two models are named '${m.name}'`, 'name them: --models NAME=PATH (or name: in the file)');
    seen.add(m.name);
  }
  if (models.length === 0)
    throw bad('kiln serve', 'no models given', 'kiln serve --models [NAME=]PATH... or --config FILE');
}
