// Target 'native': models compiled to x86-64 through LLVM, run through koffi, compared with ONNX Runtime's outputs
// (written by scripts/gen_models.py) within rtol 1e-3 / atol 1e-4; the CPU-feature fallback to WebAssembly; and the
// errors of bad options. Skipped only where LLVM's tools are not installed (CI installs them:
// scripts/test-prerequisites.sh).
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { compile, decodeTensorProto, load, type Tensor } from '../src/index.js';
import { compareTensors } from '../src/conformance/compare.js';
import { findLlvm } from '../src/codegen/native/toolchain.js';
import { openNativeHost } from '../src/node/native-library.js';
import { readArtifact } from '../src/runtime/artifact.js';
import { cpuinfoFlags, bestLevel, resolveCpu } from '../src/codegen/native/cpu.js';
import { hostCpuFlags, nativeModuleText } from '../src/compiler/native-program.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { printFunc } from '../src/relay-ir/printer.js';
import { printPrimFunc } from '../src/schedule/loop-ir.js';
import { targetLoopIR } from '../src/compiler/loop-pipeline.js';
import { runOrt } from './helpers/ort.js';
import type { KernelTiming } from '../src/runtime/executor.js';
import { kilnError } from './helpers/errors.js';
import { seqSoftmax, shapeChains } from './helpers/shape-chain-model.js';

const llvm = findLlvm();
if (!llvm)
  console.warn(
    'native.test.ts skipped: LLVM opt/llc (14 or later) or a linker is not installed (apt-get install llvm gcc)',
  );
/** This machine's best level, so that the code runs here (the level's own tests pick it explicitly). */
const HOST_CPU = bestLevel(hostCpuFlags());

const MODELS = ['squeezenet1_1_small', 'resnet18_small', 'mobilenet_v2_small', 'super_resolution_small', 'bert_small'];

function testData(name: string) {
  const dir = join('.cache/models', name);
  const info = JSON.parse(readFileSync(join(dir, 'info.json'), 'utf8')) as {
    inputs: { name: string; shape: number[] }[];
  };
  const set = join(dir, 'test_data_set_0');
  const files = readdirSync(set).sort();
  const read = (prefix: string) =>
    files.filter((f) => f.startsWith(prefix)).map((f) => decodeTensorProto(readFileSync(join(set, f))));
  return {
    modelPath: join(dir, 'model.onnx'),
    inputShapes: Object.fromEntries(info.inputs.map((i) => [i.name, i.shape])),
    inputs: read('input_'),
    expected: read('output_'),
  };
}

function std(t: Tensor): number {
  const d = t.data as Float32Array;
  const mean = d.reduce((a, b) => a + b, 0) / d.length;
  return Math.sqrt(d.reduce((a, b) => a + (b - mean) ** 2, 0) / d.length);
}

describe.skipIf(!llvm)('target native: models match ONNX Runtime', () => {
  for (const name of MODELS) {
    it(name, async () => {
      const { modelPath, inputShapes, inputs, expected } = testData(name);
      const t0 = performance.now();
      const compiled = await compile(readFileSync(modelPath), {
        modelPath,
        inputShapes,
        target: 'native',
        cpu: HOST_CPU,
      });
      const model = await load(compiled.artifact, { target: 'native', threads: 2 });
      try {
        expect(model.runsOn).toBe('native');
        expect(model.threads).toBe(2);
        const feeds = Object.fromEntries(model.inputs.map((inp, i) => [inp.name, inputs[i]]));
        const out = await model.run(feeds);
        console.log(
          `${name}: native ${compiled.header.native?.cpu}, ${compiled.header.kernels.length} kernels, compile+run ${((performance.now() - t0) / 1000).toFixed(1)} s`,
        );
        model.outputs.forEach((o, i) => {
          expect(std(expected[i])).toBeGreaterThan(0.05);
          expect(compareTensors(out[o.name], expected[i])?.message).toBeUndefined();
        });
        // a second run over the same memory gives the same bytes, and so do 1 and 4 threads (chunks of a parallel
        // loop compute what one thread would)
        const again = model.runSync(feeds);
        for (const o of model.outputs) expect(again[o.name].data).toEqual(out[o.name].data);
        // per-kernel timings: each call made through the library's per-call entry, timed, the same bytes
        const timings: KernelTiming[] = [];
        const timed = model.runSync(feeds, timings);
        expect(timings.map((t) => t.call)).toEqual(compiled.header.calls.map((_, i) => i));
        expect(timings.every((t, i) => t.kernel === compiled.header.calls[i].kernel && t.ms >= 0)).toBe(true);
        for (const o of model.outputs) expect(timed[o.name].data).toEqual(out[o.name].data);
        for (const threads of [1, 4]) {
          const other = await load(compiled.artifact, { target: 'native', threads });
          try {
            expect(other.threads).toBe(threads);
            const res = other.runSync(feeds);
            for (const o of model.outputs) expect(res[o.name].data).toEqual(out[o.name].data);
          } finally {
            other.dispose();
          }
        }
      } finally {
        model.dispose();
      }
    });
  }
});

