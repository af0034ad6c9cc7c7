// One served model: its artifact loaded on a worker thread (the server's event loop never runs a kernel), its
// KServe v2 metadata, request checking, and the stacking of a batch of requests into one run() and back.
//
// Batching modes:
//  - 'dynamic': every input's and output's leading dim is the same symbol (artifact dims, issue 15's ABI); a batch
//    of R rows runs as R rows. max_batch_size defaults to the symbol's upper bound.
//  - 'padded': a static model whose inputs and outputs all lead with the same size N, served with max_batch_size
//    <= N: a batch of R rows is stacked, zero-padded to N rows, run, and the padding rows' results dropped.
//  - 'none' (max_batch_size 0): one request per run(), at exactly the model's shapes.
import { existsSync, readFileSync } from 'node:fs';
import type { ArtifactHeader, IOBinding } from '../runtime/artifact-format.js';
import { ARRAY, type DType, type TypedArray } from '../runtime/dtype.js';
import { KilnError } from '../runtime/errors.js';
import { formatShape, sizeOf, type Tensor } from '../runtime/tensor.js';
import type { LoadedModel } from '../runtime/index.js';
import { load } from '../node/runtime.js';
import { DynamicBatcher, type BatchStats } from './batcher.js';
import type { ModelConfig } from './config.js';
import { V2_DATATYPE } from './protocol.js';

type Dim = number | string;
/** An input or output binding with the symbolic dims that artifacts with dynamic shapes carry (issue 15). */
type Binding = IOBinding & { dims?: Dim[] };
type Symbols = { name: string; min: number; max: number }[];

export type BatchMode = 'dynamic' | 'padded' | 'none';

export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

const dimsOf = (b: Binding): Dim[] => b.dims ?? b.shape;

/** A checked request: its feeds, its rows on the batch dim (1 without batching) and its stacking key. */
export interface ModelRequest {
  feeds: Record<string, Tensor>;
  rows: number;
  key: string;
}

export class ServedModel {
  readonly batcher: DynamicBatcher<Record<string, Tensor>, Record<string, Tensor>>;
  readonly mode: BatchMode;
  readonly maxBatchSize: number;
  /** Rows a padded model always runs (its static leading dim). */
  private readonly paddedRows: number;
  private readonly symbols: Map<string, { min: number; max: number }>;
  /** Request data nobody reads after the run (check(inputs, true)): a run may move it to the worker. */
  private readonly disposable = new WeakSet<object>();

