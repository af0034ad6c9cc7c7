// npm run bench:serve [-- --models mobilenet_v2,bert --concurrency 1,8,32 --seconds 5 --peers kiln,kiln-nobatch,ort,flask
//                         --target wasm|native --threads 2 --instances 1]
//
// The model server under load, on loopback only: autocannon sends the same KServe v2 binary-data request (one
// image, or one 128-token sequence) to each server in turn, for a bounded time per cell, and reports throughput
// and p50/p99 latency. Servers, each its own process on the same machine, one at a time:
//  - kiln          `kiln serve --models` with dynamic batching: one artifact for batches 1..8 (the model exported with
//                  a dynamic batch axis), a batch of R requests runs as R rows; max_queue_delay_ms 2
//  - kiln-nobatch  the same server with a batch-1 artifact and max_batch_size 0
//  Kiln's kernels run as WebAssembly or (--target native) as the artifacts' x86-64 code for this CPU; Kiln logs at
//  'warn' (no line per request), as the onnxruntime-node peer logs nothing.
//  - ort           onnxruntime-node behind fastify, one session.run() per request (src/bench/ort-serve-peer.ts)
//  - flask         the PyTorch tutorial's Flask app, eager PyTorch (scripts/bench_flask_peer.py; Flask from the venv
//                  or Debian's python3-flask)
// Prints a markdown table and the ratios the issue's targets name; writes bench/results/serve-latest.json.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { compile } from '../compiler/compile.js';
import { randomF32 } from '../frontend/onnx/model-builder.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'mobilenet_v2,bert' },
    concurrency: { type: 'string', default: '1,8,32' },
    seconds: { type: 'string', default: '5' },
    peers: { type: 'string', default: 'kiln,kiln-nobatch,ort,flask' },
    threads: { type: 'string', default: '2' },
    target: { type: 'string', default: 'wasm' },
    instances: { type: 'string', default: '1' },
  },
});
const MODELS = values.models.split(',');
const CONCURRENCY = values.concurrency.split(',').map(Number);
const SECONDS = Number(values.seconds);
const PEERS = values.peers.split(',');
const THREADS = values.threads;
const INSTANCES = values.instances;
if (values.target !== 'wasm' && values.target !== 'native') throw new Error('--target wasm or native');
const TARGET = values.target;
/** Compile options of the target: native code for this machine's CPU level. */
const TARGET_OPTS = TARGET === 'native' ? ({ target: 'native', cpu: 'native' } as const) : {};
const DELAY_MS = 2;
const MAX_BATCH = 8;
const CACHE = join('.cache', 'bench-serve');
const PYTHON = join('.venv', 'bin', 'python');

interface ModelSetup {
  onnx: string;
  /** Compile options of the batch 1..8 (batching) and batch-1 artifacts. */
  batched: { path: string; opts: Record<string, unknown> };
  single: { path: string; opts: Record<string, unknown> };
  request: { header: Buffer; body: Buffer };
}

/** One KServe v2 binary-data request: the JSON header, then the tensors' bytes. */
function binaryRequest(inputs: { name: string; datatype: string; shape: number[]; data: ArrayBufferView }[]) {
  const header = Buffer.from(
    JSON.stringify({
      inputs: inputs.map((i) => ({
        name: i.name,
        datatype: i.datatype,
        shape: i.shape,
        parameters: { binary_data_size: i.data.byteLength },
      })),
      parameters: { binary_data_output: true },
    }),
  );
  const blobs = inputs.map((i) => Buffer.from(i.data.buffer, i.data.byteOffset, i.data.byteLength));
  return { header, body: Buffer.concat([header, ...blobs]) };
}

