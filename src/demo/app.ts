// The browser demo served by `kiln serve`: loads /model.kiln with the runtime, on WebGPU when the browser gives an
// adapter and the artifact has WGSL kernels, else on WebAssembly; classifies a picked or dropped image.
// window.kilnDemo exposes the state (backend, last input tensor, top-5, latency) for the end-to-end test.
import { load, type LoadedModel } from '../runtime/index.js';
import type { GpuDevice } from '../runtime/webgpu.js';
import { KilnError } from '../runtime/errors.js';
import { preprocessImageNet, topK } from './preprocess.js';

interface DemoState {
  ready: boolean;
  error?: string;
  backend?: string;
  /** Why WebGPU was not used, when it was not. */
  fallback?: string;
  runs: number;
  input?: Float32Array;
  top5?: { index: number; prob: number }[];
  latencyMs?: number;
}

const state: DemoState = { ready: false, runs: 0 };
(globalThis as unknown as { kilnDemo: DemoState }).kilnDemo = state;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const setStatus = (text: string) => {
  $('status').textContent = text;
};

let model: LoadedModel;
let size = 224;
let inputName = 'input';
let labels: string[] | undefined;

async function gpuDevice(): Promise<{ device?: GpuDevice; why?: string }> {
  const gpu = (
    navigator as unknown as {
      gpu?: {
        requestAdapter(): Promise<{
          requestDevice(d?: unknown): Promise<unknown>;
        } | null>;
      };
    }
  ).gpu;
  if (!gpu) return { why: 'navigator.gpu is not available' };
  const adapter = await gpu.requestAdapter();
  if (!adapter) return { why: 'no WebGPU adapter' };
  // the WebGPU spec's default limits, which every adapter grants: the artifact was compiled to fit them (the
  // default profile of --webgpu-limits), so the demo runs as any page would
  return { device: (await adapter.requestDevice()) as GpuDevice };
}

async function init(): Promise<void> {
  const t0 = performance.now();
  const [bytes, info] = await Promise.all([
    fetch('/model.kiln').then((r) => {
      if (!r.ok)
        throw new KilnError('E_IO', `GET /model.kiln: ${r.status}`, {
          hint: 'serve the demo with a compiled model.kiln beside it',
        });
      return r.arrayBuffer();
    }),
    fetch('/info.json').then((r) => r.json() as Promise<{ name: string; labels?: string[] }>),
  ]);
  labels = info.labels;
  const artifact = new Uint8Array(bytes);
  const gpu = await gpuDevice();
  if (gpu.device) {
    try {
      model = await load(artifact, { target: 'webgpu', device: gpu.device });
      state.backend = 'WebGPU';
    } catch (e) {
      gpu.why = `WebGPU load failed: ${(e as Error).message}`;
    }
  }
  if (!model) {
    model = await load(artifact);
    state.backend = `WebAssembly (${model.threads} thread${model.threads === 1 ? '' : 's'}${model.simd ? `, ${model.simd} SIMD` : ''})`;
    state.fallback = gpu.why;
  }
  const inp = model.inputs[0];
  const shape = inp.shape.map(Number);
  if (
    model.inputs.length !== 1 ||
    inp.dtype !== 'float32' ||
    shape.length !== 4 ||
    shape[0] !== 1 ||
    shape[1] !== 3 ||
    shape[2] !== shape[3]
  ) {
    throw new KilnError(
      'E_INPUT',
      `the demo needs one float32 input of shape [1,3,S,S]; this model takes ${model.inputs.map((i) => `${i.name}: ${i.dtype}[${i.shape}]`).join(', ')}`,
      { hint: 'compile an image classifier (e.g. squeezenet1_1) for the demo' },
    );
  }
  inputName = inp.name;
  size = shape[2];
  // One warm-up run so the latency shown is a steady-state one (pipelines compiled, workers started).
  await model.run({
    [inputName]: { dtype: 'float32', shape: [1, 3, size, size], data: new Float32Array(3 * size * size) },
  });
  $('model').textContent =
    `${info.name}: ${inp.name} float32[${shape}] → ${model.outputs.map((o) => `${o.name} ${o.dtype}[${o.shape}]`).join(', ')}`;
  $('backend').textContent = state.backend + (state.fallback ? ` — ${state.fallback}` : '');
  setStatus(`ready (loaded in ${(performance.now() - t0).toFixed(0)} ms) — pick or drop an image`);
  state.ready = true;
}

async function classify(file: File): Promise<void> {
  if (!state.ready) return;
  setStatus(`classifying ${file.name}…`);
  const bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const canvas = document.createElement('canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.drawImage(bitmap, 0, 0);
  const { data } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  const input = preprocessImageNet(data, bitmap.width, bitmap.height, {
    resize: Math.round((size * 256) / 224),
    crop: size,
  });
  showPreview(input);
  const t0 = performance.now();
  const out = await model.run({ [inputName]: { dtype: 'float32', shape: [1, 3, size, size], data: input } });
  const latency = performance.now() - t0;
  const logits = out[model.outputs[0].name].data as Float32Array;
  const top5 = topK(logits, 5);
  $('results').replaceChildren(
    ...top5.map(({ index, prob }) => {
      const row = document.createElement('tr');
      const cell = (text: string, cls = '') => {
        const td = row.insertCell();
        td.textContent = text;
        td.className = cls;
        return td;
      };
      cell(labels?.[index] ?? `class ${index}`);
      cell(`${(prob * 100).toFixed(3)}%`, 'num');
      const bar = cell('', 'barcell').appendChild(document.createElement('div'));
      bar.className = 'bar';
      bar.style.width = `${Math.max(prob / top5[0].prob, 0.01) * 100}%`;
      return row;
    }),
  );
  $('latency').textContent = `${latency.toFixed(1)} ms on ${state.backend}`;
  setStatus(`${file.name} (${bitmap.width}×${bitmap.height})`);
  Object.assign(state, { input, top5, latencyMs: latency, runs: state.runs + 1 });
}

/** Draws the network's input (de-normalized) so the user sees the crop the model gets. */
function showPreview(t: Float32Array): void {
  const c = $<HTMLCanvasElement>('preview');
  c.width = size;
  c.height = size;
  const ctx = c.getContext('2d')!;
  const img = ctx.createImageData(size, size);
  const plane = size * size;
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  for (let i = 0; i < plane; i++) {
    for (let ch = 0; ch < 3; ch++) img.data[i * 4 + ch] = Math.round((t[ch * plane + i] * std[ch] + mean[ch]) * 255);
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function fail(e: unknown): void {
  state.error = String((e as Error)?.message ?? e);
  setStatus(`error: ${state.error}`);
  $('status').classList.add('error');
}

const fileInput = $<HTMLInputElement>('file');
fileInput.addEventListener('change', () => {
  const f = fileInput.files?.[0];
  if (f) classify(f).catch(fail);
});
const drop = $('drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const f = e.dataTransfer?.files[0];
  if (f) classify(f).catch(fail);
});
init().catch(fail);