  private constructor(
    readonly config: ModelConfig,
    readonly artifact: Uint8Array,
    /** One loaded copy per instance, each on its own worker thread. */
    private readonly instances: LoadedModel[],
    readonly labels: string[] | undefined,
    onBatch: (s: BatchStats) => void,
  ) {
    const header = instances[0].header as ArtifactHeader & { symbols?: Symbols };
    this.symbols = new Map((header.symbols ?? []).map((s) => [s.name, { min: s.min, max: s.max }]));
    const all = [...this.inputs, ...this.outputs];
    const lead = all.map((b) => dimsOf(b)[0]);
    const symbol = typeof lead[0] === 'string' && lead.every((d) => d === lead[0]) ? lead[0] : undefined;
    const where = `model '${config.name}'`;
    const want = config.max_batch_size;
    if (symbol !== undefined && want !== 0) {
      const max = this.symbols.get(symbol)?.max ?? this.inputs[0].shape[0];
      if (want !== undefined && want > max)
        throw new KilnError('E_USAGE', `${where}: max_batch_size ${want} is above its batch dim's bound ${max}`, {
          hint: `use max_batch_size <= ${max}, or compile with a larger range for '${symbol}'`,
        });
      this.mode = 'dynamic';
      this.maxBatchSize = want ?? max;
      this.paddedRows = 0;
    } else if (want !== undefined && want > 0) {
      const n = this.inputs[0].shape[0];
      const fixed = all.every((b) => b.shape.length > 0 && b.shape[0] === n && typeof dimsOf(b)[0] === 'number');
      if (!fixed || want > n)
        throw new KilnError(
          'E_USAGE',
          `${where}: max_batch_size ${want} needs every input and output to lead with a batch dim of at least ${want}; it has ${all.map((b) => `${b.name}${formatShape(dimsOf(b))}`).join(', ')}`,
          {
            hint: `compile it with a leading batch dim (e.g. --input-shape ${this.inputs[0].name}=${[want, ...this.inputs[0].shape.slice(1)].join(',')}), or serve it with max_batch_size 0`,
          },
        );
      this.mode = 'padded';
      this.maxBatchSize = want;
      this.paddedRows = n;
    } else {
      this.mode = 'none';
      this.maxBatchSize = 0;
      this.paddedRows = 0;
    }
    for (const b of config.preferred_batch_sizes)
      if (b > this.maxBatchSize)
        throw new KilnError(
          'E_USAGE',
          `${where}: preferred batch size ${b} is above max_batch_size ${this.maxBatchSize}`,
          {
            hint: 'list sizes from 1 to max_batch_size',
          },
        );
    this.batcher = new DynamicBatcher(
      config.name,
      {
        maxBatchSize: this.maxBatchSize,
        preferredBatchSizes: config.preferred_batch_sizes,
        maxQueueDelayMs: config.max_queue_delay_ms,
        maxQueueSize: config.max_queue_size,
        timeoutMs: config.timeout_ms,
        instances: instances.length,
      },
      (reqs, instance) => this.runBatch(reqs, instances[instance]),
      onBatch,
    );
  }

  /** Reads (or compiles) the model and loads it on a worker thread. */
  static async open(
    config: ModelConfig,
    log: (msg: string) => void,
    onBatch: (s: BatchStats) => void = () => {},
  ): Promise<ServedModel> {
    const { path } = config;
    if (!existsSync(path))
      throw new KilnError('E_IO', `model '${config.name}': no file at ${path}`, {
        hint: 'give an .onnx model or a .kiln artifact',
      });
    let artifact: Uint8Array = readFileSync(path);
    if (!path.endsWith('.kiln')) {
      const t0 = performance.now();
      const { compile } = await import('../compiler/compile.js');
      artifact = (
        await compile(artifact, {
          modelPath: path,
          target: config.target,
          ...(config.input_shapes ? { inputShapes: config.input_shapes } : {}),
          ...(config.dims ? { dims: config.dims } : {}),
        })
      ).artifact;
      log(
        `model '${config.name}': compiled ${path} in ${((performance.now() - t0) / 1000).toFixed(1)} s (${(artifact.length / 1048576).toFixed(1)} MiB)`,
      );
    }
    const labels = config.labels ? readLabels(config.labels) : undefined;
    // timeoutMs puts each instance on its own worker thread (with its thread pool); Infinity: runs are not cut short.
    const instances: LoadedModel[] = [];
    try {
      for (let i = 0; i < config.instances; i++)
        instances.push(
          await load(artifact.slice(), {
            threads: config.threads,
            target: config.target,
            timeoutMs: Number.POSITIVE_INFINITY,
            log: (msg) => {
              if (i === 0) log(`model '${config.name}': ${msg}`);
            },
          }),
        );
      const served = new ServedModel(config, artifact, instances, labels, onBatch);
      log(
        `model '${config.name}': ready, ${instances.length} instance(s) on ${instances[0].threads} thread(s) each, ${served.runsOn}, ${served.mode === 'none' ? 'no batching' : `${served.mode} batches of up to ${served.maxBatchSize}`}`,
      );
      return served;
    } catch (e) {
      for (const m of instances) m.dispose();
      throw e;
    }
  }

  get name(): string {
    return this.config.name;
  }
  /** What runs the kernels: WebAssembly, or the artifact's native code (target 'native' on a CPU that has it). */
  get runsOn(): 'wasm' | 'native' {
    return this.instances[0].runsOn ?? 'wasm';
  }
  get inputs(): readonly Binding[] {
    return this.instances[0].inputs;
  }
  get outputs(): readonly Binding[] {
    return this.instances[0].outputs;
  }

