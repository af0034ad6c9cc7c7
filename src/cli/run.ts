// kiln run ARTIFACT.kiln [--input name=file] [--output-dir DIR [--output-format npy|pb]] [--bench N] [--threads N] [--target T]
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { load, type LoadOptions } from '../index.js';
import { KilnError } from '../runtime/errors.js';
import { type Tensor, tensor, sizeOf } from '../runtime/tensor.js';
import type { IOBinding } from '../runtime/artifact-format.js';
import { readTensorFile, writeTensorFile } from './tensor-files.js';
import { choiceFlag, intFlag, namedValue, usageError } from './usage.js';
import { median } from '../util/stats.js';

/** Deterministic pseudo-random data for an input (used when no file is given). */
export function randomInput(b: IOBinding, seed = 1): Tensor {
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const n = sizeOf(b.shape);
  const vals = new Array<number>(n);
  for (let i = 0; i < n; i++)
    vals[i] = b.dtype.startsWith('float')
      ? next() * 2 - 1
      : b.dtype === 'bool'
        ? +(next() < 0.5)
        : Math.floor(next() * 10);
  return tensor(b.dtype, b.shape, vals);
}

export function readArtifactFile(path: string | undefined): Uint8Array {
  if (!path) throw usageError('no artifact given', 'kiln run MODEL.kiln');
  try {
    return readFileSync(path);
  } catch (e) {
    throw new KilnError('E_IO', `cannot read '${path}': ${(e as Error).message}`);
  }
}

export function summarize(t: Tensor): string {
  const head = Array.from(t.data.subarray(0, 6) as ArrayLike<number | bigint>, (v) =>
    typeof v === 'number' ? +v.toPrecision(5) : v,
  ).join(', ');
  return `${t.dtype}[${t.shape}] ${head}${t.data.length > 6 ? ', ...' : ''}`;
}

/** --threads N -> load options (default: the available cores). */
export function threadOption(t: string | undefined): { threads?: number } {
  if (t === undefined) return {};
  return { threads: intFlag(t, '--threads', 2, 1, 1024) };
}

/** --target wasm|webgpu|cuda|native -> load options: WebGPU through npm `webgpu` (Dawn), CUDA through libcuda, native code through koffi. */
async function targetOption(t: 'wasm' | 'webgpu' | 'cuda' | 'native'): Promise<LoadOptions> {
  if (t === 'cuda') return { target: 'cuda' };
  if (t === 'native') return { target: 'native' };
  if (t === 'webgpu') {
    const { nodeGpuDevice } = await import('../conformance/node-webgpu.js');
    // the adapter's maxima: an artifact compiled to a larger profile than the spec's defaults runs where they reach
    return { target: 'webgpu', device: await nodeGpuDevice('adapter') };
  }
  return {};
}

export async function runCommand(
  pos: string[],
  v: {
    input?: string[];
    'output-dir'?: string;
    'output-format'?: string;
    bench?: string;
    threads?: string;
    target?: string;
  },
): Promise<number> {
  // the command line is checked before any work
  const threads = threadOption(v.threads);
  const target = choiceFlag(v.target, '--target', ['wasm', 'webgpu', 'cuda', 'native'] as const, 'wasm');
  const ext = choiceFlag(v['output-format'], '--output-format', ['npy', 'pb'] as const, 'npy');
  if (v['output-format'] !== undefined && !v['output-dir'])
    throw usageError('--output-format needs --output-dir', 'kiln run A.kiln --output-dir DIR --output-format pb');
  const bench = v.bench === undefined ? 0 : intFlag(v.bench, '--bench', 20);
  const inputs = (v.input ?? []).map((s) => namedValue(s, '--input', 'name=file.npy'));
  const artifact = readArtifactFile(pos[0]);
  const given = Object.fromEntries(inputs.map(([name, file]) => [name, readTensorFile(file)]));
  const model = await load(artifact, { ...threads, ...(await targetOption(target)) });
  const feeds: Record<string, Tensor> = { ...given };
  for (const i of model.inputs)
    if (!feeds[i.name] && !(v.input ?? []).length) {
      feeds[i.name] = randomInput(i);
      console.log(`input ${i.name}: random ${i.dtype}[${i.shape}] (no file given)`);
    }
  // device targets answer asynchronously only; run() serves every target
  const out = await model.run(feeds);
  for (const [name, t] of Object.entries(out)) console.log(`output ${name}: ${summarize(t)}`);
  if (v['output-dir']) {
    try {
      mkdirSync(v['output-dir'], { recursive: true });
    } catch (e) {
      throw new KilnError('E_IO', `cannot create '${v['output-dir']}': ${(e as Error).message}`);
    }
    for (const [name, t] of Object.entries(out))
      writeTensorFile(join(v['output-dir'], `${name.replace(/[^\w.-]/g, '_')}.${ext}`), t, name);
  }
  if (bench) {
    const times: number[] = [];
    for (let i = 0; i < bench; i++) {
      const t0 = performance.now();
      await model.run(feeds);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const on =
      target !== 'wasm' && model.runsOn !== 'wasm'
        ? target
        : `${model.threads} thread${model.threads > 1 ? 's' : ''}${model.runsOn === 'wasm' ? ' (WebAssembly fallback)' : ''}`;
    console.log(`bench: ${bench} runs on ${on}, min ${times[0].toFixed(3)} ms, median ${median(times).toFixed(3)} ms`);
  }
  model.dispose();
  return 0;
}