describe.skipIf(!llvm)('target native: artifact, CPU check and fallback', () => {
  it('records the library and the CPU features it needs; falls back to WebAssembly where they are missing', async () => {
    const { modelPath, inputShapes, inputs, expected } = testData('squeezenet1_1_small');
    const compiled = await compile(readFileSync(modelPath), {
      modelPath,
      inputShapes,
      target: 'native',
      cpu: 'x86-64-v3',
    });
    const parts = await readArtifact(compiled.artifact);
    expect(parts.native?.subarray(0, 4)).toEqual(new Uint8Array([0x7f, 0x45, 0x4c, 0x46])); // an ELF file
    expect(parts.header.native).toMatchObject({
      cpu: 'x86-64-v3',
      entry: 'kiln_run',
      threads: true,
      triple: 'x86_64-pc-linux-gnu',
    });
    // its parallel phases run on a libgomp team
    expect(nativeModuleText(compiled.program, 'x86-64-v3')).toMatch(
      /call void @GOMP_parallel\(void \(i8\*\)\* @kiln_team/,
    );
    expect(parts.header.native?.features).toEqual(expect.arrayContaining(['avx2', 'fma']));
    expect(parts.header.native?.llvm).toBe(llvm!.version);

    // a CPU without AVX2 (this machine's host, reporting baseline SSE2 only)
    const host = await openNativeHost();
    const logged: string[] = [];
    const model = await load(compiled.artifact, {
      target: 'native',
      nativeHost: { ...host, cpuFeatures: () => new Set(['sse2']) },
      log: (m) => logged.push(m),
      threads: 1,
    });
    try {
      expect(model.runsOn).toBe('wasm');
      expect(model.nativeFallback).toMatch(/needs CPU level x86-64-v3; this CPU lacks .*avx2/);
      expect(logged.join('\n')).toMatch(/running the WebAssembly code instead/);
      const out = model.runSync({ [model.inputs[0].name]: inputs[0] });
      expect(compareTensors(out[model.outputs[0].name], expected[0])?.message).toBeUndefined();
    } finally {
      model.dispose();
    }
    // the same artifact loads natively on a CPU that has the features, and on target 'wasm' as before
    const wasm = await load(compiled.artifact, { threads: 1 });
    expect(wasm.runsOn).toBeUndefined();
    wasm.dispose();
    // with a watchdog: the native code runs on the model's worker thread, and a run past its limit is stopped
    const supervised = await load(compiled.artifact, { target: 'native', timeoutMs: 60_000, threads: 2 });
    try {
      expect([supervised.runsOn, supervised.nativeFallback, supervised.threads]).toEqual(['native', undefined, 2]);
      const feeds = { [supervised.inputs[0].name]: inputs[0] };
      const out = await supervised.run(feeds);
      expect(compareTensors(out[supervised.outputs[0].name], expected[0])?.message).toBeUndefined();
    } finally {
      supervised.dispose();
    }
    // a run of ~4 GFLOP (tens of ms or more) against a 5 ms limit
    const big = buildModel({
      inputs: [['a', 'float32', [512, 2048]]],
      initializers: { b: randomF32([2048, 2048], 1) },
      outputs: [['c', 'float32', [512, 2048]]],
      nodes: [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['c'] }],
    });
    const slow = await load((await compile(big, { target: 'native', cpu: HOST_CPU })).artifact, {
      target: 'native',
      timeoutMs: 60_000,
    });
    try {
      const feeds = { a: randomF32([512, 2048], 2) };
      await expect(slow.run(feeds, { timeoutMs: 5 })).rejects.toMatchObject({ code: 'E_TIMEOUT' });
      await expect(slow.run(feeds)).rejects.toMatchObject({ code: 'E_INPUT' });
    } finally {
      slow.dispose();
    }
  });

  it('kiln profile --target native times each kernel call through the per-call entry', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-native-profile-'));
    const { modelPath, inputShapes } = testData('squeezenet1_1_small');
    const compiled = await compile(readFileSync(modelPath), {
      modelPath,
      inputShapes,
      target: 'native',
      cpu: HOST_CPU,
    });
    expect(compiled.header.native).toMatchObject({ entry: 'kiln_run', callEntry: 'kiln_call' });
    const file = join(dir, 'sq.kiln');
    writeFileSync(file, compiled.artifact);
    const out = execFileSync(
      'node',
      [join(process.cwd(), 'dist/cli/kiln.js'), 'profile', file, '--target', 'native', '--runs', '3'],
      {
        encoding: 'utf8',
      },
    );
    expect(out).toMatch(/conv\+relu/);
    expect(out).toMatch(/3 runs; per run: kernels [0-9.]+ ms/);
    expect(out).not.toMatch(/does not run here/);
  });

  it('rejects bad options with a clear error', async () => {
    const { modelPath, inputShapes } = testData('squeezenet1_1_small');
    await expect(
      compile(readFileSync(modelPath), { modelPath, inputShapes, target: 'native', cpu: 'pentium' as never }),
    ).rejects.toMatchObject({ code: 'E_INPUT', message: expect.stringMatching(/unknown CPU target 'pentium'/) });
    const wasmOnly = await compile(readFileSync(modelPath), { modelPath, inputShapes });
    await expect(load(wasmOnly.artifact, { target: 'native' })).rejects.toMatchObject({ code: 'E_ARTIFACT' });
    await expect(load(wasmOnly.artifact, { target: 'native', timeoutMs: 1000 })).rejects.toMatchObject({
      code: 'E_ARTIFACT',
    });
    await expect(load(wasmOnly.artifact, { target: 'webgpu', timeoutMs: 1000 })).rejects.toMatchObject({
      code: 'E_UNSUPPORTED',
    });
  });

  it('names what to install when LLVM is missing', async () => {
    const { modelPath, inputShapes } = testData('squeezenet1_1_small');
    const saved = process.env.KILN_LLVM_BIN;
    process.env.KILN_LLVM_BIN = '/nonexistent-llvm/bin';
    try {
      await expect(
        compile(readFileSync(modelPath), { modelPath, inputShapes, target: 'native' }),
      ).rejects.toMatchObject({ code: 'E_DEPENDENCY', hint: expect.stringMatching(/apt-get install llvm/) });
    } finally {
      if (saved === undefined) delete process.env.KILN_LLVM_BIN;
      else process.env.KILN_LLVM_BIN = saved;
    }
  });
});

