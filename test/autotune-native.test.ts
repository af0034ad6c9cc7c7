// Tuning native kernels (target 'native'): the CPU search space at the native vector widths holds the native
// default schedule; a tuning run builds candidates through LLVM and measures them in the native measuring process,
// recording under a native target key (level, CPU model, CPU flags); compiling for native applies those records to
// the native library only and still matches ONNX Runtime; a candidate that crashes its process or hangs costs a
// restart of that process, not the tuner. Skipped only where LLVM's tools are not installed.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { compile, load } from '../src/index.js';
import { compareTensors } from '../src/conformance/compare.js';
import { importAndOptimize } from '../src/compiler/compile.js';
import { fuseOps } from '../src/relay-ir/passes/fuse-ops.js';
import { Schedule, type TraceStep } from '../src/schedule/schedule.js';
import { lower } from '../src/schedule/lower.js';
import { printPrimFunc } from '../src/schedule/loop-ir.js';
import { defaultTrace } from '../src/schedule/cpu-schedule.js';
import { CPU_TARGETS, bestLevel } from '../src/codegen/native/cpu.js';
import { findLlvm } from '../src/codegen/native/toolchain.js';
import { hostCpuFlags, nativeModuleText } from '../src/compiler/native-program.js';
import { matmulModel } from '../src/bench/matmul-model.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { TuningDatabase } from '../src/autotune/database.js';
import { nativeTarget } from '../src/autotune/target.js';
import { extractTasks } from '../src/autotune/tasks.js';
import { SearchSpace } from '../src/autotune/space.js';
import { Rng } from '../src/autotune/rng.js';
import { tune } from '../src/autotune/tuner.js';
import { tunedTraces } from '../src/autotune/apply.js';
import { ChildNativeRunner, LocalBuilder } from '../src/autotune/measure.js';
import { runOrt } from './helpers/ort.js';
import { tempDir } from './helpers/temp.js';
import { kilnError } from './helpers/errors.js';

const llvm = findLlvm();
const HOST_LEVEL = bestLevel(hostCpuFlags());
const modelPath = (name: string) => `.cache/models/${name}/model.onnx`;

/** The tasks of a model with the native space of a level. */
const nativeTasks = (bytes: Uint8Array, level: keyof typeof CPU_TARGETS) =>
  extractTasks(
    fuseOps(importAndOptimize(bytes).graph),
    (k) => new SearchSpace(() => new Schedule([k.output]), CPU_TARGETS[level].tiles),
    undefined,
    true,
  );

/** The loop IR of a kernel under `trace`, identifiers renumbered in order of appearance (fresh names differ). */
function lowered(
  output: Parameters<typeof lower>[1][number],
  inputs: Parameters<typeof lower>[1],
  trace: readonly TraceStep[],
): string {
  const sch = new Schedule([output]);
  for (const s of trace) sch.apply(s);
  const names = new Map<string, string>();
  return printPrimFunc(lower('k', inputs, sch)).replace(/\b[A-Za-z_][A-Za-z0-9_]*\b/g, (id) => {
    if (!names.has(id)) names.set(id, `v${names.size}`);
    return names.get(id)!;
  });
}

describe('native search space', () => {
  it.skipIf(!existsSync(modelPath('mobilenet_v2_small')))(
    'holds the native default schedule at 8 and 16 lanes, and its samples lower',
    () => {
      for (const level of ['x86-64-v3', 'x86-64-v4'] as const) {
        const tiles = CPU_TARGETS[level].tiles;
        let tiled = 0,
          reproduced = 0;
        for (const bytes of [readFileSync(modelPath('mobilenet_v2_small')), matmulModel(64, 96, 128).bytes]) {
          for (const t of nativeTasks(bytes, level)) {
            const native = defaultTrace(new Schedule([t.kernel.output]), tiles);
            if (!native.some((s) => s.p === 'cacheWrite')) continue;
            tiled++;
            const d = t.space.defaults();
            if (!d) continue;
            expect(lowered(t.kernel.output, t.kernel.inputs, t.space.trace(d))).toBe(
              lowered(t.kernel.output, t.kernel.inputs, native),
            );
            reproduced++;
            // the lane splits are the level's vector width (or half of it for a narrow axis), not WebAssembly's 4
            const r = new Rng(level.length);
            for (let i = 0; i < 5; i++) {
              const trace = t.space.trace(t.space.sample(r));
              expect(() => lowered(t.kernel.output, t.kernel.inputs, trace)).not.toThrow();
            }
          }
        }
        expect(tiled).toBeGreaterThan(5);
        // (a tile whose lane axis is narrower than the vectors takes half-width ones: outside the space's grid)
        expect(reproduced).toBeGreaterThanOrEqual(tiled - 2);
      }
    },
  );
});

