// npm run bench [-- --models resnet18,matmul --runs 5 --threads 1,2 --budget 60]
//
// For each model (the generated fixtures in .cache/models plus a MatMul 1024^3 built here) compiles it with Kiln,
// checks Kiln's outputs against onnxruntime-node, then times Kiln, onnxruntime-web (WASM backend) and
// onnxruntime-node in the same process, alternating them round by round (after a warm-up) so machine noise hits
// all three alike. onnxruntime-web reads its thread count once per process, so each thread count runs in its own
// child process; this parent measures the WebAssembly SIMD128 peak, then prints one markdown table and writes
// bench/results/latest.json.
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, rmSync, mkdtempSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile } from '../compiler/compile.js';
import { load } from '../index.js';
import type { LoadedModel } from '../runtime/index.js';
import type { Tensor } from '../runtime/tensor.js';
import { KilnError } from '../runtime/errors.js';
import { decodeTensorProto } from '../frontend/onnx/tensor-proto.js';
import { DEFAULT_TOLERANCE, compareTensors } from '../conformance/compare.js';
import { ParallelScaling, measureSimdPeak, type SimdPeak } from './simd-peak.js';
import { matmulModel } from './matmul-model.js';
import { findLlvm } from '../codegen/native/toolchain.js';
import { median } from '../util/stats.js';
import { ROUTE_MODELS, type RouteResult, benchImportRoutes, hasRouteFixture, routesTable } from './import-routes.js';

/**
 * Pause before each timed run at T > 1 threads: onnxruntime-web's worker threads spin 20-30 ms after a run here
 * (session option allow_spinning=0 notwithstanding), and a run started meanwhile shares its cores with them
 * (Kiln's 2-thread ResNet-18 right after ORT-web: 47 ms; 50 ms later: 33 ms).
 */
const SETTLE_MS = 50;
const ALL_MODELS = [
  'resnet18',
  'resnet18_qdq',
  'mobilenet_v2',
  'mobilenet_v2_qdq',
  'squeezenet1_1',
  'super_resolution',
  'bert',
  'lstm_classifier',
  'matmul',
];
/**
 * Quantized models (scripts/gen_quantized_models.py) and the float32 model each was quantized from: Kiln's float32
 * build of that model runs in the same rounds, so the table shows what the integer kernels gain.
 */
const FLOAT_BASE: Record<string, string> = { mobilenet_v2_qdq: 'mobilenet_v2', resnet18_qdq: 'resnet18' };
const MATMUL = 1024;

/** Wall time per run, and the process's CPU time per run (user + system, all threads: meaningful at 1 thread). */
interface Timing {
  minMs: number;
  medianMs: number;
  runs: number;
  times: number[];
  cpuMedianMs?: number;
}
interface RuntimeResult extends Partial<Timing> {
  na?: string;
  error?: string;
  maxAbsErr?: number;
  agrees?: boolean;
  mismatch?: string;
}
interface KilnResult extends RuntimeResult {
  compileMs?: number;
  kernels?: number;
  calls?: number;
  flopsPerRun?: number;
  gflops?: number;
  peakPercent?: number;
}
/**
 * kilnVsOrtWeb / kilnVsOrtWebCpu: the median over rounds of (ORT-web time / Kiln time) within the round: both ran
 * seconds apart, so a slow spell of a shared machine scales both and cancels out of the ratio.
 */
/**
 * kilnVs1Thread (T > 1): the same, of Kiln on 1 thread over Kiln on T threads, both loaded in this process and run
 * back to back. machineScaling: per round, the SIMD peak loop's T-thread over 1-thread rate just before and after
 * those two runs (the lower of the two; median over rounds). kilnVs1ThreadFullCores: kilnVs1Thread over the rounds
 * where that probe read at least 0.95 T (the machine gave T full cores), with their count.
 */