describe.skipIf(!llvm)('target native: packed weights and strided rows', () => {
  it("packs a convolution's weights by the level's vector width, stores its tile transposed, and loads a stride-2 row as one wide vector", async () => {
    // a convolution (weights packed by output channel) then a stride-2 depthwise one (lanes along its output row,
    // reading every other input column)
    const bytes = buildModel({
      inputs: [['x', 'float32', [1, 8, 20, 36]]],
      outputs: [['y', 'float32', [1, 32, 8, 16]]],
      initializers: { w: randomF32([32, 8, 3, 3], 1), d: randomF32([32, 1, 3, 3], 2) },
      nodes: [
        { op: 'Conv', inputs: ['x', 'w'], outputs: ['c'], attrs: { pads: [0, 0, 0, 0] } },
        { op: 'Conv', inputs: ['c', 'd'], outputs: ['y'], attrs: { group: 32, strides: [2, 2] } },
      ],
    });
    const x = randomF32([1, 8, 20, 36], 3);
    const want = (await runOrt(bytes, { x })).y;
    for (const cpu of ['x86-64-v3', 'x86-64-v4'] as const) {
      const lanes = resolveCpu(cpu, hostCpuFlags).tiles.lanes;
      const compiled = await compile(bytes, { target: 'native', cpu, winograd: false });
      expect(printFunc(compiled.graph)).toContain(`weight_block=${lanes}`);
      const ir = nativeModuleText(compiled.program, cpu);
      const even = Array.from({ length: lanes }, (_, l) => `i32 ${2 * l}`).join(', ');
      expect(ir).toContain(`shufflevector <${2 * lanes} x float>`);
      expect(ir).toContain(`<${lanes} x i32> <${even}>`);
      // the convolution's tile (lanes over filters, 6 output columns) is written transposed: each filter's 6
      // columns (4 in the last tile) as one store, no float stored alone
      expect(ir).toContain('store <6 x float>');
      expect(ir).toContain('store <4 x float>');
      expect(ir).not.toMatch(/store float /);
      if (bestLevel(hostCpuFlags()) === cpu || (cpu === 'x86-64-v3' && HOST_CPU === 'x86-64-v4')) {
        const model = await load(compiled.artifact, { target: 'native', threads: 2 });
        expect(model.runsOn).toBe('native');
        expect(compareTensors(model.runSync({ x }).y, want)?.message).toBeUndefined();
        model.dispose();
      }
    }
  });
});

