// kiln run ARTIFACT.kiln [--input name=file] [--output-dir DIR [--output-format npy|pb]] [--bench N] [--threads N] [--target T]
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { load, type LoadOptions } from '../index.js';
import { KilnError } from '../runtime/errors.js';
import { type Tensor, tensor, sizeOf } from '../runtime/tensor.js';
import type { IOBinding } from '../runtime/artifact-format.js';
import { readTensorFile, writeTensorFile } from './tensor-files.js';

/** Deterministic pseudo-random data for an input (used when no file is given). */
export function randomInput(b: IOBinding, seed = 1): Tensor {
  let s = seed >>> 0;
  const next = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 32; };
  const n = sizeOf(b.shape);
  const vals = new Array<number>(n);
  for (let i = 0; i < n; i++) vals[i] = b.dtype.startsWith('float') ? next() * 2 - 1 : b.dtype === 'bool' ? +(next() < 0.5) : Math.floor(next() * 10);
  return tensor(b.dtype, b.shape, vals);
}

export function readArtifactFile(path: string | undefined): Uint8Array {
  if (!path) throw new KilnError('E_INPUT', 'no artifact given', { hint: 'kiln run MODEL.kiln' });
  try { return readFileSync(path); } catch (e) { throw new KilnError('E_IO', `cannot read '${path}': ${(e as Error).message}`); }
}

export function summarize(t: Tensor): string {
  const head = Array.from(t.data.subarray(0, 6) as ArrayLike<number | bigint>, (v) => (typeof v === 'number' ? +v.toPrecision(5) : v)).join(', ');
  return `${t.dtype}[${t.shape}] ${head}${t.data.length > 6 ? ', ...' : ''}`;
}

/** --threads N -> load options (default: the available cores). */
export function threadOption(t: string | undefined): { threads?: number } {
  if (t === undefined) return {};
  const n = Number(t);
  if (!Number.isInteger(n) || n < 1) throw new KilnError('E_INPUT', `bad --threads '${t}'`, { hint: 'give a positive thread count, e.g. --threads 2' });
  return { threads: n };
}

/** --target wasm|webgpu|cuda -> load options: WebGPU through npm `webgpu` (Dawn), CUDA through libcuda. */
async function targetOption(t: string | undefined): Promise<LoadOptions> {
  if (t === undefined || t === 'wasm') return {};
  if (t === 'cuda') return { target: 'cuda' };
  if (t === 'webgpu') {
    const { nodeGpuDevice } = await import('../conformance/node-webgpu.js');
    return { target: 'webgpu', device: await nodeGpuDevice() };
  }
  throw new KilnError('E_INPUT', `bad --target '${t}'`, { hint: 'use wasm, webgpu or cuda (the artifact must have been compiled for it)' });
}

export async function runCommand(pos: string[], v: { input?: string[]; 'output-dir'?: string; 'output-format'?: string; bench?: string; threads?: string; target?: string }): Promise<number> {
  const artifact = readArtifactFile(pos[0]);
  const model = await load(artifact, { ...threadOption(v.threads), ...(await targetOption(v.target)) });
  const given = Object.fromEntries((v.input ?? []).map((s) => {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new KilnError('E_INPUT', `bad --input '${s}'`, { hint: 'write name=file.npy or name=file.pb' });
    return [s.slice(0, eq), readTensorFile(s.slice(eq + 1))];
  }));
  const feeds: Record<string, Tensor> = { ...given };
  for (const i of model.inputs) if (!feeds[i.name] && !(v.input ?? []).length) { feeds[i.name] = randomInput(i); console.log(`input ${i.name}: random ${i.dtype}[${i.shape}] (no file given)`); }
  // device targets answer asynchronously only; run() serves every target
  const out = await model.run(feeds);
  for (const [name, t] of Object.entries(out)) console.log(`output ${name}: ${summarize(t)}`);
  if (v['output-dir']) {
    const ext = v['output-format'] ?? 'npy';
    if (ext !== 'npy' && ext !== 'pb') throw new KilnError('E_INPUT', `bad --output-format '${ext}'`, { hint: 'use npy or pb (ONNX TensorProto)' });
    mkdirSync(v['output-dir'], { recursive: true });
    for (const [name, t] of Object.entries(out)) writeTensorFile(join(v['output-dir'], `${name.replace(/[^\w.-]/g, '_')}.${ext}`), t, name);
  }
  if (v.bench) {
    const n = Number(v.bench);
    if (!Number.isInteger(n) || n < 1) throw new KilnError('E_INPUT', `bad --bench '${v.bench}'`, { hint: 'give a run count, e.g. --bench 20' });
    const times: number[] = [];
    for (let i = 0; i < n; i++) { const t0 = performance.now(); await model.run(feeds); times.push(performance.now() - t0); }
    times.sort((a, b) => a - b);
    const on = v.target && v.target !== 'wasm' ? v.target : `${model.threads} thread${model.threads > 1 ? 's' : ''}`;
    console.log(`bench: ${n} runs on ${on}, min ${times[0].toFixed(3)} ms, median ${times[Math.floor(n / 2)].toFixed(3)} ms`);
  }
  model.dispose();
  return 0;
}