interface ThreadScaling {
  machineScaling: number;
  kilnVs1ThreadFullCores?: number;
  fullCoreRounds: number;
  rounds: number;
  perRound: { kiln1Ms: number[]; machine: number[] };
}
interface ModelResult {
  model: string;
  threads: number;
  kiln: KilnResult;
  kilnRelaxed?: KilnResult;
  /** Kiln's float32 build of the model a quantized model was made from (FLOAT_BASE), and both artifacts' sizes. */
  kilnFloat?: RuntimeResult & { model: string; artifactBytes?: number };
  artifactBytes?: number;
  /** Median over rounds of (Kiln float32 time / Kiln time on the quantized model). */
  kilnVsFloat?: number;
  /** Kiln's native code (target 'native', --cpu native) on T threads. */
  kilnNative?: KilnResult;
  ortWeb: RuntimeResult;
  ortNode: RuntimeResult;
  kilnVsOrtWeb?: number;
  kilnVsOrtWebCpu?: number;
  kilnVs1Thread?: number;
  /** Medians of per-round ratios: ORT-node time / Kiln native time, by wall and by CPU time; Kiln wasm / native. */
  nativeVsOrtNode?: number;
  nativeVsOrtNodeCpu?: number;
  nativeVsKiln?: number;
  scaling?: ThreadScaling;
  /** T > 1: Kiln native on 1 thread over native on T threads, as kilnVs1Thread, and its scaling rounds. */
  nativeVs1Thread?: number;
  nativeScaling?: ThreadScaling;
  error?: string;
}
interface BenchReport {
  date: string;
  node: string;
  cpu: string;
  cores: number;
  command: string;
  loadavg: { start: number[]; end?: number[] };
  config: { models: string[]; runs: number; threads: number[]; budgetS: number; note: string };
  simdPeak?: SimdPeak;
  results: ModelResult[];
  /** Kiln's .pt2 import against its ONNX import of the same PyTorch module (src/bench/import-routes.ts). */
  importRoutes?: RouteResult[];
}

const stats = (times: number[], cpu: number[]): Timing => ({
  minMs: Math.min(...times),
  medianMs: median(times),
  runs: times.length,
  times,
  cpuMedianMs: median(cpu),
});
const log = (s: string) => process.stderr.write(`${s}\n`);

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      models: { type: 'string' },
      runs: { type: 'string' },
      threads: { type: 'string' },
      budget: { type: 'string' },
      out: { type: 'string' },
      'peak-ms': { type: 'string' },
      routes: { type: 'string' },
      worker: { type: 'string' },
      result: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const models = (values.models ?? ALL_MODELS.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const m of models)
    if (!ALL_MODELS.includes(m))
      throw new KilnError('E_USAGE', `unknown model '${m}'`, { hint: `known: ${ALL_MODELS.join(', ')}` });
  const threads = (values.threads ?? '1,2').split(',').map(Number);
  if (threads.some((t) => !Number.isInteger(t) || t < 1))
    throw new KilnError('E_USAGE', `bad --threads '${values.threads}'`, {
      hint: 'give whole numbers >= 1, comma-separated',
    });
  const runs = Number(values.runs ?? 10);
  if (!Number.isInteger(runs) || runs < 1)
    throw new KilnError('E_USAGE', `bad --runs '${values.runs}'`, { hint: 'give a whole number >= 1' });
  const budgetS = Number(values.budget ?? 60);
  const routes = values.routes === 'none' ? [] : (values.routes ?? ROUTE_MODELS.join(',')).split(',').filter(Boolean);
  for (const m of routes)
    if (!ROUTE_MODELS.includes(m))
      throw new KilnError('E_USAGE', `unknown --routes model '${m}'`, {
        hint: `known: ${ROUTE_MODELS.join(', ')}, or none`,
      });
  return { values, models, threads, runs, budgetS, routes, peakMs: Number(values['peak-ms'] ?? 1500) };
}

const USAGE = `npm run bench -- [--models ${ALL_MODELS.join(',')}] [--runs 10] [--threads 1,2] [--budget 60] [--out bench/results/latest.json]
  --runs     timed rounds per model (after one warm-up round); each round runs Kiln, ORT-web and ORT-node once
  --budget   seconds per model and thread count after which rounds stop early (at least 3 rounds are run)
  --routes   ${ROUTE_MODELS.join(',')} (default) or none: Kiln from .pt2 against Kiln from ONNX for the same PyTorch
             module (.cache/pytorch/<name>/model.pt2 and model.onnx, scripts/gen_pytorch_models.py), 1 thread`;

// ---------------------------------------------------------------------------------------------- worker

interface LoadedCase {
  name: string;
  bytes: Uint8Array;
  modelPath?: string;
  feeds: (names: string[]) => Record<string, Tensor>;
}