describe.skipIf(!llvm)('target native: vectors as wide as the level', () => {
  it("runs Winograd's transforms in full-width vectors (interleaved stores), a few-filter pointwise convolution along the row, a Gemm's shifted last tile apart", async () => {
    // a 3x3 convolution (Winograd F(4x4): its column transform reads every 4th float along rows of 16 tiles), a
    // 1x1 one to 24 filters
    // (16 lanes would pad a third of the tile), a Gemm to 100 columns (no multiple of 8 or 16: its last tile of
    // packed weights is shifted back into a block)
    const bytes = buildModel({
      inputs: [['x', 'float32', [1, 16, 64, 64]]],
      outputs: [['y', 'float32', [1, 100]]],
      initializers: {
        w: randomF32([48, 16, 3, 3], 6),
        p: randomF32([24, 48, 1, 1], 7),
        g: randomF32([100, 24], 8),
        b: randomF32([100], 9),
      },
      nodes: [
        { op: 'Conv', inputs: ['x', 'w'], outputs: ['c'], attrs: { pads: [1, 1, 1, 1] } },
        { op: 'Relu', inputs: ['c'], outputs: ['r'] },
        { op: 'Conv', inputs: ['r', 'p'], outputs: ['q'] },
        { op: 'GlobalAveragePool', inputs: ['q'], outputs: ['a'] },
        { op: 'Flatten', inputs: ['a'], outputs: ['f'] },
        { op: 'Gemm', inputs: ['f', 'g', 'b'], outputs: ['y'], attrs: { transB: 1 } },
      ],
    });
    const x = randomF32([1, 16, 64, 64], 10);
    const want = (await runOrt(bytes, { x })).y;
    for (const cpu of ['x86-64-v3', 'x86-64-v4'] as const) {
      const lanes = resolveCpu(cpu, hostCpuFlags).tiles.lanes;
      const compiled = await compile(bytes, { target: 'native', cpu, winograd: 4 });
      // packed: the Gemm's weights, and at 8 lanes the pointwise convolution's (24 filters: three vectors)
      expect(printFunc(compiled.graph).match(/weight_block=/g)?.length).toBe(lanes === 16 ? 1 : 2);
      const input = compiled.program.kernels.find((k) => k.ops.includes('winograd_input'))!;
      expect(input.native!.trace).toContainEqual(expect.objectContaining({ p: 'split', factor: lanes }));
      const ir = nativeModuleText(compiled.program, cpu);
      const every4th = Array.from({ length: lanes }, (_, l) => `i32 ${4 * l}`).join(', ');
      expect(ir).toContain(`shufflevector <${4 * lanes} x float>`);
      expect(ir).toContain(`<${lanes} x i32> <${every4th}>`);
      // the output transform's four column phases of a vector of tiles: one contiguous store
      expect(ir).toContain(`store <${4 * lanes} x float>`);
      // the Gemm's tiles before the last read their packed weights with no division left
      const gemm = compiled.program.kernels.find((k) => k.ops.includes('gemm'))!;
      const [tiles] = printPrimFunc(targetLoopIR(gemm.native!.prim, 'native')).split('} else {');
      expect(tiles).toMatch(/if \(i\d\w* < \d+\) \{/);
      expect(tiles).not.toMatch(/in1\[[^\]]*[%/]/);
      if (bestLevel(hostCpuFlags()) === cpu || (cpu === 'x86-64-v3' && HOST_CPU === 'x86-64-v4')) {
        const model = await load(compiled.artifact, { target: 'native', threads: 2 });
        expect(model.runsOn).toBe('native');
        expect(compareTensors(model.runSync({ x }).y, want)?.message).toBeUndefined();
        model.dispose();
      }
    }
  });
});

const scalarF32 = (v: number): Tensor => ({ dtype: 'float32', shape: [], data: new Float32Array([v]) });

describe.skipIf(!llvm)('target native: an inverted residual block (MobileNetV2)', () => {
  it("runs a few-channel pointwise convolution's lanes along H*W, reads padded depthwise edges through masked loads, sweeps rows in memory order", async () => {
    // a 1x1 expansion over 16 channels (row lanes: weights unpacked), a padded stride-1 depthwise convolution, a
    // padded stride-2 one; 40 columns fill no whole tile of 16 lanes, so every column tile touches the padding
    const bytes = buildModel({
      inputs: [['x', 'float32', [1, 16, 40, 40]]],
      outputs: [['y', 'float32', [1, 48, 20, 20]]],
      initializers: {
        e: randomF32([48, 16, 1, 1], 11),
        d: randomF32([48, 1, 3, 3], 12),
        s: randomF32([48, 1, 3, 3], 13),
        lo: scalarF32(0),
        hi: scalarF32(6),
      },
      nodes: [
        { op: 'Conv', inputs: ['x', 'e'], outputs: ['a'] },
        { op: 'Clip', inputs: ['a', 'lo', 'hi'], outputs: ['b'] },
        { op: 'Conv', inputs: ['b', 'd'], outputs: ['c'], attrs: { group: 48, pads: [1, 1, 1, 1] } },
        { op: 'Relu', inputs: ['c'], outputs: ['r'] },
        { op: 'Conv', inputs: ['r', 's'], outputs: ['y'], attrs: { group: 48, pads: [1, 1, 1, 1], strides: [2, 2] } },
      ],
    });
    const x = randomF32([1, 16, 40, 40], 14);
    const want = (await runOrt(bytes, { x })).y;
    for (const cpu of ['x86-64-v3', 'x86-64-v4'] as const) {
      const lanes = resolveCpu(cpu, hostCpuFlags).tiles.lanes;
      const compiled = await compile(bytes, { target: 'native', cpu });
      expect(printFunc(compiled.graph)).not.toContain('weight_block');
      const [expand, depthwise] = compiled.program.kernels.filter((k) => k.ops.includes('conv'));
      expect(expand.native!.trace).toContainEqual({ p: 'fuse', stage: 0, outer: 'i2', inner: 'i3' });
      const order = depthwise.native!.trace.find((s) => s.p === 'reorder');
      expect(order && 'order' in order && order.order.indexOf('i2.o') < order.order.indexOf('i3.o')).toBe(true);
      const ir = nativeModuleText(compiled.program, cpu);
      // the edge tiles: one masked load per tap (unit stride), a masked wide load (stride 2), no lane-by-lane reads
      expect(ir).toContain(`@llvm.masked.load.v${lanes}f32`);
      expect(ir).toContain(`@llvm.masked.load.v${2 * lanes}f32`);
      expect(ir).not.toMatch(/insertelement <\d+ x float> %\w+, float %\w+, i32 [1-9]/);
      if (bestLevel(hostCpuFlags()) === cpu || (cpu === 'x86-64-v3' && HOST_CPU === 'x86-64-v4')) {
        const model = await load(compiled.artifact, { target: 'native', threads: 1 });
        expect(compareTensors(model.runSync({ x }).y, want)?.message).toBeUndefined();
        model.dispose();
      }
    }
  });

  it("clips and rectifies with one compare per vector, bit for bit as WebAssembly's pmin/pmax: NaN passes through, a tie of zeros keeps x", async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [4, 16]]],
      outputs: [
        ['r', 'float32', [4, 16]],
        ['c', 'float32', [4, 16]],
        ['n', 'float32', [4, 16]],
      ],
      initializers: { lo: scalarF32(-0), hi: scalarF32(6), z: scalarF32(0) },
      nodes: [
        { op: 'Relu', inputs: ['x'], outputs: ['r'] },
        { op: 'Clip', inputs: ['x', 'z', 'hi'], outputs: ['c'] },
        { op: 'Min', inputs: ['x', 'lo'], outputs: ['n'] },
      ],
    });
    const special = [-0, 0, Number.NaN, -1, 1, 5.5, 6, 7, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
    const x = new Float32Array(64).map((_, i) => special[i % special.length] * (1 + Math.floor(i / 16)));
    const wasm = await load((await compile(bytes)).artifact, { threads: 1 });
    const compiled = await compile(bytes, { target: 'native', cpu: HOST_CPU });
    const ir = nativeModuleText(compiled.program, HOST_CPU);
    expect(ir).not.toMatch(/fcmp uno <\d+ x float>/);
    const native = await load(compiled.artifact, { target: 'native', threads: 1 });
    const feed = { x: { dtype: 'float32' as const, shape: [4, 16], data: x } };
    const a = wasm.runSync(feed),
      b = native.runSync(feed);
    for (const name of ['r', 'c', 'n']) {
      const [p, q] = [a[name].data as Float32Array, b[name].data as Float32Array];
      // bit for bit: -0 and +0 apart, NaN as NaN
      expect(
        Array.from(q, (v, i) => Object.is(v, p[i]) || `${name} ${i}: ${1 / v} vs ${1 / p[i]}`).filter(
          (t) => t !== true,
        ),
      ).toEqual([]);
    }
    expect(Number.isNaN((b.r.data as Float32Array)[2]) && Number.isNaN((b.c.data as Float32Array)[2])).toBe(true);
    wasm.dispose();
    native.dispose();
  });
});

