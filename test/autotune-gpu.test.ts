// Tuning GPU schedules: the GPU search space over GpuScheduleOptions, WebGPU tuning on Dawn + SwiftShader (records
// under the adapter's target key, checked against the default schedule's output, applied by compile), and the
// CUDA builder's ptxas resource checks (no GPU here: candidates are assembled and checked, never measured).
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { tempDir } from './helpers/temp.js';
import { compile, load } from '../src/index.js';
import { KilnError } from '../src/runtime/errors.js';
import { compareTensors } from '../src/conformance/compare.js';
import { nodeGpuAdapter, nodeGpuDevice } from '../src/conformance/node-webgpu.js';
import { importAndOptimize } from '../src/compiler/compile.js';
import { fuseOps } from '../src/relay-ir/passes/fuse-ops.js';
import { buildModel, randomF32, type ModelSpec } from '../src/frontend/onnx/model-builder.js';
import { Schedule } from '../src/schedule/schedule.js';
import { gpuTrace } from '../src/schedule/gpu-schedule.js';
import { TuningDatabase } from '../src/autotune/database.js';
import { cudaTarget, webgpuTarget } from '../src/autotune/target.js';
import { extractTasks } from '../src/autotune/tasks.js';
import { GpuSearchSpace } from '../src/autotune/gpu-space.js';
import { TaskSearch } from '../src/autotune/search.js';
import { Rng } from '../src/autotune/rng.js';
import { traceHash } from '../src/autotune/database.js';
import { gpuBaseOptions, tune } from '../src/autotune/tuner.js';
import { tunedTraces } from '../src/autotune/apply.js';
import { checkCudaPtx } from '../src/autotune/gpu-build.js';
import { ptxasAvailable } from '../src/codegen/ptx/ptxas.js';
import { cudaAvailable } from '../src/node/cuda-driver.js';
import { VERSION } from '../src/compiler/version.js';

const tmp = () => tempDir('kiln-tune-gpu-');
const matmul: ModelSpec = {
  inputs: [['a', 'float32', [32, 48]]],
  outputs: [['c', 'float32', [32, 40]]],
  nodes: [
    { op: 'MatMul', inputs: ['a', 'w'], outputs: ['m'] },
    { op: 'Relu', inputs: ['m'], outputs: ['c'] },
  ],
  initializers: { w: randomF32([48, 40], 3) },
};
const addModel: ModelSpec = {
  inputs: [
    ['x', 'float32', [8, 512]],
    ['y', 'float32', [8, 512]],
  ],
  outputs: [['z', 'float32', [8, 512]]],
  nodes: [{ op: 'Add', inputs: ['x', 'y'], outputs: ['z'] }],
};
// big enough for the shared-memory tiled GPU schedule
const tiledMatmul: ModelSpec = {
  inputs: [['a', 'float32', [128, 256]]],
  outputs: [['c', 'float32', [128, 256]]],
  nodes: [{ op: 'MatMul', inputs: ['a', 'w'], outputs: ['c'] }],
  initializers: { w: randomF32([256, 256], 4) },
};
const gpuTasks = (bytes: Uint8Array, kind: 'webgpu' | 'cuda', maxThreads: number) =>
  extractTasks(
    fuseOps(importAndOptimize(bytes).graph),
    (k) => new GpuSearchSpace(() => new Schedule([k.output]), { maxThreads, base: gpuBaseOptions(kind) }),
  );