function loadCase(name: string): LoadedCase {
  if (name === 'matmul') {
    const { bytes, input } = matmulModel(MATMUL, MATMUL, MATMUL);
    return { name: `matmul ${MATMUL}^3`, bytes, feeds: () => ({ A: input }) };
  }
  const dir = join('.cache', 'models', name);
  const modelPath = join(dir, 'model.onnx');
  if (!existsSync(modelPath))
    throw new KilnError('E_IO', `no model at ${modelPath}`, { hint: 'generate the fixtures first: npm run fixtures' });
  const set = join(dir, 'test_data_set_0');
  const files = readdirSync(set)
    .filter((f) => f.startsWith('input_'))
    .sort((a, b) => Number(a.match(/\d+/)) - Number(b.match(/\d+/)));
  const tensors = files.map((f) => decodeTensorProto(readFileSync(join(set, f))));
  return {
    name,
    bytes: readFileSync(modelPath),
    modelPath,
    feeds: (names) => Object.fromEntries(names.map((n, i) => [n, tensors[i]])),
  };
}

type Ort = typeof import('onnxruntime-node');
type OrtSession = import('onnxruntime-node').InferenceSession;
const toOrt = (ort: Pick<Ort, 'Tensor'>, feeds: Record<string, Tensor>) =>
  Object.fromEntries(
    Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.shape)]),
  );
const fromOrt = (
  out: Record<string, { type: string; dims: readonly number[]; data: unknown }>,
): Record<string, Tensor> =>
  Object.fromEntries(
    Object.entries(out).map(([k, v]) => [
      k,
      { dtype: v.type as Tensor['dtype'], shape: [...v.dims], data: v.data as Float32Array },
    ]),
  );

/**
 * The step between adjacent values of a dequantized output (the smallest gap between its distinct values). A
 * quantized model agrees with ONNX Runtime within two steps: ORT computes the residual Adds and the pooling of a QDQ
 * model with its own integer operators (QLinearAdd, QLinearGlobalAveragePool, with fused multiply-adds), Kiln in
 * float32, and a value whose rounding tie falls differently moves by one step and can move a later one by another.
 * ORT-web and ORT-node differ from each other by as much on the same file.
 */
function quantizationStep(t: Tensor): number {
  const levels = [...new Set(Array.from(t.data as Float32Array))].sort((a, b) => a - b);
  return Math.min(...levels.slice(1).map((v, i) => v - levels[i]));
}

function agreement(
  got: Record<string, Tensor>,
  want: Record<string, Tensor>,
  quantized = false,
): { maxAbsErr: number; agrees: boolean; mismatch?: string } {
  let maxAbsErr = 0,
    mismatch: string | undefined;
  for (const [name, w] of Object.entries(want)) {
    const g = got[name];
    if (!g) {
      mismatch = `output ${name} missing`;
      maxAbsErr = Infinity;
      continue;
    }
    for (let i = 0; i < Math.min(g.data.length, w.data.length); i++) {
      const e = Math.abs(Number(g.data[i]) - Number(w.data[i]));
      if (e > maxAbsErr || Number.isNaN(e)) maxAbsErr = Number.isNaN(e) ? Infinity : e;
    }
    const bad = compareTensors(g, w, quantized ? { rtol: 0, atol: 2.001 * quantizationStep(w) } : DEFAULT_TOLERANCE);
    if (bad && !mismatch) mismatch = `${name}: ${bad.message}`;
  }
  return { maxAbsErr, agrees: !mismatch, mismatch };
}