  /** KServe v2 shapes: -1 for a dynamic dim; with batching, the leading dim is -1 (Triton's convention). */
  private v2Shape(b: Binding): number[] {
    return dimsOf(b).map((d, i) => (typeof d === 'string' || (i === 0 && this.mode !== 'none') ? -1 : d));
  }

  metadata(): {
    name: string;
    versions: string[];
    platform: string;
    inputs: TensorMetadata[];
    outputs: TensorMetadata[];
  } {
    const meta = (b: Binding) => ({ name: b.name, datatype: V2_DATATYPE[b.dtype], shape: this.v2Shape(b) });
    return {
      name: this.name,
      versions: ['1'],
      platform: 'kiln',
      inputs: this.inputs.map(meta),
      outputs: this.outputs.map(meta),
    };
  }

  /** Triton's model configuration view (GET /v2/models/NAME/config). */
  modelConfig(): Record<string, unknown> {
    return {
      name: this.name,
      platform: 'kiln',
      max_batch_size: this.maxBatchSize,
      batching: this.mode,
      dynamic_batching: {
        preferred_batch_sizes: this.config.preferred_batch_sizes,
        max_queue_delay_ms: this.config.max_queue_delay_ms,
        max_queue_size: this.config.max_queue_size,
        timeout_ms: this.config.timeout_ms,
      },
      threads: this.config.threads,
      instance_group: [{ count: this.instances.length, kind: 'KIND_CPU' }],
      target: this.config.target,
      runs_on: this.runsOn,
    };
  }

  /**
   * Checks a request's tensors against the model's inputs: names, dtypes, shapes (dynamic dims within range).
   * `disposable`: the caller made the tensors for this request and will not read them again.
   */
  check(inputs: Map<string, Tensor>, disposable = false): ModelRequest {
    const where = `model '${this.name}'`;
    const names = this.inputs.map((b) => b.name);
    for (const name of inputs.keys())
      if (!names.includes(name))
        throw new KilnError('E_INPUT', `${where} has no input '${name}'`, {
          hint: `its inputs: ${this.inputs.map((b) => `${b.name} ${V2_DATATYPE[b.dtype]}${formatShape(this.v2Shape(b))}`).join(', ')}`,
        });
    const bound = new Map<string, number>();
    let rows = 1;
    const feeds: Record<string, Tensor> = {};
    for (const b of this.inputs) {
      const t = inputs.get(b.name);
      if (!t)
        throw new KilnError('E_INPUT', `${where}: input '${b.name}' is missing`, {
          hint: `send every input: ${names.join(', ')}`,
        });
      if (t.dtype !== b.dtype)
        throw new KilnError(
          'E_INPUT',
          `${where}: input '${b.name}' is ${V2_DATATYPE[t.dtype]}, not ${V2_DATATYPE[b.dtype]}`,
          {
            hint: `send '${b.name}' as ${V2_DATATYPE[b.dtype]}`,
          },
        );
      const dims = dimsOf(b);
      const shapeHint = `'${b.name}' takes ${formatShape(this.v2Shape(b))} (-1: any size${this.mode !== 'none' ? `; the first, 1 to ${this.maxBatchSize}` : ''})`;
      if (t.shape.length !== dims.length)
        throw new KilnError(
          'E_INPUT',
          `${where}: input '${b.name}' has shape ${formatShape(t.shape)}, rank ${t.shape.length}, not ${dims.length}`,
          {
            hint: shapeHint,
          },
        );
      t.shape.forEach((n, i) => {
        const d = dims[i];
        const batchDim = i === 0 && this.mode !== 'none';
        let ok: boolean;
        if (batchDim) {
          ok = n >= 1 && n <= this.maxBatchSize;
          if (ok && b === this.inputs[0]) rows = n;
          else if (ok) ok = n === rows;
        } else if (typeof d === 'number') ok = n === d;
        else {
          const r = this.symbols.get(d);
          ok = (r === undefined || (n >= r.min && n <= r.max)) && (bound.get(d) ?? n) === n;
          bound.set(d, n);
        }
        if (!ok)
          throw new KilnError(
            'E_INPUT',
            `${where}: input '${b.name}' has shape ${formatShape(t.shape)}; dim ${i} (${n}) does not fit`,
            {
              hint:
                shapeHint +
                (bound.size ? `; symbols so far: ${[...bound].map(([k, v]) => `${k}=${v}`).join(', ')}` : ''),
            },
          );
      });
      feeds[b.name] = t;
    }
    const key = this.inputs.map((b) => formatShape(feeds[b.name].shape.slice(this.mode === 'none' ? 0 : 1))).join(';');
    if (disposable) for (const t of Object.values(feeds)) this.disposable.add(t.data);
    return { feeds, rows, key };
  }