describe('GPU search space', () => {
  it("its default candidate is the compiler's GPU schedule; samples are valid and seeded", () => {
    for (const kind of ['webgpu', 'cuda'] as const) {
      const [task] = gpuTasks(buildModel(matmul), kind, kind === 'cuda' ? 1024 : 256);
      const space = task.space as GpuSearchSpace;
      const def = space.defaults()!;
      expect(space.valid(def)).toBe(true);
      expect(space.trace(def)).toEqual(gpuTrace(new Schedule([task.kernel.output]), gpuBaseOptions(kind)));
      const threads = space.stages[0].fields.find((f) => f.name === 'threads')!.domain({});
      expect('values' in threads && threads.values.every((t) => (t as number) <= (kind === 'cuda' ? 1024 : 256))).toBe(
        true,
      );
      const a = Array.from({ length: 8 }, (_, i) => space.sample(new Rng(`s${i}`)));
      const b = Array.from({ length: 8 }, (_, i) => space.sample(new Rng(`s${i}`)));
      expect(a).toEqual(b);
      for (const d of a) {
        expect(space.valid(d)).toBe(true);
        expect(space.trace(d).length).toBeGreaterThan(0);
      }
    }
  });

  it('its default candidate builds into the very WGSL and PTX the compiler emits', async () => {
    const { buildWebGpuCandidate } = await import('../src/autotune/gpu-build.js');
    const { buildCudaSection } = await import('../src/compiler/cuda-program.js');
    const { buildProgram } = await import('../src/compiler/program.js');
    const { kernelMain } = await import('../src/autotune/tasks.js');
    for (const spec of [matmul, addModel, tiledMatmul]) {
      const [w] = gpuTasks(buildModel(spec), 'webgpu', 256);
      // WGSL names carry process-wide counters: renumbered in order of appearance
      const code = (t: ReturnType<typeof buildWebGpuCandidate>) =>
        t.header.webgpu!.kernels.flatMap((k) =>
          k.stages.map((s) => {
            const names = new Map<string, string>();
            return s.code.replace(/\b[A-Za-z_][A-Za-z0-9_]*\d[A-Za-z0-9_]*\b/g, (n) => {
              if (!names.has(n)) names.set(n, `n${names.size}`);
              return names.get(n)!;
            });
          }),
        );
      expect(code(buildWebGpuCandidate(w.spec, w.space.trace(w.space.defaults()!)))).toEqual(
        code(buildWebGpuCandidate(w.spec, null)),
      );
      const [c] = gpuTasks(buildModel(spec), 'cuda', 1024);
      const prog = buildProgram(kernelMain(c.fn), { optimize: false });
      const ptx = (trace?: readonly object[]) =>
        buildCudaSection(prog.kernels, 80, prog.header.memoryBytes, trace && (() => trace as never)).section.ptx;
      expect(ptx(c.space.trace(c.space.defaults()!))).toBe(ptx());
    }
  });

  it('the evolutionary search over it proposes the same candidates given the same seed and measurements', () => {
    const [task] = gpuTasks(buildModel(matmul), 'webgpu', 256);
    const run = () => {
      const s = new TaskSearch(task.space, task.kernel, task.workload.key, { strategy: 'evolutionary', seed: 7 });
      const def = task.space.defaults()!;
      const t = task.space.trace(def);
      s.observe({ hash: traceHash(t), trace: t, decisions: def }, 2);
      const out: string[] = [];
      for (let round = 0; round < 3; round++) {
        const cands = s.propose(2);
        cands.forEach((c, i) => s.observe(c, 1 + ((round * 3 + i) % 5) / 4));
        out.push(...cands.map((c) => c.hash));
      }
      return out;
    };
    const first = run();
    expect(first.length).toBeGreaterThan(0);
    expect(run()).toEqual(first);
  });
});

describe('GPU target keys', () => {
  it('WebGPU: the adapter (vendor, architecture, device) and code-relevant features; no host name', async () => {
    const a = {
      info: {
        vendor: 'google',
        architecture: 'swiftshader',
        device: 'swiftshader-device-subzero-',
        description: 'SwiftShader driver 5.0.0',
      },
      features: ['timestamp-query', 'texture-compression-bc', 'subgroups'],
      limits: { maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256 },
    };
    const t = webgpuTarget(a);
    expect(t.key).toBe('webgpu/google.swiftshader/swiftshader-device-subzero/subgroups+timestamp-query');
    expect(webgpuTarget({ ...a, features: [...a.features].reverse() }).key).toBe(t.key);
    expect(t.maxThreads).toBe(256);
    // the adapter of this machine
    const here = webgpuTarget(await nodeGpuAdapter());
    expect(here.key).toMatch(/^webgpu\/[a-z0-9.-]+\/[a-z0-9.-]+\/[a-z0-9+-]+$/);
    expect(here.key).not.toContain(hostname().toLowerCase());
  });

  it('CUDA: the SM and the device name when a driver reports one; stable', () => {
    expect(cudaTarget(80).key).toBe('cuda/sm_80/no-device/none');
    expect(cudaTarget(86).key).toBe('cuda/sm_86/no-device/none');
    const t = cudaTarget(90, { name: 'NVIDIA H100 80GB HBM3', driver: '13.0' });
    expect(t.key).toBe('cuda/sm_90/nvidia-h100-80gb-hbm3/none');
    expect(cudaTarget(90, { name: 'NVIDIA H100 80GB HBM3', driver: '13.1' }).key).toBe(t.key); // a driver update keeps the key
  });
});