async function benchModel(
  name: string,
  T: number,
  runs: number,
  budgetS: number,
  ortWeb: Ort,
  ortNode: Ort,
  probe?: ParallelScaling,
): Promise<ModelResult> {
  const c = loadCase(name);
  const res: ModelResult = { model: c.name, threads: T, kiln: {}, ortWeb: {}, ortNode: {} };
  // sessions
  const spin = T > 1 ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {};
  const nodeSession: OrtSession = await ortNode.InferenceSession.create(c.bytes, {
    intraOpNumThreads: T,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    ...spin,
  });
  const webSession: OrtSession = await ortWeb.InferenceSession.create(c.bytes, {
    executionProviders: ['wasm'],
    ...spin,
  });
  const feeds = c.feeds([...nodeSession.inputNames]);
  const nodeFeeds = toOrt(ortNode, feeds),
    webFeeds = toOrt(ortWeb, feeds);
  const ref = fromOrt((await nodeSession.run(nodeFeeds)) as never);
  Object.assign(res.ortWeb, agreement(fromOrt((await webSession.run(webFeeds)) as never), ref, !!FLOAT_BASE[name]));

  let kiln: LoadedModel | undefined, kilnRelaxed: LoadedModel | undefined, kiln1: LoadedModel | undefined;
  let kilnFloat: LoadedModel | undefined;
  try {
    const t0 = performance.now();
    const compiled = await compile(c.bytes, { modelPath: c.modelPath });
    res.kiln.compileMs = performance.now() - t0;
    res.artifactBytes = compiled.artifact.length;
    const base = FLOAT_BASE[name];
    if (base) {
      const b = loadCase(base);
      const floatBuild = await compile(b.bytes, { modelPath: b.modelPath });
      kilnFloat = await load(floatBuild.artifact, { threads: T, simd: 'baseline' });
      res.kilnFloat = { model: base, artifactBytes: floatBuild.artifact.length };
    }
    kiln = await load(compiled.artifact, { threads: T, simd: 'baseline' });
    // the thread speedup from runs seconds apart in this process (a child per thread count would time the two
    // in different phases of a shared machine)
    if (T > 1) kiln1 = await load(compiled.artifact, { threads: 1, simd: 'baseline' });
    try {
      kilnRelaxed = await load(compiled.artifact, { threads: T, simd: 'relaxed' });
      res.kilnRelaxed = agreement(kilnRelaxed.runSync(feeds), ref, !!base);
    } catch (e) {
      res.kilnRelaxed = { na: `n/a (${(e as Error).message.split('\n')[0].slice(0, 60)})` };
    }
    const h = kiln.header;
    res.kiln.kernels = h.kernels.length;
    res.kiln.calls = h.calls.length;
    res.kiln.flopsPerRun = h.calls.reduce((a, call) => a + h.kernels[call.kernel].flops, 0);
    Object.assign(res.kiln, agreement(kiln.runSync(feeds), ref, !!base));
  } catch (e) {
    res.kiln.error = (e as Error).message.split('\n')[0];
    kiln = undefined;
  }
  // native code for the best CPU level of this machine, on T threads (and on 1 beside it)
  let native: LoadedModel | undefined, native1: LoadedModel | undefined;
  if (!findLlvm()) res.kilnNative = { na: 'n/a (no LLVM tools)' };
  else {
    try {
      const t1 = performance.now();
      const nc = await compile(c.bytes, { modelPath: c.modelPath, target: 'native', cpu: 'native' });
      res.kilnNative = { compileMs: performance.now() - t1 };
      native = await load(nc.artifact, { target: 'native', threads: T });
      if (native.runsOn !== 'native') {
        res.kilnNative.na = `n/a (${native.nativeFallback})`;
        native.dispose();
        native = undefined;
      } else {
        Object.assign(res.kilnNative, agreement(native.runSync(feeds), ref));
        if (T > 1) native1 = await load(nc.artifact, { target: 'native', threads: 1 });
      }
    } catch (e) {
      res.kilnNative = { error: (e as Error).message.split('\n')[0] };
      native = undefined;
    }
  }
  const kilnLine =
    res.kiln.na ??
    res.kiln.error ??
    `max abs err vs ORT-node ${res.kiln.maxAbsErr!.toExponential(2)} ${res.kiln.agrees ? 'ok' : `MISMATCH (${res.kiln.mismatch})`}`;
  log(
    `[${c.name}, ${T} thread${T > 1 ? 's' : ''}] kiln: ${kilnLine}; ORT-web vs ORT-node max abs err ${res.ortWeb.maxAbsErr!.toExponential(2)}`,
  );

  // rounds: a warm-up round, then timed rounds in rotating order (Kiln on 1 thread runs beside Kiln on T threads)
  const runners: [
    keyof Pick<ModelResult, 'kiln' | 'kilnRelaxed' | 'kilnFloat' | 'kilnNative' | 'ortWeb' | 'ortNode'>,
    () => Promise<unknown> | unknown,
  ][] = [];
  if (kiln) {
    const k = kiln;
    runners.push(['kiln', () => k.runSync(feeds)]);
  }
  if (kilnRelaxed) {
    const k = kilnRelaxed;
    runners.push(['kilnRelaxed', () => k.runSync(feeds)]);
  }
  if (kilnFloat) {
    const k = kilnFloat;
    runners.push(['kilnFloat', () => k.runSync(feeds)]);
  }
  if (native) {
    const k = native;
    runners.push(['kilnNative', () => k.runSync(feeds)]);
  }
  runners.push(['ortWeb', () => webSession.run(webFeeds)], ['ortNode', () => nodeSession.run(nodeFeeds)]);
  for (const [, f] of runners) await f();
  kiln1?.runSync(feeds);
  native1?.runSync(feeds);
  const who = ['kiln', 'kilnRelaxed', 'kilnFloat', 'kilnNative', 'kiln1', 'native1', 'ortWeb', 'ortNode'];
  const times: Record<string, number[]> = Object.fromEntries(who.map((w) => [w, []]));
  const cpu: Record<string, number[]> = Object.fromEntries(who.map((w) => [w, []]));
  const timed = async (who: string, f: () => unknown) => {
    const t0 = performance.now(),
      c0 = process.cpuUsage();
    await f();
    times[who].push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu[who].push((c.user + c.system) / 1000);
  };
  const machine: number[] = [],
    machineNative: number[] = [];
  // on T threads and on 1 back to back (order alternating by round), the machine's own scaling around them
  const pair = async (r: number, many: string, f: () => unknown, one: () => unknown, probes: number[]) => {
    const before = probe?.measure();
    for (const v of r % 2 ? ['one', 'many'] : ['many', 'one'])
      await timed(v === 'many' ? many : many === 'kiln' ? 'kiln1' : 'native1', v === 'many' ? f : one);
    if (before !== undefined) probes.push(Math.min(before, probe!.measure()));
  };
  const end = performance.now() + budgetS * 1000;
  for (let r = 0; r < runs; r++) {
    if (r >= 3 && performance.now() > end) {
      log(`  budget of ${budgetS} s reached after ${r} rounds`);
      break;
    }
    for (let j = 0; j < runners.length; j++) {
      const [who, f] = runners[(r + j) % runners.length];
      if (T > 1) await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      const k1 = kiln1,
        n1 = native1;
      if (who === 'kiln' && k1) await pair(r, who, f, () => k1.runSync(feeds), machine);
      else if (who === 'kilnNative' && n1) await pair(r, who, f, () => n1.runSync(feeds), machineNative);
      else await timed(who, f);
    }
  }
  for (const [who] of runners) Object.assign(res[who]!, stats(times[who], cpu[who]));
  const scaling = (oneMs: number[], manyMs: number[], probes: number[]): [number, ThreadScaling | undefined] => {
    const speedups = oneMs.map((one, r) => one / manyMs[r]);
    if (!probes.length) return [median(speedups), undefined];
    const full = speedups.filter((_, r) => probes[r] >= 0.95 * T);
    return [
      median(speedups),
      {
        machineScaling: median(probes),
        kilnVs1ThreadFullCores: full.length ? median(full) : undefined,
        fullCoreRounds: full.length,
        rounds: probes.length,
        perRound: { kiln1Ms: oneMs, machine: probes },
      },
    ];
  };
  if (kiln1) [res.kilnVs1Thread, res.scaling] = scaling(times.kiln1, times.kiln, machine);
  if (native1) [res.nativeVs1Thread, res.nativeScaling] = scaling(times.native1, times.kilnNative, machineNative);
  native1?.dispose();
  if (res.kilnRelaxed?.medianMs && res.kiln.flopsPerRun)
    (res.kilnRelaxed as KilnResult).gflops = res.kiln.flopsPerRun / (res.kilnRelaxed.medianMs * 1e6);
  kiln?.dispose();
  kilnRelaxed?.dispose();
  kilnFloat?.dispose();
  kiln1?.dispose();
  if (native && times.kilnNative.length) {
    const kn = res.kilnNative!;
    if (res.kiln.flopsPerRun) kn.gflops = res.kiln.flopsPerRun / (kn.medianMs! * 1e6);
    res.nativeVsOrtNode = median(times.ortNode.map((o, r) => o / times.kilnNative[r]));
    res.nativeVsOrtNodeCpu = median(cpu.ortNode.map((o, r) => o / cpu.kilnNative[r]));
    if (times.kiln.length) res.nativeVsKiln = median(times.kiln.map((k, r) => k / times.kilnNative[r]));
  }
  native?.dispose();
  if (kiln && res.kiln.medianMs) {
    if (res.kiln.flopsPerRun) res.kiln.gflops = res.kiln.flopsPerRun / (res.kiln.medianMs * 1e6);
    res.kilnVsOrtWeb = median(times.ortWeb.map((w, r) => w / times.kiln[r]));
    res.kilnVsOrtWebCpu = median(cpu.ortWeb.map((w, r) => w / cpu.kiln[r]));
    if (kilnFloat) res.kilnVsFloat = median(times.kilnFloat.map((f, r) => f / times.kiln[r]));
  }
  const f = (t: RuntimeResult) => (t.medianMs === undefined ? '-' : `${t.medianMs.toFixed(2)} ms`);
  log(
    `  median: kiln ${res.kiln.na ? 'n/a' : f(res.kiln)}, ORT-web ${f(res.ortWeb)}, ORT-node ${f(res.ortNode)} (${times.ortWeb.length} rounds)`,
  );
  await webSession.release();
  await nodeSession.release();
  return res;
}