describe.skipIf(!llvm)('target native: convolutions over few channels', () => {
  it('a stride-1 convolution of a one-channel image keeps its weights unpacked and runs its lanes along the row', async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [1, 1, 24, 40]]],
      outputs: [['y', 'float32', [1, 16, 24, 40]]],
      initializers: { w: randomF32([16, 1, 5, 5], 4) },
      nodes: [{ op: 'Conv', inputs: ['x', 'w'], outputs: ['y'], attrs: { pads: [2, 2, 2, 2] } }],
    });
    const x = randomF32([1, 1, 24, 40], 5);
    const want = (await runOrt(bytes, { x })).y;
    for (const target of ['native', 'wasm'] as const) {
      const compiled = await compile(bytes, target === 'native' ? { target, cpu: HOST_CPU } : {});
      expect(printFunc(compiled.graph)).not.toContain('weight_block');
      const model = await load(compiled.artifact, target === 'native' ? { target, threads: 1 } : { threads: 1 });
      expect(compareTensors(model.runSync({ x }).y, want)?.message).toBeUndefined();
      model.dispose();
    }
  });
});

describe('native CPU levels', () => {
  it('reads /proc/cpuinfo flags and picks the best level they allow', () => {
    const flags = cpuinfoFlags(
      'processor\t: 0\nflags\t\t: fpu sse2 pni ssse3 sse4_1 sse4_2 popcnt avx avx2 fma f16c bmi1 bmi2 movbe\n',
    );
    expect(bestLevel(flags)).toBe('x86-64-v3');
    expect(bestLevel(new Set([...flags, 'avx512f', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512vl']))).toBe('x86-64-v4');
    expect(bestLevel(new Set(['sse2']))).toBe('x86-64');
    expect(resolveCpu('native', () => flags).level).toBe('x86-64-v3');
    expect(() => resolveCpu('x86-64-v9', () => flags)).toThrow(/unknown CPU target/);
  });
});

describe.skipIf(!llvm)('target native: run-time sizes', () => {
  it('one artifact runs every batch and sequence length in range, each matching ONNX Runtime', async () => {
    for (const bytes of [shapeChains, seqSoftmax]) {
      const compiled = await compile(bytes, { target: 'native', cpu: HOST_CPU, dims: { batch: [1, 4], seq: [1, 16] } });
      const model = await load(compiled.artifact, { target: 'native' });
      try {
        expect(model.runsOn).toBe('native');
        for (const [batch, seq] of [
          [1, 1],
          [3, 5],
          [4, 16],
        ]) {
          const feeds = { x: randomF32([batch, seq, 8], 5 + seq), y: randomF32([batch, seq, 4], 6 + batch) };
          const got = model.runSync(feeds);
          const want = await runOrt(bytes, feeds);
          expect(got.z.shape).toEqual(want.z.shape);
          expect(compareTensors(got.z, want.z)?.message, `batch ${batch}, seq ${seq}`).toBeUndefined();
        }
        const outside = await kilnError(() =>
          model.runSync({ x: randomF32([1, 17, 8], 1), y: randomF32([1, 17, 4], 1) }),
        );
        expect([outside.code, outside.message]).toEqual([
          'E_INPUT',
          expect.stringMatching(/\(seq\) is 17, outside the range 1\.\.16/),
        ]);
      } finally {
        model.dispose();
      }
    }
  });

  it('ResNet-18 with a run-time batch (1..8): the guarded kernels at batch 1, 3 and 8', async () => {
    const modelPath = '.cache/models/resnet18_dynamic/model.onnx';
    const bytes = readFileSync(modelPath);
    const compiled = await compile(bytes, { modelPath, target: 'native', cpu: HOST_CPU, dims: { batch: [1, 8] } });
    const model = await load(compiled.artifact, { target: 'native' });
    try {
      for (const batch of [1, 3, 8]) {
        const feeds = { input: randomF32([batch, 3, 32, 32], batch) };
        const got = model.runSync(feeds);
        const want = await runOrt(bytes, feeds);
        expect(got.output.shape).toEqual([batch, 1000]);
        expect(compareTensors(got.output, want.output)?.message, `batch ${batch}`).toBeUndefined();
      }
    } finally {
      model.dispose();
    }
  });
});

describe.skipIf(!llvm)('target native: control flow', () => {
  it('a Loop whose body multiplies by a 128x128 matrix (phases split among threads) matches ONNX Runtime at 1, 2 and 4 threads', async () => {
    const w = randomF32([128, 128], 3);
    (w.data as Float32Array).forEach((v, i, d) => {
      d[i] = v * 0.1;
    });
    const bytes = buildModel({
      opset: 17,
      inputs: [
        ['M', 'int64', []],
        ['x', 'float32', [64, 128]],
      ],
      outputs: [['x_final', 'float32', [64, 128]]],
      initializers: { w },
      nodes: [
        {
          op: 'Constant',
          inputs: [],
          outputs: ['yes'],
          attrs: { value: { dtype: 'bool', shape: [], data: new Uint8Array([1]) } },
        },
        {
          op: 'Loop',
          inputs: ['M', 'yes', 'x'],
          outputs: ['x_final'],
          attrs: {
            body: {
              graph: {
                inputs: [
                  ['i', 'int64', []],
                  ['c', 'bool', []],
                  ['xc', 'float32', [64, 128]],
                ],
                outputs: [
                  ['c_out', 'bool', []],
                  ['xn', 'float32', [64, 128]],
                ],
                nodes: [
                  { op: 'Identity', inputs: ['c'], outputs: ['c_out'] },
                  { op: 'MatMul', inputs: ['xc', 'w'], outputs: ['xw'] },
                  { op: 'Tanh', inputs: ['xw'], outputs: ['xn'] },
                ],
              },
            },
          },
        },
      ],
    });
    const compiled = await compile(bytes, { target: 'native', cpu: HOST_CPU });
    expect(compiled.header.native?.perCall).toBe(true);
    expect(nativeModuleText(compiled.program, HOST_CPU)).toContain('@GOMP_parallel');
    const x = randomF32([64, 128], 4);
    const i64 = (v: number): Tensor => ({ dtype: 'int64', shape: [], data: new BigInt64Array([BigInt(v)]) });
    let first: Tensor | undefined;
    for (const threads of [2, 1, 4]) {
      const model = await load(compiled.artifact, { target: 'native', threads });
      try {
        expect([model.runsOn, model.threads]).toEqual(['native', threads]);
        for (const trips of [0, 1, 5]) {
          const feeds = { M: i64(trips), x };
          const got = model.runSync(feeds).x_final;
          const want = (await runOrt(bytes, feeds)).x_final;
          expect(compareTensors(got, want)?.message, `${threads} threads, ${trips} trips`).toBeUndefined();
          if (trips === 5) {
            first ??= got;
            expect(got.data, `${threads} threads`).toEqual(first.data);
            // timed: the calls the control program made (the body's once per trip), the same bytes
            const timings: KernelTiming[] = [];
            expect(model.runSync(feeds, timings).x_final.data).toEqual(got.data);
            const perTrip = timings.filter((t) => compiled.header.kernels[t.kernel].ops.includes('matmul'));
            expect(perTrip).toHaveLength(5);
          }
        }
      } finally {
        model.dispose();
      }
    }
  });
});

describe.skipIf(!llvm)('target native: threads', () => {
  const cpus = availableParallelism();
  const cpuLists = () =>
    Object.fromEntries(
      readdirSync('/proc/self/task').map((tid) => [
        tid,
        /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`/proc/self/task/${tid}/status`, 'utf8'))?.[1],
      ]),
    );
  it.skipIf(cpus < 2)(
    'a team as large as the CPUs binds each worker to its own CPU, never the calling thread, and computes the same bytes',
    async () => {
      const bytes = buildModel({
        inputs: [['x', 'float32', [256, 256]]],
        outputs: [['y', 'float32', [256, 256]]],
        initializers: { w: randomF32([256, 256], 5) },
        nodes: [
          { op: 'MatMul', inputs: ['x', 'w'], outputs: ['xw'] },
          { op: 'Tanh', inputs: ['xw'], outputs: ['y'] },
        ],
      });
      const compiled = await compile(bytes, { target: 'native', cpu: HOST_CPU });
      const feeds = { x: randomF32([256, 256], 6) };
      const callerBefore = cpuLists()[String(process.pid)];
      const results: Tensor[] = [];
      for (const threads of [1, cpus]) {
        const model = await load(compiled.artifact, { target: 'native', threads });
        try {
          expect([model.runsOn, model.threads]).toEqual(['native', threads]);
          results.push(model.runSync(feeds).y);
        } finally {
          model.dispose();
        }
      }
      expect(compareTensors(results[0], (await runOrt(bytes, feeds)).y)?.message).toBeUndefined();
      expect(results[1].data).toEqual(results[0].data);
      const lists = cpuLists();
      expect(lists[String(process.pid)]).toBe(callerBefore);
      const bound = new Set(Object.values(lists).filter((l) => l && /^\d+$/.test(l)));
      expect(bound.size).toBe(cpus - 1);
    },
  );
});
