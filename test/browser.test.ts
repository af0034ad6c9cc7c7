// The runtime alone in a real browser: headless Chromium imports dist/runtime, loads an artifact, runs it
// single-threaded and on Web Workers (the page is cross-origin isolated), and matches ONNX Runtime; loaded with
// timeoutMs it runs in a Web Worker (its thread pool nested in it) whose endless kernel is stopped with E_TIMEOUT.
import { describe, expect, it } from 'vitest';
import { compile } from '../src/index.js';
import { compareTensors } from '../src/conformance/compare.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { runOrt } from './helpers/ort.js';
import { readArtifact } from '../src/runtime/artifact.js';
import { haveChromium, launch, serve } from './helpers/browser.js';
import { endlessKernels, withKernelBodies } from './helpers/artifact-surgery.js';

const model = buildModel({
  inputs: [['x', 'float32', [1, 4, 12, 12]]],
  outputs: [['y', 'float32', [1, 8, 6, 6]]],
  initializers: { w: randomF32([8, 4, 3, 3], 2), b: randomF32([8], 3) },
  nodes: [
    { op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['c'], attrs: { pads: [1, 1, 1, 1] } },
    { op: 'Sigmoid', inputs: ['c'], outputs: ['s'] },
    { op: 'MaxPool', inputs: ['s'], outputs: ['y'], attrs: { kernel_shape: [2, 2], strides: [2, 2] } },
  ],
});

const page = `<!doctype html><script type="module">
import { load } from '/dist/runtime/index.js';
window.runKiln = async (threads, x) => {
  const bytes = new Uint8Array(await (await fetch('/model.kiln')).arrayBuffer());
  const m = await load(bytes, { threads });
  const out = await m.run({ x: { dtype: 'float32', shape: [1, 4, 12, 12], data: new Float32Array(x) } });
  const result = { threads: m.threads, isolated: crossOriginIsolated, y: Array.from(out.y.data) };
  m.dispose();
  return result;
};
// loaded with a watchdog: the result, or the KilnError's code and message, and how long the run took
window.runSupervised = async (path, threads, timeoutMs, x) => {
  const bytes = new Uint8Array(await (await fetch(path)).arrayBuffer());
  const m = await load(bytes, { threads, timeoutMs: 20000, minParallelWork: 0 });
  const t0 = performance.now();
  try {
    const out = await m.run({ x: { dtype: 'float32', shape: [1, 4, 12, 12], data: new Float32Array(x) } }, { timeoutMs });
    return { threads: m.threads, y: Array.from(out.y.data), ms: performance.now() - t0 };
  } catch (e) {
    const ms = performance.now() - t0;
    let after;
    try { await m.run({ x: { dtype: 'float32', shape: [1, 4, 12, 12], data: new Float32Array(x) } }); } catch (e2) { after = e2.message; }
    return { threads: m.threads, error: { name: e.name, code: e.code, message: e.message }, after, ms };
  } finally {
    m.dispose();
  }
};
window.ready = true;
</script>`;

describe.skipIf(!haveChromium())('runtime in headless Chromium', () => {
  it('loads an artifact and runs it on 1 and 2 threads, matching ONNX Runtime', async () => {
    const { artifact } = await compile(model);
    const x = randomF32([1, 4, 12, 12], 7);
    const want = (await runOrt(model, { x })).y;
    const server = await serve({ '/': page, '/model.kiln': artifact });
    const browser = await launch();
    try {
      const tab = await browser.newPage();
      const errors: string[] = [];
      tab.on('pageerror', (e) => errors.push(String(e)));
      await tab.goto(server.url);
      await tab.waitForFunction('window.ready === true');
      for (const threads of [1, 2]) {
        const r = await tab.evaluate(
          ([t, data]) =>
            (
              window as unknown as {
                runKiln: (t: number, x: number[]) => Promise<{ threads: number; isolated: boolean; y: number[] }>;
              }
            ).runKiln(t, data),
          [threads, Array.from(x.data as Float32Array)] as const,
        );
        expect(r.isolated).toBe(true);
        expect(r.threads).toBe(threads);
        expect(
          compareTensors({ dtype: 'float32', shape: [1, 8, 6, 6], data: Float32Array.from(r.y) }, want)?.message,
        ).toBeUndefined();
      }
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
      await server.close();
    }
  });

  it('a model loaded with timeoutMs runs in a Web Worker; an endless kernel is stopped with E_TIMEOUT', async () => {
    const { artifact } = await compile(model);
    const endless = await withKernelBodies(await readArtifact(artifact), endlessKernels);
    const x = randomF32([1, 4, 12, 12], 7);
    const want = (await runOrt(model, { x })).y;
    const server = await serve({ '/': page, '/model.kiln': artifact, '/endless.kiln': endless });
    const browser = await launch();
    type Outcome = {
      threads: number;
      y?: number[];
      error?: { name: string; code: string; message: string };
      after?: string;
      ms: number;
    };
    try {
      const tab = await browser.newPage();
      const errors: string[] = [];
      tab.on('pageerror', (e) => errors.push(String(e)));
      await tab.goto(server.url);
      await tab.waitForFunction('window.ready === true');
      const run = (path: string, threads: number, timeoutMs: number) =>
        tab.evaluate(
          ([p, t, ms, data]) =>
            (
              window as unknown as {
                runSupervised: (p: string, t: number, ms: number, x: number[]) => Promise<Outcome>;
              }
            ).runSupervised(p, t, ms, data),
          [path, threads, timeoutMs, Array.from(x.data as Float32Array)] as const,
        );
      for (const threads of [1, 2]) {
        const ok = await run('/model.kiln', threads, 20_000);
        expect(ok.error).toBeUndefined();
        expect(ok.threads).toBe(threads);
        expect(
          compareTensors({ dtype: 'float32', shape: [1, 8, 6, 6], data: Float32Array.from(ok.y!) }, want)?.message,
        ).toBeUndefined();
        const stuck = await run('/endless.kiln', threads, 500);
        expect(stuck.error).toMatchObject({ name: 'KilnError', code: 'E_TIMEOUT' });
        expect(stuck.error!.message).toMatch(/run took longer than 500 ms; the worker was stopped/);
        expect(stuck.ms).toBeGreaterThanOrEqual(450);
        expect(stuck.ms).toBeLessThan(5000);
        expect(stuck.after).toMatch(/disposed: a run took longer than 500 ms/);
      }
      // the page is still responsive and a fresh model still runs after the stopped workers
      expect((await run('/model.kiln', 2, 20_000)).error).toBeUndefined();
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
      await server.close();
    }
  });
});