function setup(model: string): ModelSetup {
  if (model === 'mobilenet_v2') {
    return {
      onnx: '.cache/models/mobilenet_v2/model.onnx',
      batched: { path: '.cache/models/mobilenet_v2_dynamic/model.onnx', opts: { dims: { batch: [1, MAX_BATCH] } } },
      single: { path: '.cache/models/mobilenet_v2/model.onnx', opts: {} },
      request: binaryRequest([
        {
          name: 'input',
          datatype: 'FP32',
          shape: [1, 3, 224, 224],
          data: randomF32([1, 3, 224, 224], 1).data as Float32Array,
        },
      ]),
    };
  }
  if (model === 'bert') {
    const ids = new BigInt64Array(128).map((_, i) => BigInt(i < 100 ? 1 + ((i * 37) % 999) : 0));
    const mask = new BigInt64Array(128).map((_, i) => (i < 100 ? 1n : 0n));
    return {
      onnx: '.cache/models/bert/model.onnx',
      batched: {
        path: '.cache/models/bert_dynamic/model.onnx',
        opts: { dims: { batch: [1, MAX_BATCH], sequence: 128 } },
      },
      single: { path: '.cache/models/bert/model.onnx', opts: {} },
      request: binaryRequest([
        { name: 'input_ids', datatype: 'INT64', shape: [1, 128], data: ids },
        { name: 'attention_mask', datatype: 'INT64', shape: [1, 128], data: mask },
      ]),
    };
  }
  throw new Error(`unknown model ${model}: mobilenet_v2 or bert`);
}