describe('applying GPU records at compile', () => {
  it('compile --target cuda uses a record of any device with that SM, not of another SM', async () => {
    const bytes = buildModel(addModel);
    const [task] = gpuTasks(bytes, 'cuda', 1024);
    const trace = gpuTrace(new Schedule([task.kernel.output]), { threads: 128 });
    const measuredOn = cudaTarget(80, { name: 'NVIDIA A100-SXM4-80GB', driver: '13.0' });
    const db = TuningDatabase.open(':memory:');
    try {
      db.addRecord({ ...task.workload, ops: task.ops }, measuredOn, {
        workload: task.workload.key,
        target: measuredOn.key,
        trace,
        costs: [0.01],
        ms: 0.01,
        time: '2026-11-22T00:00:00Z',
        kiln: VERSION,
        search: 'test',
      });
      const lookup = tunedTraces(db, cudaTarget(80));
      const tuned = await compile(bytes, { target: 'cuda', sm: 80, gpuTraceFor: (k) => lookup.traceFor(undefined, k) });
      expect(tuned.gpuTuned).toHaveLength(1);
      expect(tuned.header.cuda!.kernels[0].launches[0].block).toEqual([128, 1, 1]);
      const plain = await compile(bytes, { target: 'cuda', sm: 80 });
      expect(plain.header.cuda!.kernels[0].launches[0].block).toEqual([256, 1, 1]);
      expect(tunedTraces(db, cudaTarget(86)).traceFor(undefined, task.kernel)).toBeUndefined();
    } finally {
      db.close();
    }
  });
});

