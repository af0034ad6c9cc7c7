// Runs ONNX backend test directories (model.onnx + test_data_set_N/{input,output}_K.pb) through the compiled
// WebAssembly path (or WebGPU, or CUDA). Inputs that an operator needs at compile time are baked in from the test
// data (`specialize`); every other input is fed at run time.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { clone, toBinary } from '@bufbuild/protobuf';
import { compile, compileGraph, importAndOptimize, specializeGraph } from '../compiler/compile.js';
import { type ModelProto, ModelProtoSchema } from '../frontend/onnx/proto/onnx_pb.js';
import { type NativeHost, load } from '../runtime/index.js';
import { KilnError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import type { CudaDriver } from '../runtime/cuda.js';
import { decodeTensorProto } from '../frontend/onnx/tensor-proto.js';
import { decodeModel } from '../frontend/onnx/import.js';
import { type Tolerance, DEFAULT_TOLERANCE, compareTensors } from './compare.js';
import { nodeGpuDevice } from './node-webgpu.js';

export interface CaseResult {
  name: string;
  dir: string;
  passed: boolean;
  error?: string;
  code?: string;
  ms: number;
}

/** Case directories under each path (a path that holds model.onnx is itself a case). */
export function findCases(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    if (existsSync(join(p, 'model.onnx'))) {
      out.push(p);
      continue;
    }
    if (!existsSync(p) || !statSync(p).isDirectory())
      throw new KilnError('E_IO', `no ONNX test case or folder at '${p}'`);
    for (const d of readdirSync(p).sort()) if (existsSync(join(p, d, 'model.onnx'))) out.push(join(p, d));
  }
  return out;
}

function dataSets(dir: string): string[] {
  return readdirSync(dir)
    .filter((d) => d.startsWith('test_data_set_'))
    .sort()
    .map((d) => join(dir, d));
}

function readSet(dir: string, kind: 'input' | 'output'): Tensor[] {
  const files = readdirSync(dir)
    .filter((f) => f.startsWith(`${kind}_`) && f.endsWith('.pb'))
    .sort((a, b) => Number(a.slice(kind.length + 1, -3)) - Number(b.slice(kind.length + 1, -3)));
  return files.map((f) => decodeTensorProto(readFileSync(join(dir, f)), `${kind} ${f}`));
}

export interface RunCaseOptions {
  /**
   * 'webgpu' compiles for WebGPU and runs on npm webgpu's device (SwiftShader on a CPU-only machine); 'cuda'
   * compiles PTX and runs it on the GPU through libcuda (E_NO_DEVICE without one).
   */
  target?: 'wasm' | 'webgpu' | 'cuda' | 'native';
  /**
   * Compile each case once with dims of its run-time inputs symbolic, then bind the symbols to the test data's sizes
   * (specializeGraph): 'leading' makes dim 0 symbolic (a batch), 'all' every dim. One symbol per distinct size, so
   * dims that share a size share it. What the operators' symbolic type rules and the symbolic shape folding get
   * right, measured on the whole suite.
   */
  symbolicDims?: 'leading' | 'all';
  /**
   * With symbolicDims: keep the symbols as run-time sizes, each with the range size..2*size+1, and run the one
   * artifact at the data's sizes (below the bounds its memory is planned at): kernels for run-time sizes, measured
   * on the whole suite.
   */
  runTimeSizes?: boolean;
}

/** The model with the chosen dims of each fed run-time input made the symbol `n<size>`; the symbols' sizes. */
function withSymbolicDims(
  model: ModelProto,
  feeds: Readonly<Record<string, Tensor>>,
  which: 'leading' | 'all',
): { bytes: Uint8Array; values: Record<string, number> } {
  const m = clone(ModelProtoSchema, model);
  const values: Record<string, number> = {};
  for (const vi of m.graph!.input) {
    const feed = feeds[vi.name];
    const dims = vi.type?.value.case === 'tensorType' ? vi.type.value.value.shape?.dim : undefined;
    if (!feed || !dims?.length || dims.length !== feed.shape.length) continue;
    for (let i = 0; i < (which === 'all' ? dims.length : 1); i++) {
      const symbol = `n${feed.shape[i]}`;
      dims[i].value = { case: 'dimParam', value: symbol };
      values[symbol] = feed.shape[i];
    }
  }
  return { bytes: toBinary(ModelProtoSchema, m), values };
}

let openedDriver: Promise<CudaDriver> | undefined;
/** One CUDA driver binding per process, opened on first use (E_NO_DEVICE without libcuda or a GPU). */
export function cudaDriver(): Promise<CudaDriver> {
  openedDriver ??= import('../node/cuda-driver.js').then((m) => m.openCudaDriver());
  return openedDriver;
}

let openedHost: Promise<NativeHost> | undefined;
/** One native host binding (koffi) per process, opened on first use. */
export function nativeHost(): Promise<NativeHost> {
  openedHost ??= import('../node/native-library.js').then((m) => m.openNativeHost());
  return openedHost;
}

