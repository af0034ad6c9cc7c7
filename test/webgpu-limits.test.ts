// WebGPU artifacts compiled to a limits profile (issue 21): by default the WebGPU spec's limits, which every device
// has. Run on Dawn + SwiftShader with a device requested WITHOUT requiredLimits (the spec's defaults, as a page
// gets them), compared with ONNX Runtime.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compile, load, decodeTensorProto, type Tensor } from '../src/index.js';
import { nodeGpuDevice } from '../src/conformance/node-webgpu.js';
import { compareTensors } from '../src/conformance/compare.js';
import { buildModel, randomF32, type ModelSpec } from '../src/frontend/onnx/model-builder.js';
import { WEBGPU_PROFILES } from '../src/codegen/common/webgpu-profile.js';
import { WEBGPU_SPEC_DEFAULTS, type WebGpuLimits } from '../src/runtime/webgpu-limits.js';
import type { ArtifactHeader } from '../src/runtime/artifact-format.js';
import type { CompileOptions } from '../src/compiler/compile.js';
import { runOrt } from './helpers/ort.js';
import type { BuiltKernel } from '../src/compiler/kernel.js';
import { gpuTrace } from '../src/schedule/gpu-schedule.js';
import { Schedule } from '../src/schedule/schedule.js';
import { kilnError } from './helpers/errors.js';

/** The most storage bindings any stage of the section binds. */
const maxBindings = (h: ArtifactHeader) =>
  Math.max(...h.webgpu!.kernels.flatMap((k) => k.stages.map((s) => s.bindings.length)));

async function runBoth(spec: ModelSpec, feeds: Record<string, Tensor>, opts: CompileOptions = {}) {
  const bytes = buildModel(spec);
  const { artifact, header } = await compile(bytes, { target: 'webgpu', ...opts });
  const device = await nodeGpuDevice('default');
  const model = await load(artifact, { target: 'webgpu', device });
  try {
    const got = await model.run(feeds);
    const want = await runOrt(bytes, feeds);
    for (const [name, w] of Object.entries(want)) expect(compareTensors(got[name], w)?.message, name).toBeUndefined();
    return { header, artifact };
  } finally {
    model.dispose();
  }
}

/** A Concat of `n` inputs [1, c, 4, 4] along channels, then Relu (which fusion would take into it). */
function wideConcat(n: number, c = 3): { spec: ModelSpec; feeds: Record<string, Tensor> } {
  const names = Array.from({ length: n }, (_, i) => `x${i}`);
  return {
    spec: {
      inputs: names.map((x) => [x, 'float32', [1, c, 4, 4]]),
      outputs: [['y', 'float32', [1, n * c, 4, 4]]],
      nodes: [
        { op: 'Concat', inputs: names, outputs: ['cat'], attrs: { axis: 1 } },
        { op: 'Relu', inputs: ['cat'], outputs: ['y'] },
      ],
    },
    feeds: Object.fromEntries(names.map((x, i) => [x, randomF32([1, c, 4, 4], i + 1)])),
  };
}