describe('tuning on WebGPU (Dawn + SwiftShader)', () => {
  it('a short job records under the adapter key; the best record reproduces the default output and compile applies it', async () => {
    const dbPath = join(tmp(), 'kiln.sqlite');
    const bytes = buildModel(matmul);
    const opts = {
      target: 'webgpu' as const,
      trials: 3,
      batch: 3,
      workers: 1,
      seed: 11,
      repeats: 2,
      minRepeatMs: 1,
      warmup: 1,
    };
    const report = await tune(bytes, { ...opts, db: dbPath });
    const key = webgpuTarget(await nodeGpuAdapter()).key;
    expect(report.target.key).toBe(key);
    expect(report.target.kind).toBe('webgpu');
    const task = report.tasks[0];
    expect(task.skipped).toBeUndefined();
    expect(task.defaultMs).toBeGreaterThan(0);
    expect(report.trials).toBeGreaterThan(0);
    console.log(
      `webgpu matmul 32x48x40: default ${task.defaultMs!.toFixed(3)} ms, best ${task.bestMs!.toFixed(3)} ms after ${report.trials} trials, ${report.errors} errors`,
    );

    const db = TuningDatabase.open(dbPath);
    try {
      const recs = db.records(task.workload, key);
      expect(recs.length).toBeGreaterThanOrEqual(1 + report.trials);
      expect(recs.every((r) => r.target === key)).toBe(true);
      expect(recs[0].search).toBe('default');
      expect(
        recs
          .filter((r) => r.search !== 'default' && r.search !== 'remeasure')
          .every((r) => r.decisions && 'gpu' in r.decisions),
      ).toBe(true);
      // no WebAssembly records were made
      expect(db.records(task.workload, report.target.key.replace(/^webgpu/, 'wasm'))).toHaveLength(0);

      // compile with the records: the WebGPU kernel uses the best record's schedule, and computes what the default does
      const best = db.bestFor(task.workload, webgpuTarget(await nodeGpuAdapter()))!;
      expect(best).toBeDefined();
      const lookup = tunedTraces(db, webgpuTarget(await nodeGpuAdapter()));
      const tuned = await compile(bytes, { target: 'webgpu', gpuTraceFor: (k) => lookup.traceFor(undefined, k) });
      expect(tuned.gpuTuned).toHaveLength(1);
      expect(lookup.used).toHaveLength(1);
      const plain = await compile(bytes, { target: 'webgpu' });
      expect(plain.gpuTuned).toHaveLength(0);
      const device = await nodeGpuDevice();
      const a = randomF32([32, 48], 5);
      const [mt, mp] = [
        await load(tuned.artifact, { target: 'webgpu', device }),
        await load(plain.artifact, { target: 'webgpu', device }),
      ];
      try {
        const got = (await mt.run({ a })).c,
          want = (await mp.run({ a })).c;
        expect(compareTensors(got, want)?.message).toBeUndefined();
      } finally {
        mt.dispose?.();
        mp.dispose?.();
      }
    } finally {
      db.close();
    }
  }, 60_000);

  it('the same seed proposes the same candidates (random search, fresh databases)', async () => {
    const bytes = buildModel(matmul);
    const traces = async () => {
      const db = TuningDatabase.open(':memory:');
      try {
        const r = await tune(bytes, {
          target: 'webgpu',
          strategy: 'random',
          trials: 3,
          batch: 3,
          workers: 1,
          seed: 4,
          repeats: 1,
          minRepeatMs: 0,
          warmup: 1,
          db,
        });
        return db
          .records(r.tasks[0].workload, r.target.key)
          .filter((x) => x.search === 'random')
          .map((x) => traceHash(x.trace));
      } finally {
        db.close();
      }
    };
    const a = await traces();
    expect(a.length).toBe(3);
    expect(await traces()).toEqual(a);
  }, 60_000);

  it('a candidate with wrong numbers, a failing pipeline or one that hangs is recorded as an error and the job goes on', async () => {
    const { WebGpuRunner } = await import('../src/autotune/gpu-runner.js');
    const inner = new WebGpuRunner(await nodeGpuDevice());
    // programs numbered in order of first appearance (0: the default schedule, which the tuner measures again
    // around the candidates of each batch)
    const ids = new Map<string, number>();
    const faulty = {
      async measure(task: Parameters<typeof inner.measure>[0], timeoutMs: number) {
        const key = JSON.stringify(task.header.webgpu);
        if (!ids.has(key)) ids.set(key, ids.size);
        const n = ids.get(key)! + 1;
        if (n === 3) {
          // a shader the device's WGSL compiler rejects
          const wg = task.header.webgpu!;
          const broken = {
            ...wg,
            kernels: wg.kernels.map((k) => ({
              ...k,
              stages: k.stages.map((s) => ({ ...s, code: s.code.replace('fn main', 'fn main(') })),
            })),
          };
          return inner.measure({ ...task, header: { ...task.header, webgpu: broken } }, timeoutMs);
        }
        if (n === 4) return inner.measure({ ...task, fault: 'hang' }, 1000);
        const r = await inner.measure(task, timeoutMs);
        if (n === 2 && r.ok) (r.out.output.data as Float32Array)[7] += 1;
        return r;
      },
      close: () => inner.close(),
    };
    const db = TuningDatabase.open(':memory:');
    try {
      const report = await tune(buildModel(matmul), {
        target: 'webgpu',
        strategy: 'random',
        trials: 3,
        batch: 3,
        workers: 1,
        seed: 2,
        repeats: 1,
        minRepeatMs: 0,
        warmup: 1,
        db,
        runner: faulty,
      });
      expect(report.trials).toBe(3);
      expect(report.errors).toBe(3);
      const recs = db.records(report.tasks[0].workload, report.target.key);
      expect(
        recs
          .filter((r) => r.errorKind)
          .map((r) => r.errorKind)
          .sort(),
      ).toEqual(['run', 'timeout', 'wrong']);
      expect(recs.find((r) => r.errorKind === 'run')!.error).toMatch(/does not compile|WGSL/);
    } finally {
      db.close();
    }
  }, 60_000);
});