describe.skipIf(!llvm)('tuning native kernels', () => {
  it('tunes a MatMul on native, records it under the native key, and compiling for native applies it (matches ONNX Runtime)', async () => {
    const dbPath = join(tempDir('kiln-tune-native-'), 'kiln.sqlite');
    const { bytes, input } = matmulModel(128, 192, 256);
    // a candidate the search might not draw: 2 rows x 1 vector, checked to be built and applied below
    const [task] = nativeTasks(bytes, HOST_LEVEL);
    const given = task.space.trace({
      ...task.space.defaults()!,
      [task.space.stages.find((s) => s.kind === 'reduce')!.stage]: {
        ...task.space.defaults()![task.space.stages.find((s) => s.kind === 'reduce')!.stage],
        vj: 1,
        vi: 2,
      },
    });
    const report = await tune(bytes, {
      target: 'native',
      cpu: HOST_LEVEL,
      trials: 6,
      batch: 3,
      workers: 2,
      db: dbPath,
      seed: 3,
      repeats: 3,
      minRepeatMs: 2,
      seedTraces: [given],
    });
    const target = nativeTarget(CPU_TARGETS[HOST_LEVEL]);
    expect(report.target.key).toBe(target.key);
    expect(report.target.key).toMatch(new RegExp(`^native/${HOST_LEVEL}/`));
    expect(report.trials).toBe(6);
    expect(report.errors).toBe(0);
    const t = report.tasks[0];
    expect(t.defaultMs).toBeGreaterThan(0);
    console.log(
      `native matmul 128x192x256 (${HOST_LEVEL}): default ${t.defaultMs!.toFixed(3)} ms, best after ${report.trials} trials ${t.bestMs!.toFixed(3)} ms`,
    );

    const db = TuningDatabase.open(dbPath);
    try {
      const recs = db.records(t.workload, target.key);
      expect(recs.find((r) => r.search === 'default')?.rel).toBe(1);
      expect(recs.some((r) => JSON.stringify(r.trace) === JSON.stringify(given) && r.ms! > 0)).toBe(true);
      // nothing went under the WebAssembly target
      expect(db.counts().targets).toBe(1);

      // compiling for native applies the best native record to the native kernel; the WebAssembly module keeps
      // its own schedule (no WebAssembly records)
      const lookup = tunedTraces(db, target);
      const r = await compile(bytes, { target: 'native', cpu: HOST_LEVEL, nativeTraceFor: lookup.traceFor });
      expect(r.nativeTuned).toEqual(['k0']);
      expect(r.program.kernels[0].tuned).toBeUndefined();
      expect(lookup.used).toHaveLength(1);
      const model = await load(r.artifact, { target: 'native', threads: 1 });
      const got = model.runSync({ A: input }).Y;
      const want = (await runOrt(bytes, { A: input })).Y;
      expect(compareTensors(got, want)?.message).toBeUndefined();
      model.dispose();

      // the given trace, applied as a record would be, is the one the library's kernel is built with
      const withGiven = await compile(bytes, { target: 'native', cpu: HOST_LEVEL, nativeTraceFor: () => given });
      const lanes = CPU_TARGETS[HOST_LEVEL].tiles.lanes;
      expect(nativeModuleText(withGiven.program, HOST_LEVEL)).toContain(`<${lanes} x float>`);
      const m2 = await load(withGiven.artifact, { target: 'native', threads: 2 });
      expect(compareTensors(m2.runSync({ A: input }).Y, want)?.message).toBeUndefined();
      m2.dispose();

      // a native schedule that stages a weight panel in scratch, where the WebAssembly kernel has none: the plan
      // reserves it and the WebAssembly kernel takes the parameter unused, so both parts of the artifact run
      const reduce = task.space.stages.find((st) => st.kind === 'reduce')!.stage;
      const staging = task.space.trace({
        ...task.space.defaults()!,
        [reduce]: { ...task.space.defaults()![reduce], unroll: 4, staged: 1 },
      });
      expect(staging.some((st) => st.p === 'cacheRead')).toBe(true);
      const staged = await compile(bytes, { target: 'native', cpu: HOST_LEVEL, nativeTraceFor: () => staging });
      for (const opts of [{ target: 'native', threads: 2 }, { threads: 2 }] as const) {
        const m3 = await load(staged.artifact, opts);
        expect(m3.runsOn ?? 'wasm').toBe(opts.target ?? 'wasm');
        expect(compareTensors(m3.runSync({ A: input }).Y, want)?.message).toBeUndefined();
        m3.dispose();
      }
    } finally {
      db.close();
    }
  });

  it('a candidate that crashes or hangs the measuring process is an error; the next is measured in a new one', async () => {
    const [task] = nativeTasks(matmulModel(32, 32, 32).bytes, HOST_LEVEL);
    const [b] = await new LocalBuilder().build(task.spec, [null], { kind: 'native', cpu: HOST_LEVEL });
    if (!b.ok) throw new Error(b.error);
    const runner = new ChildNativeRunner();
    const program = { header: b.out.header, wasm: b.out.wasm, native: b.out.native };
    const opts = { seed: 1, warmup: 1, minWarmupMs: 0, repeats: 2, minRepeatMs: 1 };
    try {
      const crash = await runner.measure({ ...program, ...opts, fault: 'crash' }, 20_000);
      expect(crash).toMatchObject({ ok: false, kind: 'run' });
      expect(!crash.ok && crash.error).toMatch(/native measuring process exited \(SIGSEGV\)/);
      const hang = await runner.measure({ ...program, ...opts, fault: 'hang' }, 1000);
      expect(hang).toMatchObject({ ok: false, kind: 'timeout' });
      const set = await runner.measureSet({ programs: [program, program], ...opts, rounds: 2 }, 20_000);
      expect(set.ok).toBe(true);
      if (set.ok) for (const o of set.out) expect(o.ok && o.costs.length).toBe(2);
    } finally {
      await runner.close();
    }
  });

  it("a candidate that needs no scratch where the WebAssembly kernel has some builds, runs and computes the default's output", async () => {
    // Winograd's input transform materializes its first stage by default; a candidate inlining it needs no scratch,
    // while the one-kernel program still reserves the WebAssembly kernel's (the call's last argument, left unused)
    const bytes = buildModel({
      inputs: [['x', 'float32', [1, 16, 16, 16]]],
      outputs: [['y', 'float32', [1, 16, 16, 16]]],
      initializers: { w: randomF32([16, 16, 3, 3], 6) },
      nodes: [{ op: 'Conv', inputs: ['x', 'w'], outputs: ['y'], attrs: { pads: [1, 1, 1, 1] } }],
    });
    const task = nativeTasks(bytes, HOST_LEVEL).find((t) => t.ops.includes('winograd_input'))!;
    const defaults = task.space.defaults()!;
    const inlined = Object.fromEntries(
      task.space.stages.filter((st) => st.kind === 'inline').map((st) => [st.stage, { inline: true }] as const),
    );
    const trace = task.space.trace({ ...defaults, ...inlined });
    expect(trace.some((st) => st.p === 'computeInline')).toBe(true);
    const target = { kind: 'native', cpu: HOST_LEVEL } as const;
    const builder = new LocalBuilder();
    const [def, cand] = await builder.build(task.spec, [null, trace], target);
    if (!def.ok || !cand.ok) throw new Error(`${!def.ok ? def.error : ''} ${!cand.ok ? cand.error : ''}`);
    const runner = new ChildNativeRunner();
    try {
      const set = await runner.measureSet(
        {
          programs: [def.out, cand.out].map((o) => ({ header: o.header, wasm: o.wasm, native: o.native })),
          seed: 2,
          warmup: 1,
          minWarmupMs: 0,
          rounds: 1,
          minRepeatMs: 1,
        },
        20_000,
      );
      if (!set.ok) throw new Error(set.error);
      const [a, b] = set.out;
      if (!a.ok || !b.ok) throw new Error('a program failed');
      expect(compareTensors(b.output, a.output)?.message).toBeUndefined();
    } finally {
      await runner.close();
    }
  });

  it('kiln tune --target native, then kiln compile --target native applies the records', () => {
    const dir = tempDir('kiln-tune-native-');
    const model = join(dir, 'mm.onnx'),
      db = join(dir, 'kiln.sqlite');
    writeFileSync(model, matmulModel(64, 64, 64).bytes);
    const cli = join(process.cwd(), 'dist/cli/kiln.js');
    const kiln = (...args: string[]) =>
      execFileSync('node', [cli, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const out = kiln(
      'tune',
      model,
      '--target',
      'native',
      '--cpu',
      'native',
      '--trials',
      '2',
      '--db',
      db,
      '--workers',
      '1',
    );
    expect(out).toMatch(new RegExp(`on native/${HOST_LEVEL}/[^ ]+ \\(LLVM \\d+\\)`));
    expect(out).toContain('`kiln compile --target native --cpu native` applies them');
    const c = kiln('compile', model, '--target', 'native', '--cpu', 'native', '--db', db, '-o', join(dir, 'mm.kiln'));
    // the default schedule's record (or a confirmed faster one) for the one kernel
    expect(c).toMatch(
      /tuned native schedules \(native\/[^)]+\): (1 of 1 kernels \(k0\)|0 of 1 kernels; 1 kept their default schedule)/,
    );
    let err = '';
    try {
      kiln('tune', model, '--cpu', 'x86-64-v3', '--db', db);
    } catch (e) {
      err = String((e as { stderr?: string }).stderr);
    }
    expect(err).toMatch(/--cpu applies to --target native/);
  }, 120_000);

  it('refuses a level this CPU cannot run, and build-only', async () => {
    const { bytes } = matmulModel(16, 16, 16);
    const db = join(tempDir('kiln-tune-native-'), 'kiln.sqlite');
    if (HOST_LEVEL !== 'x86-64-v4') {
      const e = await kilnError(() => tune(bytes, { target: 'native', cpu: 'x86-64-v4', trials: 1, db }));
      expect(e.code).toBe('E_UNSUPPORTED');
      expect(e.message).toMatch(/lacks avx512/);
    }
    const e = await kilnError(() => tune(bytes, { target: 'native', buildOnly: true, trials: 1, db }));
    expect(e.code).toBe('E_INPUT');
  });
});