describe('WebGPU limits profiles (Dawn + SwiftShader, spec-default device limits)', () => {
  it('requests the spec default limits for the default device', async () => {
    const device = await nodeGpuDevice('default');
    expect(device.limits.maxStorageBuffersPerShaderStage).toBe(8);
    expect(device.limits.maxStorageBufferBindingSize).toBe(134217728);
  });

  it('compiles a Concat of 40 inputs into kernels of at most 8 bindings, which match ONNX Runtime', async () => {
    const { spec, feeds } = wideConcat(40);
    const { header } = await runBoth(spec, feeds);
    expect(header.webgpu!.limits).toEqual(WEBGPU_SPEC_DEFAULTS);
    expect(maxBindings(header)).toBeLessThanOrEqual(8);
    // 40 inputs need at least 6 kernels of 7 inputs each
    expect(header.webgpu!.calls.length).toBeGreaterThanOrEqual(6);
  });

  it('fits a smaller profile (4 storage buffers per stage) and still matches', async () => {
    const { spec, feeds } = wideConcat(40);
    const { header } = await runBoth(spec, feeds, { webgpuLimits: { maxStorageBuffersPerShaderStage: 4 } });
    expect(maxBindings(header)).toBeLessThanOrEqual(4);
    expect(header.webgpu!.limits!.maxStorageBuffersPerShaderStage).toBe(4);
  });

  it('splits a fused elementwise group that would bind more than 8 buffers', async () => {
    // y = x0 + x1 + ... + x11: one injective group of 11 adds and 12 inputs without the limit
    const n = 12;
    const names = Array.from({ length: n }, (_, i) => `x${i}`);
    const nodes = names.slice(1).map((x, i) => ({
      op: 'Add',
      inputs: [i === 0 ? 'x0' : `s${i - 1}`, x],
      outputs: [i === n - 2 ? 'y' : `s${i}`],
    }));
    const { header } = await runBoth(
      { inputs: names.map((x) => [x, 'float32', [64]]), outputs: [['y', 'float32', [64]]], nodes },
      Object.fromEntries(names.map((x, i) => [x, randomF32([64], i + 7)])),
    );
    expect(maxBindings(header)).toBeLessThanOrEqual(8);
    expect(header.webgpu!.calls.length).toBeGreaterThan(1);
  });

  it('binds values larger than one binding as windows (a 1 MiB binding profile)', async () => {
    // maxStorageBufferBindingSize 1 MiB: the [700, 512] table (1.4 MiB) takes 2 windows, the Gather's output too,
    // and the elementwise Add reads and writes windowed buffers
    const limits: Partial<WebGpuLimits> = { maxStorageBufferBindingSize: 1 << 20, maxBufferSize: 1 << 20 };
    const table = randomF32([700, 512], 3);
    const idx: Tensor = {
      dtype: 'int64',
      shape: [600],
      data: BigInt64Array.from({ length: 600 }, (_, i) => BigInt((i * 37) % 700)),
    };
    const { header } = await runBoth(
      {
        inputs: [
          ['idx', 'int64', [600]],
          ['b', 'float32', [600, 512]],
        ],
        outputs: [['y', 'float32', [600, 512]]],
        nodes: [
          { op: 'Gather', inputs: ['table', 'idx'], outputs: ['g'], attrs: { axis: 0 } },
          { op: 'Mul', inputs: ['g', 'b'], outputs: ['m'] },
          { op: 'Sigmoid', inputs: ['m'], outputs: ['y'] },
        ],
        initializers: { table },
      },
      { idx, b: randomF32([600, 512], 4) },
      { webgpuLimits: limits },
    );
    const sec = header.webgpu!;
    expect(sec.values.some((v) => v.kind === 'weight' && v.window === 1 << 18)).toBe(true);
    expect(sec.kernels.some((k) => k.stages.some((s) => s.windows?.includes(1)))).toBe(true);
  });

  it('does not use a tuned schedule that needs more workgroup memory than the profile allows', async () => {
    const bytes = buildModel({
      inputs: [['a', 'float32', [256, 256]]],
      outputs: [['y', 'float32', [256, 256]]],
      initializers: { b: randomF32([256, 256], 5) },
      nodes: [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['y'] }],
    });
    // a schedule tuned where 32 KiB of workgroup memory was allowed (tiles of 128x128, steps of 32)
    const big = { tileRows: 128, tileCols: 128, regRows: 8, regCols: 8, tileK: 32, sharedBytes: 32768 };
    const gpuTraceFor = (k: BuiltKernel) => gpuTrace(new Schedule([k.output]), big);
    const shared = (h: ArtifactHeader) =>
      Math.max(
        ...h
          .webgpu!.kernels.flatMap((k) =>
            k.stages.map((st) => [...st.code.matchAll(/var<workgroup> \w+: array<(\w+|vec4<f32>), (\d+)>/g)]),
          )
          .map((ms) => ms.reduce((n, m) => n + Number(m[2]) * (m[1] === 'vec4<f32>' ? 16 : 4), 0)),
      );
    const desktop = await compile(bytes, { target: 'webgpu', webgpuLimits: 'desktop', gpuTraceFor });
    expect(shared(desktop.header)).toBeGreaterThan(16384);
    const { header } = await runBoth(
      {
        inputs: [['a', 'float32', [256, 256]]],
        outputs: [['y', 'float32', [256, 256]]],
        initializers: { b: randomF32([256, 256], 5) },
        nodes: [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['y'] }],
      },
      { a: randomF32([256, 256], 6) },
      { gpuTraceFor },
    );
    expect(shared(header)).toBeGreaterThan(0);
    expect(shared(header)).toBeLessThanOrEqual(16384);
  });

  it('records the profile; load() names the limit a device falls short of', async () => {
    const { spec } = wideConcat(3);
    const bytes = buildModel(spec);
    const desktop = await compile(bytes, { target: 'webgpu', webgpuLimits: 'desktop' });
    expect(desktop.header.webgpu!.limits).toEqual(WEBGPU_PROFILES.desktop);
    const device = await nodeGpuDevice('default');
    const e = await kilnError(() => load(desktop.artifact, { target: 'webgpu', device }));
    expect(e.code).toBe('E_UNSUPPORTED');
    expect(e.message).toMatch(/maxStorageBuffersPerShaderStage >= 10; this device has 8/);
  });

  it('rejects bad profiles with clear errors', async () => {
    const bytes = buildModel(wideConcat(2).spec);
    const cases: [CompileOptions['webgpuLimits'], string, RegExp][] = [
      ['phone' as never, 'E_INPUT', /no WebGPU limits profile named 'phone'/],
      [{ maxStorageBuffers: 8 } as never, 'E_INPUT', /'maxStorageBuffers' is not a WebGPU limit/],
      [{ maxBufferSize: -1 }, 'E_INPUT', /maxBufferSize is -1, not a positive integer/],
      [{ maxComputeInvocationsPerWorkgroup: 128 }, 'E_UNSUPPORTED', /maxComputeInvocationsPerWorkgroup 128 is below/],
    ];
    for (const [webgpuLimits, code, msg] of cases) {
      const e = await kilnError(() => compile(bytes, { target: 'webgpu', webgpuLimits }));
      expect(e.code).toBe(code);
      expect(e.message).toMatch(msg);
    }
    const e = await kilnError(() => compile(bytes, { webgpuLimits: 'default' }));
    expect(e.code).toBe('E_INPUT');
  });

  it('kiln compile --webgpu-limits FILE.json records it and kiln inspect shows it; a bad file is an error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-limits-'));
    const model = join(dir, 'm.onnx');
    writeFileSync(model, buildModel(wideConcat(2).spec));
    const kiln = (...args: string[]) => {
      try {
        return {
          out: execFileSync('node', ['dist/cli/kiln.js', ...args], { encoding: 'utf8', stdio: 'pipe' }),
          code: 0,
        };
      } catch (e) {
        const x = e as { status: number; stderr: string };
        return { out: x.stderr, code: x.status };
      }
    };
    const file = join(dir, 'limits.json');
    writeFileSync(file, JSON.stringify({ maxStorageBuffersPerShaderStage: 6 }));
    const art = join(dir, 'm.kiln');
    expect(kiln('compile', model, '--target', 'webgpu', '--webgpu-limits', file, '-o', art).code).toBe(0);
    const shown = kiln('inspect', art, '--level', 'wgsl');
    expect(shown.out).toMatch(/WebGPU limits profile: custom \(maxStorageBuffersPerShaderStage 6,/);
    writeFileSync(file, '{ not json');
    const bad = kiln('compile', model, '--target', 'webgpu', '--webgpu-limits', file, '-o', art);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/is not JSON/);
    const missing = kiln('compile', model, '--target', 'webgpu', '--webgpu-limits', join(dir, 'none.json'));
    expect(missing.code).toBe(1);
    expect(missing.out).toMatch(/cannot read WebGPU limits file/);
    expect(kiln('compile', model, '--webgpu-limits', 'desktop').code).toBe(2);
  });

  // models under the spec's default limits (test/webgpu.test.ts runs the five of issue 2 on the same device):
  // DenseNet-121, whose fused dense-block Concat bound 17 buffers, and an embedding table over 128 MiB
  for (const name of ['densenet121', 'big_embedding']) {
    const dir = join('.cache/models', name);
    it.skipIf(!existsSync(dir))(`runs ${name} on a spec-default device and matches ONNX Runtime`, async () => {
      const modelPath = join(dir, 'model.onnx');
      const { artifact, header } = await compile(readFileSync(modelPath), { modelPath, target: 'webgpu' });
      expect(maxBindings(header)).toBeLessThanOrEqual(8);
      // the 140.6 MiB table is bound as two windows of 128 MiB at most
      if (name === 'big_embedding') expect(header.webgpu!.values.some((v) => v.window)).toBe(true);
      const model = await load(artifact, { target: 'webgpu', device: await nodeGpuDevice('default') });
      const set = join(dir, 'test_data_set_0'),
        files = readdirSync(set).sort();
      const read = (prefix: string) =>
        files.filter((f) => f.startsWith(prefix)).map((f) => decodeTensorProto(readFileSync(join(set, f))));
      const inputs = read('input_'),
        expected = read('output_');
      const out = await model.run(Object.fromEntries(model.inputs.map((inp, i) => [inp.name, inputs[i]])));
      model.outputs.forEach((o, i) =>
        expect(compareTensors(out[o.name], expected[i])?.message, o.name).toBeUndefined(),
      );
      model.dispose();
    });
  }
});
