// The browser demo end to end: `kiln serve`'s server (in-process) with the generated MobileNetV2 compiled for
// WebGPU (+ WebAssembly), headless Chromium picks a generated PNG on the page's file input, and the page's top-5
// must match ONNX Runtime on the same preprocessed tensor; the tensor itself must match the torchvision-style
// preprocessing computed here from the PNG's pixels. Leaves a screenshot at .cache/screenshots/demo.png.
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { startDemoServer, DEFAULT_DEMO_MODEL } from '../src/cli/serve.js';
import { preprocessImageNet, topK } from '../src/demo/preprocess.js';
import { runOrt } from './helpers/ort.js';
import { chromium } from 'playwright-core';
import { CHROMIUM, haveChromium, launch } from './helpers/browser.js';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (b: Uint8Array) => {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};

/** An 8-bit RGB PNG with no color-space chunks (decoded as-is by browsers). */
function encodePng(rgb: Uint8Array, w: number, h: number): Buffer {
  const chunk = (type: string, data: Uint8Array) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) raw.set(rgb.subarray(y * w * 3, (y + 1) * w * 3), y * (w * 3 + 1) + 1);
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

/** A landscape test picture: gradients, a disc and stripes (so resizing and cropping both matter). */
function testImage(w: number, h: number): Uint8Array {
  const px = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const inDisc = (x - w * 0.45) ** 2 + (y - h * 0.5) ** 2 < (h * 0.3) ** 2;
      px[i] = inDisc ? 230 : (x * 255) / (w - 1);
      px[i + 1] = inDisc ? 180 - (y % 16) * 4 : (y * 255) / (h - 1);
      px[i + 2] = (x >> 3) % 2 ? 40 : 200;
    }
  }
  return px;
}

interface PageResult {
  backend: string;
  fallback?: string;
  latencyMs: number;
  top5: { index: number; prob: number }[];
  input: number[];
  rows: string[];
}

// Chromium as test/helpers/browser.ts launches it (GPU off: the page falls back to WebAssembly), and with
// --enable-unsafe-webgpu (SwiftShader's adapter where this Chromium has one; WebAssembly otherwise).
const BROWSERS = {
  'default flags': launch,
  '--enable-unsafe-webgpu': () =>
    chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--enable-unsafe-webgpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    }),
};

describe.skipIf(!haveChromium() || !existsSync(DEFAULT_DEMO_MODEL))('kiln serve: browser demo', () => {
  it.each(Object.keys(BROWSERS) as (keyof typeof BROWSERS)[])(
    'classifies a picked image in headless Chromium (%s), matching ONNX Runtime',
    async (flags) => {
      const server = await startDemoServer();
      const browser = await BROWSERS[flags]();
      try {
        // Only the page, the artifact, the runtime and the demo script are served, cross-origin isolated.
        const page = await fetch(server.url);
        expect(page.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
        expect(page.headers.get('cross-origin-opener-policy')).toBe('same-origin');
        expect((await fetch(new URL('kiln/runtime/index.js', server.url))).status).toBe(200);
        expect((await fetch(new URL('kiln/cli/kiln.js', server.url))).status).toBe(404);
        expect((await fetch(new URL('kiln/runtime/%2e%2e/cli/serve.js', server.url))).status).toBe(404);

        const tab = await browser.newPage({ viewport: { width: 820, height: 560 } });
        const errors: string[] = [];
        tab.on('pageerror', (e) => errors.push(String(e)));
        tab.on('console', (m) => {
          if (m.type() === 'error') errors.push(m.text());
        });
        tab.on('response', (res) => {
          if (res.status() >= 400) errors.push(`${res.status()} ${res.url()}`);
        });
        await tab.goto(server.url);
        await tab.waitForFunction('window.kilnDemo.ready || window.kilnDemo.error', undefined, { timeout: 120_000 });
        expect(await tab.evaluate('window.kilnDemo.error')).toBeUndefined();

        const [w, h] = [320, 240];
        const pixels = testImage(w, h);
        await tab.setInputFiles('#file', { name: 'test.png', mimeType: 'image/png', buffer: encodePng(pixels, w, h) });
        await tab.waitForFunction('window.kilnDemo.runs === 1 || window.kilnDemo.error', undefined, {
          timeout: 120_000,
        });
        const r = (await tab.evaluate(() => {
          const s = (
            window as unknown as {
              kilnDemo: Omit<PageResult, 'input' | 'rows'> & { input: Float32Array; error?: string };
            }
          ).kilnDemo;
          const rows = [...document.querySelectorAll('#results tr')].map((tr) => tr.textContent ?? '');
          return { ...s, input: Array.from(s.input ?? []), rows };
        })) as PageResult & { error?: string };
        expect(r.error).toBeUndefined();
        console.log(
          `demo (${flags}) backend: ${r.backend}${r.fallback ? ` (${r.fallback})` : ''}; latency ${r.latencyMs.toFixed(1)} ms`,
        );
        expect(r.backend).toMatch(/^(WebGPU|WebAssembly)/);
        if (flags === 'default flags') expect(r.backend).toMatch(/^WebAssembly/);

        // The page's tensor is the torchvision-style preprocessing of the PNG's pixels.
        const want = preprocessImageNet(pixels, w, h, { channels: 3 });
        expect(r.input.length).toBe(3 * 224 * 224);
        let maxDiff = 0;
        for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(r.input[i] - want[i]));
        expect(maxDiff).toBeLessThan(1e-5);

        // Its top-5 against ONNX Runtime on the same tensor (tie-aware: a different index must be as probable).
        const ref = await runOrt(DEFAULT_DEMO_MODEL, {
          input: { dtype: 'float32', shape: [1, 3, 224, 224], data: Float32Array.from(r.input) },
        });
        const refTop = topK(ref.output.data as Float32Array, 1000);
        const refProb = new Map(refTop.map((t) => [t.index, t.prob]));
        expect(r.top5).toHaveLength(5);
        r.top5.forEach((t, i) => {
          expect(Math.abs(t.prob - refTop[i].prob), `prob #${i + 1}`).toBeLessThan(1e-3 * refTop[i].prob + 1e-7);
          if (t.index !== refTop[i].index)
            expect(Math.abs(refProb.get(t.index)! - refTop[i].prob), `class #${i + 1}`).toBeLessThan(
              1e-3 * refTop[i].prob + 1e-7,
            );
        });
        expect(r.rows).toHaveLength(5);
        expect(r.rows[0]).toContain(`class ${r.top5[0].index}`);
        expect(r.latencyMs).toBeGreaterThan(0);
        expect(await tab.textContent('#latency')).toMatch(/ms on (WebGPU|WebAssembly)/);
        expect(errors).toEqual([]);

        mkdirSync('.cache/screenshots', { recursive: true });
        writeFileSync(
          `.cache/screenshots/demo${flags === 'default flags' ? '' : '-webgpu'}.png`,
          await tab.screenshot({ fullPage: true }),
        );
      } finally {
        await browser.close();
        await server.close();
      }
    },
  );
});
