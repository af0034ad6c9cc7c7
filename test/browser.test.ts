// The runtime alone in a real browser: headless Chromium imports dist/runtime, loads an artifact, runs it
// single-threaded and on Web Workers (the page is cross-origin isolated), and matches ONNX Runtime.
import { describe, expect, it } from 'vitest';
import { compile } from '../src/index.js';
import { compareTensors } from '../src/conformance/compare.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { runOrt } from './helpers/ort.js';
import { haveChromium, launch, serve } from './helpers/browser.js';

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
        const r = await tab.evaluate(([t, data]) => (window as unknown as { runKiln: (t: number, x: number[]) => Promise<{ threads: number; isolated: boolean; y: number[] }> }).runKiln(t, data), [threads, Array.from(x.data as Float32Array)] as const);
        expect(r.isolated).toBe(true);
        expect(r.threads).toBe(threads);
        expect(compareTensors({ dtype: 'float32', shape: [1, 8, 6, 6], data: Float32Array.from(r.y) }, want)?.message).toBeUndefined();
      }
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
      await server.close();
    }
  });
});