  /** Queues a checked request in the batcher. */
  infer(req: ModelRequest, timeoutMs?: number): Promise<Record<string, Tensor>> {
    return this.batcher.submit(req.feeds, req.rows, req.key, timeoutMs);
  }

  /** Stacks the requests on the batch dim (padded to the model's rows if static), runs once, splits the outputs. */
  private async runBatch(reqs: Record<string, Tensor>[], model: LoadedModel): Promise<Record<string, Tensor>[]> {
    // feeds the server made for the request alone, and the stacked ones made here, move to the worker uncopied
    if (this.mode === 'none') {
      const transferInputs = Object.values(reqs[0]).every((t) => this.disposable.has(t.data));
      return [await model.run(reqs[0], { transferInputs })];
    }
    const rows = reqs.map((r) => r[this.inputs[0].name].shape[0]);
    const total = rows.reduce((a, b) => a + b, 0);
    const runRows = this.mode === 'padded' ? this.paddedRows : total;
    const feeds: Record<string, Tensor> = {};
    for (const b of this.inputs) {
      const inner = reqs[0][b.name].shape.slice(1);
      const rowSize = sizeOf(inner);
      const data = new ARRAY[b.dtype](runRows * rowSize);
      let at = 0;
      for (const r of reqs) {
        data.set(r[b.name].data as never, at);
        at += r[b.name].shape[0] * rowSize;
      }
      feeds[b.name] = { dtype: b.dtype, shape: [runRows, ...inner], data };
    }
    const out = await model.run(feeds, { transferInputs: true });
    const results: Record<string, Tensor>[] = reqs.map(() => ({}));
    for (const b of this.outputs) {
      const t = out[b.name];
      const inner = t.shape.slice(1);
      const rowSize = sizeOf(inner);
      let at = 0;
      reqs.forEach((_, i) => {
        const n = rows[i] * rowSize;
        results[i][b.name] = {
          dtype: t.dtype,
          shape: [rows[i], ...inner],
          data: sliceCopy(t.data as TypedArray, t.dtype, at, n),
        };
        at += n;
      });
    }
    return results;
  }

  dispose(): void {
    for (const m of this.instances) m.dispose();
  }
}

function sliceCopy(data: TypedArray, dtype: DType, start: number, n: number): TypedArray {
  const out = new ARRAY[dtype](n);
  out.set(data.subarray(start, start + n) as never);
  return out;
}

/** Class names: a JSON array, or one per line. */
export function readLabels(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new KilnError('E_IO', `cannot read the labels file ${path}: ${(e as Error).message}`, {
      hint: 'give a file with one class name per line, or a JSON array of names',
    });
  }
  if (text.trimStart().startsWith('[')) {
    try {
      const v = JSON.parse(text) as unknown;
      if (Array.isArray(v)) return v.map(String);
    } catch {}
    throw new KilnError('E_IO', `the labels file ${path} is not a JSON array`, { hint: 'give a JSON array of names' });
  }
  return text.split(/\r?\n/).filter((l, i, all) => l !== '' || i < all.length - 1);
}