async function worker(T: number, opts: ReturnType<typeof parse>): Promise<void> {
  const ortWeb = (await import('onnxruntime-web')) as unknown as Ort;
  (ortWeb as unknown as typeof import('onnxruntime-web')).env.wasm.numThreads = T;
  const ortNode = await import('onnxruntime-node');
  const results: ModelResult[] = [];
  const probe = T > 1 ? await ParallelScaling.create(T) : undefined;
  for (const m of opts.models) {
    try {
      results.push(await benchModel(m, T, opts.runs, opts.budgetS, ortWeb, ortNode, probe));
    } catch (e) {
      log(`[${m}, ${T} threads] failed: ${(e as Error).message}`);
      results.push({
        model: m,
        threads: T,
        kiln: {},
        ortWeb: {},
        ortNode: {},
        error: (e as Error).message.split('\n')[0],
      });
    }
  }
  await probe?.dispose();
  writeFileSync(opts.values.result!, JSON.stringify(results));
}

// ---------------------------------------------------------------------------------------------- parent

const ms = (r: RuntimeResult) =>
  r.na ??
  (r.error
    ? `error: ${r.error.slice(0, 40)}`
    : r.minMs === undefined
      ? '-'
      : `${r.minMs.toFixed(2)} / ${r.medianMs!.toFixed(2)}`);