async function artifact(name: string, src: { path: string; opts: Record<string, unknown> }): Promise<string> {
  mkdirSync(CACHE, { recursive: true });
  const out = join(CACHE, `${name}.kiln`);
  const t0 = performance.now();
  const r = await compile(readFileSync(src.path), { modelPath: src.path, ...src.opts, ...TARGET_OPTS });
  writeFileSync(out, r.artifact);
  console.error(`compiled ${name} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return out;
}

let nextPort = 18600;

async function startServer(cmd: string, args: string[]): Promise<{ proc: ChildProcess; url: string }> {
  const port = nextPort++;
  // stderr kept for a failed start only (PyTorch warns once per thread here: NNPACK on this CPU).
  const proc = spawn(
    cmd,
    args.map((a) => a.replace('{PORT}', String(port))),
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${cmd} ${args.join(' ')} exited (${proc.exitCode}): ${stderr}`);
    try {
      if ((await fetch(`${url}/v2/health/ready`)).ok) return { proc, url };
    } catch {}
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`${cmd} did not get ready`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

interface Row {
  model: string;
  peer: string;
  concurrency: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function load(url: string, model: string, req: ModelSetup['request'], connections: number) {
  const opts = {
    url: `${url}/v2/models/${model}/infer`,
    connections,
    duration: SECONDS,
    timeout: 120,
    method: 'POST' as const,
    headers: {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(req.header.length),
    },
    body: req.body,
  };
  // A short warm-up first (first runs, JIT, connection set-up), then the measured run. Requests still queued in
  // the server when a run stops would delay the next one: a single request after each run waits them out.
  const settle = () => fetch(opts.url, { method: 'POST', headers: opts.headers, body: new Uint8Array(req.body) });
  await autocannon({ ...opts, duration: 1 });
  await settle();
  const r = await autocannon(opts);
  await settle();
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.non2xx };
}

const rows: Row[] = [];
const loadBefore = loadavg()[0];
const FLASK_PEER = 'scripts/bench_flask_peer.py';
const haveFlask = existsSync(PYTHON) && spawnSync(PYTHON, [FLASK_PEER, '--check'], { stdio: 'ignore' }).status === 0;
for (const model of MODELS) {
  const s = setup(model);
  const servers: Record<string, [string, string[]]> = {};
  if (PEERS.includes('kiln'))
    servers.kiln = [
      process.execPath,
      [
        'dist/cli/kiln.js',
        'serve',
        '--models',
        `${model}=${await artifact(`${model}-b1-${MAX_BATCH}-${TARGET}`, s.batched)}`,
        '--max-batch-size',
        String(MAX_BATCH),
        '--max-queue-delay-ms',
        String(DELAY_MS),
        '--threads',
        THREADS,
        '--target',
        TARGET,
        '--instances',
        INSTANCES,
        '--log-level',
        'warn',
        '--port',
        '{PORT}',
      ],
    ];
  if (PEERS.includes('kiln-nobatch'))
    servers['kiln-nobatch'] = [
      process.execPath,
      [
        'dist/cli/kiln.js',
        'serve',
        '--models',
        `${model}=${await artifact(`${model}-b1-${TARGET}`, s.single)}`,
        '--max-batch-size',
        '0',
        '--threads',
        THREADS,
        '--target',
        TARGET,
        '--instances',
        INSTANCES,
        '--log-level',
        'warn',
        '--port',
        '{PORT}',
      ],
    ];
  if (PEERS.includes('ort')) servers.ort = [process.execPath, ['dist/bench/ort-serve-peer.js', s.onnx, '{PORT}']];
  if (PEERS.includes('flask')) {
    if (haveFlask) servers.flask = [PYTHON, [FLASK_PEER, model, '{PORT}']];
    else console.error('flask peer skipped: Flask is not installed (apt-get install python3-flask)');
  }
  for (const [peer, [cmd, args]] of Object.entries(servers)) {
    const { proc, url } = await startServer(cmd, args);
    try {
      for (const c of CONCURRENCY) {
        const r = await load(url, model, s.request, c);
        rows.push({ model, peer, concurrency: c, ...r });
        console.error(
          `${model} ${peer} c=${c}: ${r.rps.toFixed(1)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms${r.errors ? `, ${r.errors} errors` : ''}`,
        );
      }
    } finally {
      await stop(proc);
    }
  }
}

const cell = (model: string, peer: string, c: number) =>
  rows.find((r) => r.model === model && r.peer === peer && r.concurrency === c);
const ratio = (a?: Row, b?: Row) => (a && b && b.rps > 0 ? `${(a.rps / b.rps).toFixed(2)}x` : 'n/a');
const lines = [
  `${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${loadBefore.toFixed(1)} before and ${loadavg()[0].toFixed(1)} after (other jobs share the cores: cells run one after another, so compare them with that in mind), ${SECONDS} s per cell, loopback, Kiln --target ${TARGET} --threads ${THREADS} --instances ${INSTANCES}, max_batch_size ${MAX_BATCH}, max_queue_delay_ms ${DELAY_MS}`,
  '',
  '| model | server | concurrency | req/s | p50 ms | p99 ms | errors |',
  '|---|---|---|---|---|---|---|',
  ...rows.map(
    (r) => `| ${r.model} | ${r.peer} | ${r.concurrency} | ${r.rps.toFixed(1)} | ${r.p50} | ${r.p99} | ${r.errors} |`,
  ),
  '',
];
const top = Math.max(...CONCURRENCY);
for (const model of MODELS) {
  const k = cell(model, 'kiln', top);
  const single = cell(model, 'kiln-nobatch', 1);
  lines.push(
    `${model} at concurrency ${top}: batching on/off ${ratio(k, cell(model, 'kiln-nobatch', top))}, vs Flask + PyTorch ${ratio(k, cell(model, 'flask', top))}, vs onnxruntime-node unbatched ${ratio(k, cell(model, 'ort', top))}` +
      (k && single ? `; p99 ${k.p99} ms vs 2 x single-request p50 + delay = ${2 * single.p50 + DELAY_MS} ms` : ''),
  );
}
console.log(lines.join('\n'));
mkdirSync('bench/results', { recursive: true });
writeFileSync(
  'bench/results/serve-latest.json',
  `${JSON.stringify({ date: new Date().toISOString(), target: TARGET, threads: THREADS, instances: INSTANCES, load: [loadBefore, loadavg()[0]], rows }, null, 2)}\n`,
);