describe('the WebGPU measuring process', () => {
  it('times with timestamp queries on an adapter that has them, and by the wall clock otherwise', async () => {
    const { WebGpuRunner } = await import('../src/autotune/gpu-runner.js');
    const { buildWebGpuCandidate } = await import('../src/autotune/gpu-build.js');
    const [task] = gpuTasks(buildModel(matmul), 'webgpu', 256);
    const built = buildWebGpuCandidate(task.spec, null);
    const job = { header: built.header, wasm: built.wasm, seed: 1, warmup: 1, repeats: 2, minRepeatMs: 0 };
    const device = await nodeGpuDevice();
    const stamped = new WebGpuRunner(device),
      wall = new WebGpuRunner(device, { timing: 'wall' });
    expect(stamped.timing).toBe((await nodeGpuAdapter()).features.includes('timestamp-query') ? 'timestamp' : 'wall');
    expect(wall.timing).toBe('wall');
    const [a, b] = [await stamped.measure(job, 30_000), await wall.measure(job, 30_000)];
    for (const r of [a, b]) {
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.out.costs.every((c) => c > 0)).toBe(true);
    }
    if (a.ok && b.ok) expect(compareTensors(a.out.output, b.out.output)?.message).toBeUndefined();
  }, 60_000);

  it('is killed when a candidate runs past the timeout; the next candidate gets a fresh one', async () => {
    const { ChildWebGpuRunner } = await import('../src/autotune/gpu-runner.js');
    const { buildWebGpuCandidate } = await import('../src/autotune/gpu-build.js');
    const [task] = gpuTasks(buildModel(matmul), 'webgpu', 256);
    const built = buildWebGpuCandidate(task.spec, null);
    const job = { header: built.header, wasm: built.wasm, seed: 1, warmup: 1, repeats: 2, minRepeatMs: 0 };
    const runner = new ChildWebGpuRunner();
    try {
      const hung = await runner.measure({ ...job, fault: 'hang' }, 1500);
      expect(hung).toMatchObject({ ok: false, kind: 'timeout' });
      const ok = await runner.measure(job, 30_000);
      expect(ok.ok).toBe(true);
      if (ok.ok) {
        expect(ok.out.costs).toHaveLength(2);
        expect(ok.out.output.shape).toEqual([32, 40]);
      }
    } finally {
      await runner.close();
    }
  }, 60_000);
});