export function markdownTable(rep: BenchReport): string {
  const peak = rep.simdPeak?.mulAdd;
  const lines = [
    '| model | threads | Kiln min / median ms | ORT-web min / median ms | ORT-node min / median ms | Kiln/ORT-web speed (>1: Kiln faster; median of per-round ratios) | Kiln GFLOP/s | % of SIMD peak | Kiln max abs err vs ORT-node | Kiln relaxed-SIMD min / median ms | relaxed GFLOP/s (% of relaxed peak) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rep.results) {
    if (r.error) {
      lines.push(`| ${r.model} | ${r.threads} | error: ${r.error} | | | | | | |`);
      continue;
    }
    const k = r.kiln;
    const err = k.maxAbsErr === undefined ? '-' : `${k.maxAbsErr.toExponential(1)}${k.agrees ? '' : ' **MISMATCH**'}`;
    const pct = k.gflops !== undefined && peak ? `${((100 * k.gflops) / (peak * r.threads)).toFixed(1)}%` : '-';
    const kr = r.kilnRelaxed as KilnResult | undefined,
      rpeak = rep.simdPeak?.relaxedMadd;
    const rel =
      kr?.gflops === undefined
        ? '-'
        : `${kr.gflops.toFixed(2)}${rpeak ? ` (${((100 * kr.gflops) / (rpeak * r.threads)).toFixed(1)}%)` : ''}`;
    lines.push(
      `| ${r.model} | ${r.threads} | ${ms(k)} | ${ms(r.ortWeb)} | ${ms(r.ortNode)} | ${r.kilnVsOrtWeb === undefined ? '-' : `${r.kilnVsOrtWeb.toFixed(3)}x`} | ${k.gflops === undefined ? '-' : k.gflops.toFixed(2)} | ${pct} | ${err} | ${kr ? ms(kr) : '-'} | ${rel} |`,
    );
  }
  // On a shared machine wall time includes waiting for a core; at 1 thread the process's CPU time does not.
  const single = rep.results.filter(
    (r) => r.threads === 1 && !r.error && r.kiln.cpuMedianMs !== undefined && r.ortWeb.cpuMedianMs !== undefined,
  );
  if (single.length) {
    lines.push(
      '',
      '| model (1 thread) | Kiln CPU ms / run (median) | ORT-web CPU ms / run | ORT-node CPU ms / run | Kiln/ORT-web by CPU time (median of per-round ratios) |',
      '|---|---:|---:|---:|---:|',
    );
    for (const r of single) {
      lines.push(
        `| ${r.model} | ${r.kiln.cpuMedianMs!.toFixed(2)} | ${r.ortWeb.cpuMedianMs!.toFixed(2)} | ${r.ortNode.cpuMedianMs?.toFixed(2) ?? '-'} | ${(r.kilnVsOrtWebCpu ?? r.ortWeb.cpuMedianMs! / r.kiln.cpuMedianMs!).toFixed(3)}x |`,
      );
    }
  }
  const quantized = rep.results.filter((r) => r.kilnFloat?.medianMs !== undefined && r.kiln.medianMs !== undefined);
  if (quantized.length) {
    lines.push(
      '',
      '| quantized model | threads | Kiln min / median ms | Kiln float32 build of the float model, min / median ms | Kiln quantized / Kiln float32 speed (median of per-round ratios) | Kiln quantized / ORT-web speed | artifact bytes quantized / float32 |',
      '|---|---:|---:|---:|---:|---:|---:|',
    );
    for (const r of quantized) {
      const f = r.kilnFloat!;
      lines.push(
        `| ${r.model} (float: ${f.model}) | ${r.threads} | ${ms(r.kiln)} | ${ms(f)} | ${r.kilnVsFloat?.toFixed(3) ?? '-'}x | ${r.kilnVsOrtWeb?.toFixed(3) ?? '-'}x | ${r.artifactBytes} / ${f.artifactBytes} |`,
      );
    }
  }
  const nat = rep.results.filter((r) => r.kilnNative);
  if (nat.length) {
    lines.push(
      '',
      '| model | threads | Kiln native min / median ms | Kiln native/ORT-node speed (>1: Kiln faster; median of per-round ratios) | the same by CPU time | Kiln native/Kiln wasm speed | Kiln native GFLOP/s | native max abs err vs ORT-node | native compile s |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    const x = (v: number | undefined) => (v === undefined ? '-' : `${v.toFixed(3)}x`);
    for (const r of nat) {
      const k = r.kilnNative!;
      const err = k.maxAbsErr === undefined ? '-' : `${k.maxAbsErr.toExponential(1)}${k.agrees ? '' : ' **MISMATCH**'}`;
      lines.push(
        `| ${r.model} | ${r.threads} | ${ms(k)} | ${x(r.nativeVsOrtNode)} | ${x(r.nativeVsOrtNodeCpu)} | ${x(r.nativeVsKiln)} | ${k.gflops?.toFixed(2) ?? '-'} | ${err} | ${k.compileMs === undefined ? '-' : (k.compileMs / 1000).toFixed(1)} |`,
      );
    }
  }
  const multi = rep.results.flatMap((r) => [
    ...(r.kilnVs1Thread === undefined
      ? []
      : [{ model: r.model, threads: r.threads, vs1: r.kilnVs1Thread, sc: r.scaling }]),
    ...(r.nativeVs1Thread === undefined
      ? []
      : [{ model: `${r.model} (native)`, threads: r.threads, vs1: r.nativeVs1Thread, sc: r.nativeScaling }]),
  ]);
  if (multi.length) {
    lines.push(
      '',
      "| model | threads | Kiln speedup over Kiln on 1 thread (median of per-round ratios, both in one process) | the machine's own speedup: SIMD peak loop on T threads over 1, around each round (median) | Kiln speedup in the rounds where the machine gave T full cores (>= 0.95 T) |",
      '|---|---:|---:|---:|---:|',
    );
    for (const r of multi) {
      const sc = r.sc;
      const full = !sc
        ? '-'
        : sc.kilnVs1ThreadFullCores === undefined
          ? `none of ${sc.rounds} rounds`
          : `${sc.kilnVs1ThreadFullCores.toFixed(2)}x (${sc.fullCoreRounds} of ${sc.rounds} rounds)`;
      lines.push(
        `| ${r.model} | ${r.threads} | ${r.vs1.toFixed(2)}x | ${sc ? `${sc.machineScaling.toFixed(2)}x` : '-'} | ${full} |`,
      );
    }
  }
  return lines.join('\n');
}

async function main(): Promise<number> {
  const opts = parse(process.argv.slice(2));
  if (opts.values.help) {
    console.log(USAGE);
    return 0;
  }
  if (opts.values.worker) {
    await worker(Number(opts.values.worker), opts);
    return 0;
  }

  const started = performance.now();
  const report: BenchReport = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? '?',
    cores: cpus().length,
    loadavg: { start: loadavg() },
    command: `node ${[...process.execArgv, 'dist/bench/bench.js', ...process.argv.slice(2)].join(' ')}`,
    config: {
      models: opts.models,
      runs: opts.runs,
      threads: opts.threads,
      budgetS: opts.budgetS,
      note:
        'times are per inference (input copy-in and output copy-out included); GFLOP/s from the Kiln header flops and the median; ' +
        '% of SIMD peak against the measured f32x4.mul+add peak x threads; ORT sessions with T > 1 run with intra-op spinning off',
    },
    results: [],
  };
  log(`measuring the WebAssembly SIMD128 peak (1 thread) ...`);
  report.simdPeak = measureSimdPeak(opts.peakMs);
  const p = report.simdPeak;
  log(
    `  f32x4.mul + f32x4.add: ${p.mulAdd.toFixed(1)} GFLOP/s; f32x4.relaxed_madd: ${p.relaxedMadd === undefined ? p.relaxedNote : `${p.relaxedMadd.toFixed(1)} GFLOP/s`}`,
  );

  for (const name of opts.routes) {
    if (!hasRouteFixture(name)) {
      log(`[${name} .pt2 vs ONNX] skipped: no .cache/pytorch/${name}/model.onnx (npm run fixtures)`);
      continue;
    }
    let r: RouteResult;
    try {
      r = await benchImportRoutes(name, opts.runs, opts.budgetS);
    } catch (e) {
      r = { model: name, error: (e as Error).message.split('\n')[0] } as RouteResult;
    }
    log(`[${name} .pt2 vs ONNX] ${r.error ?? `ONNX/.pt2 time ${r.onnxOverPt2?.toFixed(3)}x over ${r.rounds} rounds`}`);
    (report.importRoutes ??= []).push(r);
  }

  const self = fileURLToPath(import.meta.url);
  const tmp = mkdtempSync(join(tmpdir(), 'kiln-bench-'));
  try {
    for (const T of opts.threads) {
      const result = join(tmp, `t${T}.json`);
      const fwd = process.argv
        .slice(2)
        .filter((a, i, all) => !['--worker', '--result'].includes(a) && !['--worker', '--result'].includes(all[i - 1]));
      const child = spawnSync(
        process.execPath,
        [...process.execArgv, self, ...fwd, '--worker', String(T), '--result', result],
        { stdio: 'inherit' },
      );
      if (child.status !== 0 || !existsSync(result)) {
        log(`worker for ${T} thread(s) failed (exit ${child.status ?? child.signal})`);
        for (const m of opts.models)
          report.results.push({
            model: m,
            threads: T,
            kiln: {},
            ortWeb: {},
            ortNode: {},
            error: `worker exited with ${child.status ?? child.signal}`,
          });
        continue;
      }
      report.results.push(...(JSON.parse(readFileSync(result, 'utf8')) as ModelResult[]));
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  // group by model, then threads
  report.results.sort(
    (a, b) =>
      opts.models.indexOf(a.model.startsWith('matmul') ? 'matmul' : a.model) -
        opts.models.indexOf(b.model.startsWith('matmul') ? 'matmul' : b.model) || a.threads - b.threads,
  );

  report.loadavg.end = loadavg();
  const out = opts.values.out ?? join('bench', 'results', 'latest.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(report, null, 1)}\n`);
  const la = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
  console.log(
    `\n${report.cpu}, ${report.cores} cores, Node ${report.node}; ${opts.runs} rounds max per row, ${opts.budgetS} s budget; ` +
      `load average ${la(report.loadavg.start)} at start, ${la(report.loadavg.end)} at end`,
  );
  console.log(
    `WebAssembly SIMD128 peak, 1 thread: ${p.mulAdd.toFixed(1)} GFLOP/s (f32x4.mul + f32x4.add, ${p.accumulators} accumulators)` +
      (p.relaxedMadd === undefined
        ? `; relaxed: ${p.relaxedNote}`
        : `, ${p.relaxedMadd.toFixed(1)} GFLOP/s (f32x4.relaxed_madd)`),
  );
  console.log('');
  console.log(markdownTable(report));
  if (report.importRoutes?.length) console.log(`\n${routesTable(report.importRoutes)}`);
  const bad = report.results.filter((r) => r.kiln.agrees === false || r.kilnNative?.agrees === false);
  if (bad.length)
    console.log(
      `\nWARNING: Kiln disagrees with ORT-node on ${bad.map((r) => r.model).join(', ')}: its times are not comparable`,
    );
  console.log(`\nwrote ${out} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    console.error(e);
    process.exitCode = 1;
  },
);