export async function runCase(
  dir: string,
  tol: Tolerance = DEFAULT_TOLERANCE,
  opts: RunCaseOptions = {},
): Promise<CaseResult> {
  const name = dir.split('/').filter(Boolean).pop()!;
  const t0 = performance.now();
  const fail = (error: string, code?: string): CaseResult => ({
    name,
    dir,
    passed: false,
    error,
    code,
    ms: performance.now() - t0,
  });
  try {
    const modelPath = join(dir, 'model.onnx');
    const bytes = readFileSync(modelPath);
    const graph = decodeModel(bytes).graph!;
    const inits = new Set(graph.initializer.map((t) => t.name));
    const inputNames = graph.input.map((i) => i.name).filter((n) => !inits.has(n));
    const outputNames = graph.output.map((o) => o.name);
    const sets = dataSets(dir);
    if (!sets.length) return fail('no test_data_set_* folder');
    for (const set of sets) {
      const inputs = readSet(set, 'input'),
        expected = readSet(set, 'output');
      const feeds: Record<string, Tensor> = {};
      inputNames.forEach((n, i) => {
        if (inputs[i]) feeds[n] = inputs[i];
      });
      const compiled = opts.symbolicDims
        ? await compileSymbolic(decodeModel(bytes), modelPath, feeds, opts.symbolicDims, opts.target, opts.runTimeSizes)
        : await compile(bytes, {
            modelPath,
            specialize: feeds,
            inputShapes: Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.shape])),
            target: opts.target,
          });
      let got: Record<string, Tensor>;
      if (opts.target === 'webgpu' || opts.target === 'cuda') {
        const model = await load(
          compiled.artifact,
          opts.target === 'webgpu'
            ? { target: 'webgpu', device: await nodeGpuDevice() }
            : { target: 'cuda', cudaDriver: await cudaDriver() },
        );
        try {
          got = await model.run(Object.fromEntries(model.inputs.map((i) => [i.name, feeds[i.name]])));
        } finally {
          model.dispose?.();
        }
      } else if (opts.target === 'native') {
        // the native code must run: a fallback to WebAssembly would pass without testing it
        const model = await load(compiled.artifact, {
          target: 'native',
          nativeHost: await nativeHost(),
          log: () => {},
        });
        try {
          if (model.runsOn !== 'native') return fail(`native code did not run: ${model.nativeFallback}`, 'E_NO_DEVICE');
          got = model.runSync(Object.fromEntries(model.inputs.map((i) => [i.name, feeds[i.name]])));
        } finally {
          model.dispose();
        }
      } else {
        const model = await load(compiled.artifact);
        const runFeeds = Object.fromEntries(model.inputs.map((i) => [i.name, feeds[i.name]]));
        got = model.runSync(runFeeds);
      }
      for (let i = 0; i < outputNames.length; i++) {
        if (!expected[i]) continue;
        const bad = compareTensors(got[outputNames[i]], expected[i], tol);
        if (bad) return fail(`output '${outputNames[i]}' (${set.split('/').pop()}): ${bad.message}`);
      }
    }
    return { name, dir, passed: true, ms: performance.now() - t0 };
  } catch (e) {
    if (e instanceof KilnError) return fail(e.message, e.code);
    return fail(`crash: ${(e as Error).stack ?? e}`, 'CRASH');
  }
}

/**
 * The case compiled through a graph with symbolic dims, bound to the data's sizes afterwards. Inputs needed at
 * compile time are baked in as usual (their dims are then the data's); the others keep their symbolic dims.
 */
async function compileSymbolic(
  model: ModelProto,
  modelPath: string,
  feeds: Readonly<Record<string, Tensor>>,
  which: 'leading' | 'all',
  target: RunCaseOptions['target'],
  runTimeSizes = false,
) {
  const { bytes, values } = withSymbolicDims(model, feeds, which);
  if (runTimeSizes) {
    const dims = Object.fromEntries(
      Object.entries(values).map(([s, v]): [string, [number, number]] => [s, [v, 2 * v + 1]]),
    );
    return compileGraph(importAndOptimize(bytes, { modelPath, specialize: { ...feeds }, target, dims }), { target });
  }
  const graph = importAndOptimize(bytes, { modelPath, specialize: { ...feeds }, target });
  return compileGraph(specializeGraph(graph, values, { target }), { target });
}

export async function runCases(
  dirs: readonly string[],
  onResult?: (r: CaseResult) => void,
  opts: RunCaseOptions = {},
): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const d of dirs) {
    // a case can compile synchronously for seconds (native: opt, llc, cc); yielding between cases lets timers and
    // messages through (Ctrl-C, a test runner's RPC that times out when the loop is blocked for minutes)
    await new Promise((resolve) => setImmediate(resolve));
    const r = await runCase(d, DEFAULT_TOLERANCE, opts);
    results.push(r);
    onResult?.(r);
  }
  return results;
}