describe.skipIf(!ptxasAvailable())('tuning for CUDA: ptxas resource checks', () => {
  it('rejects a candidate with more threads per block than sm_80 allows, before measuring, as a recorded error', async () => {
    const bytes = buildModel(addModel);
    const [task] = gpuTasks(bytes, 'cuda', 1024);
    // one output per thread, as target 'cuda' schedules (vec4 lanes would make 1024 threads of the 4096 outputs: within the limit)
    const oversize = gpuTrace(new Schedule([task.kernel.output]), { threads: 2048, vec4: false });
    const db = TuningDatabase.open(':memory:');
    try {
      const report = await tune(bytes, {
        target: 'cuda',
        sm: 80,
        buildOnly: true,
        trials: 3,
        batch: 2,
        workers: 1,
        seed: 1,
        db,
        seedTraces: [oversize],
      });
      expect(report.target.key).toBe(cudaTarget(80).key);
      const recs = db.records(task.workload.key, report.target.key);
      expect(recs[0].search).toBe('default/build-only');
      expect(recs[0].error).toBeUndefined();
      const bad = recs.find((r) => traceHash(r.trace) === traceHash(oversize))!;
      expect(bad.errorKind).toBe('resources');
      expect(bad.error).toMatch(/E_RESOURCES.*2048 threads per block \(limit 1024\)/);
      expect(recs.filter((r) => r.search?.endsWith('/build-only')).length).toBeGreaterThanOrEqual(2);
      // built-only records have no latency: never a best record
      expect(db.best(task.workload.key, report.target.key, 10)).toHaveLength(0);
    } finally {
      db.close();
    }
  }, 60_000);

  it('rejects a tiled candidate whose shared-memory tiles exceed 48 KiB per block, as a recorded error', async () => {
    const bytes = buildModel(tiledMatmul);
    const [task] = gpuTasks(bytes, 'cuda', 1024);
    expect(task.space.stages[0].fields.map((f) => f.name)).toEqual(
      expect.arrayContaining(['tileRows', 'tileCols', 'regRows', 'regCols']),
    );
    // 128 x 128 outputs per block (1024 threads), 64-deep reduction steps: (128 x 64 + 64 x 128) floats = 64 KiB of tiles
    const oversize = gpuTrace(new Schedule([task.kernel.output]), {
      tileRows: 128,
      tileCols: 128,
      tileK: 64,
      maxThreads: 1024,
      sharedBytes: 1 << 20,
    });
    const db = TuningDatabase.open(':memory:');
    try {
      await tune(bytes, {
        target: 'cuda',
        sm: 80,
        buildOnly: true,
        trials: 1,
        workers: 1,
        seed: 1,
        db,
        seedTraces: [oversize],
      });
      const bad = db
        .records(task.workload.key, cudaTarget(80).key)
        .find((r) => traceHash(r.trace) === traceHash(oversize))!;
      expect(bad.errorKind).toBe('resources');
      expect(bad.error).toMatch(/65536 bytes of static shared memory \(limit 49152\)/);
    } finally {
      db.close();
    }
  }, 60_000);

  it('rejects a kernel over the 48 KiB of static shared memory per block (ptxas -v reports it)', () => {
    const ptx =
      `.version 8.0\n.target sm_80\n.address_size 64\n.visible .entry big(.param .u64 p)\n{\n  .reg .u64 %rd<4>;\n  .reg .u32 %r<2>;\n  .reg .f32 %f<2>;\n` +
      `  .shared .align 4 .b8 buf[65536];\n  ld.param.u64 %rd1, [p];\n  mov.u32 %r1, %tid.x;\n  mul.wide.u32 %rd2, %r1, 4;\n  mov.u64 %rd3, buf;\n` +
      `  add.u64 %rd3, %rd3, %rd2;\n  ld.shared.f32 %f1, [%rd3+60000];\n  add.u64 %rd1, %rd1, %rd2;\n  st.global.f32 [%rd1], %f1;\n  ret;\n}\n`;
    const launch = {
      entry: 'big',
      grid: [1, 1, 1] as [number, number, number],
      block: [128, 1, 1] as [number, number, number],
      sharedBytes: 65536,
    };
    let err: unknown;
    try {
      checkCudaPtx(ptx, 80, [launch]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KilnError);
    expect((err as KilnError).code).toBe('E_RESOURCES');
    expect((err as KilnError).message).toMatch(/65536 bytes of static shared memory \(limit 49152\)/);
    // the same kernel with a small buffer passes, with its usage reported
    const small = ptx.replace('buf[65536]', 'buf[1024]').replace('+60000', '+512');
    const res = checkCudaPtx(small, 80, [{ ...launch, sharedBytes: 1024 }]);
    expect(res[0]).toMatchObject({ entry: 'big', sharedBytes: 1024, spillStores: 0 });
  });

  it('without a CUDA driver, measuring fails with E_NO_DEVICE before any work', async () => {
    if (await cudaAvailable()) return; // a GPU machine measures for real
    await expect(
      tune(buildModel(addModel), { target: 'cuda', sm: 80, trials: 1, db: ':memory:' }),
    ).rejects.toMatchObject({ code: 'E_NO_DEVICE' });
  });
});

describe('kiln tune / compile --target webgpu', () => {
  it('tunes, then compile applies the records and reports the tuned WebGPU kernel', () => {
    const dir = tmp();
    const model = join(dir, 'mm.onnx'),
      db = join(dir, 'kiln.sqlite');
    writeFileSync(model, buildModel(matmul));
    const cli = join(process.cwd(), 'dist/cli/kiln.js');
    const kiln = (...args: string[]) =>
      execFileSync('node', [cli, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const out = kiln('tune', model, '--target', 'webgpu', '--trials', '2', '--db', db, '--seed', '3', '--workers', '1');
    expect(out).toMatch(/on webgpu\/[^ ]+ \(Dawn/);
    const c = kiln('compile', model, '--target', 'webgpu', '--db', db, '-o', join(dir, 'mm.kiln'));
    expect(c).toMatch(/tuned webgpu schedules \(webgpu\/[^)]+\): 1 of 1 kernels/);
    expect(readFileSync(join(dir, 'mm.kiln')).length).toBeGreaterThan(0);
    let err = '';
    try {
      kiln('tune', model, '--target', 'wasm', '--build-only', '--db', db);
    } catch (e) {
      err = String((e as { stderr?: string }).stderr);
    }
    expect(err).toMatch(/--build-only applies to --target cuda/);
  }, 60_000);
});
