// The tuner on kernels for run-time sizes (issue 15 item 6, docs/dynamic-shapes.md): a model compiled with ranges
// (`dims: { batch: [1, 4] }`) is tuned as that compile builds it, each candidate timed at sizes drawn from the
// ranges, its records keyed by the ranges; `kiln compile` with the same ranges applies them and still matches ONNX
// Runtime, a compile with other ranges finds none.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers/temp.js';
import { int64 } from './helpers/shape-chain-model.js';
import { kilnError } from './helpers/errors.js';
import { runOrt } from './helpers/ort.js';
import { compile, load } from '../src/index.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { TuningDatabase } from '../src/autotune/database.js';
import { tune } from '../src/autotune/tuner.js';
import { tunedTraces } from '../src/autotune/apply.js';
import { WORKLOAD_FORMAT, workloadOf } from '../src/autotune/workload.js';
import { combineSizeCosts, measuredSizes, sizeScales } from '../src/autotune/sizes.js';
import { PoolRunner, type Runner } from '../src/autotune/measure.js';
import type { MeasureSetTask, MeasureTask } from '../src/autotune/worker.js';
import type { TraceStep } from '../src/schedule/schedule.js';

// a projection plus position embeddings sliced to the sequence (as BERT's: the sum's type is proven only by the
// range seq <= 16, so the tuner's workers infer types under the ranges), then attention over the run-time
// sequence: reductions over a static length and over `seq`
const model = buildModel({
  inputs: [['x', 'float32', ['batch', 'seq', 8]]],
  outputs: [['out', 'float32', ['batch', 'seq', 16]]],
  initializers: {
    w: randomF32([8, 16], 7),
    positions: randomF32([16, 16], 8),
    one: int64([1], [1]),
    zero: int64([1], [0]),
  },
  nodes: [
    { op: 'MatMul', inputs: ['x', 'w'], outputs: ['h'] },
    { op: 'Shape', inputs: ['x'], outputs: ['shape'] },
    { op: 'Gather', inputs: ['shape', 'one'], outputs: ['len'], attrs: { axis: 0 } },
    { op: 'Slice', inputs: ['positions', 'zero', 'len', 'zero'], outputs: ['pe'] },
    { op: 'Add', inputs: ['h', 'pe'], outputs: ['hp'] },
    { op: 'Relu', inputs: ['hp'], outputs: ['r'] },
    { op: 'Transpose', inputs: ['r'], outputs: ['rt'], attrs: { perm: [0, 2, 1] } },
    { op: 'MatMul', inputs: ['r', 'rt'], outputs: ['scores'] },
    { op: 'Softmax', inputs: ['scores'], outputs: ['p'], attrs: { axis: -1 } },
    { op: 'MatMul', inputs: ['p', 'r'], outputs: ['out'] },
  ],
  opset: 17,
});
const dims = { batch: [1, 4], seq: [1, 16] } as { batch: [number, number]; seq: [number, number] };
/** Same upper bounds, another lower bound for batch: the kernels' tensor expressions at the bounds are equal. */
const otherDims = { batch: [2, 4], seq: [1, 16] } as { batch: [number, number]; seq: [number, number] };

/** The workloads a compile looks up (its traceFor is asked for every kernel), with their canonical texts. */
async function lookedUp(d: typeof dims, traceFor?: (key: string) => TraceStep[] | undefined) {
  const seen = new Map<string, string>();
  const r = await compile(model, {
    dims: d,
    traceFor: (_fn, def) => {
      const w = workloadOf(def);
      seen.set(w.key, w.text);
      return traceFor?.(w.key);
    },
  });
  return { seen, r };
}

async function matchesOrt(artifact: Uint8Array, sizes: [number, number][], what: string) {
  const m = await load(artifact, { threads: 1 });
  try {
    for (const [batch, seq] of sizes) {
      const feeds = { x: randomF32([batch, seq, 8], 11 * batch + seq) };
      const got = (await m.run(feeds)).out;
      const want = (await runOrt(model, feeds)).out;
      expect(got.shape, `${what} at ${batch}x${seq}`).toEqual([batch, seq, 16]);
      expect(compareTensors(got, want)?.message, `${what} at ${batch}x${seq}`).toBeUndefined();
    }
  } finally {
    m.dispose();
  }
}

describe('tuning kernels for run-time sizes', () => {
  it('tunes at sizes drawn from the ranges, keys records by the ranges, and a compile with the same ranges applies them', async () => {
    const dbPath = join(tempDir('kiln-tune-sizes-'), 'kiln.sqlite');
    // the sizes every measurement runs at, as the runner is asked
    const inner = new PoolRunner();
    const asked: (number[][] | undefined)[] = [];
    const runner: Runner = {
      measure: (task: MeasureTask, timeoutMs: number) => {
        asked.push(task.sizes);
        return inner.measure(task, timeoutMs);
      },
      measureSet: (task: MeasureSetTask, timeoutMs: number) => {
        asked.push(task.sizes);
        return inner.measureSet(task, timeoutMs);
      },
      close: () => inner.close(),
    };
    let report: Awaited<ReturnType<typeof tune>>;
    try {
      report = await tune(model, {
        dims,
        trials: 6,
        batch: 3,
        workers: 1,
        db: dbPath,
        seed: 3,
        repeats: 2,
        minRepeatMs: 1,
        runner,
      });
    } finally {
      await inner.close();
    }
    expect(report.trials).toBe(6);

    // the upper bounds, the lower bounds and one size strictly inside, weighted toward the bounds
    const sizes = report.sizes!;
    expect(sizes.map((s) => [s.label, s.weight])).toEqual([
      ['upper', 0.4],
      ['lower', 0.35],
      ['inside', 0.25],
    ]);
    expect(sizes[0].values).toEqual({ batch: 4, seq: 16 });
    expect(sizes[1].values).toEqual({ batch: 1, seq: 1 });
    const inside = sizes[2].values;
    expect(inside.batch > 1 && inside.batch < 4 && inside.seq > 1 && inside.seq < 16, JSON.stringify(inside)).toBe(
      true,
    );
    // every measurement ran through the three sizes (symbols in the program's order: batch, seq)
    const want = sizes.map((s) => [s.values.batch, s.values.seq]);
    expect(asked.length).toBeGreaterThan(0);
    for (const a of asked) expect(a).toEqual(want);

    // every kernel's default builds and runs at the sizes (a task is skipped only where there is nothing to tune)
    for (const t of report.tasks)
      expect([t.ops, t.skipped ?? 'tuned']).toEqual([t.ops, expect.stringMatching(/^(tuned|no schedule decisions)$/)]);
    const tuned = report.tasks.filter((t) => !t.skipped);
    expect(tuned.length).toBeGreaterThanOrEqual(2);
    for (const t of tuned) expect(t.defaultMs).toBeGreaterThan(0);

    // the workloads a compile with the same ranges looks up are the tuned tasks'; with other ranges none of them,
    // though the tensor expressions at the (equal) bounds are the same
    const same = await lookedUp(dims);
    const other = await lookedUp(otherDims);
    for (const t of report.tasks) expect(same.seen.has(t.workload), `task ${t.index} ${t.ops}`).toBe(true);
    for (const t of report.tasks) expect(other.seen.has(t.workload)).toBe(false);
    const unranged = (text: string) => text.replace(/ ranges\([^)]*\)/g, '');
    expect(new Set([...other.seen.values()].map(unranged))).toEqual(new Set([...same.seen.values()].map(unranged)));
    expect([...same.seen.values()].every((t) => /^in\d+: int32\[2\] ranges\(1\.\.4,1\.\.16\)$/m.test(t))).toBe(true);

    const db = TuningDatabase.open(dbPath);
    try {
      for (const t of tuned) {
        const recs = db.records(t.workload, report.target.key);
        expect(recs.some((r) => r.search === 'default' && r.rel === 1 && r.confirmed)).toBe(true);
      }
      // compiling with the database and the same ranges applies the records; it still matches ONNX Runtime
      const lookup = tunedTraces(db, report.target);
      const r = await compile(model, { dims, traceFor: lookup.traceFor });
      expect(lookup.used.length).toBeGreaterThan(0);
      expect(new Set(lookup.used.map((u) => u.workload))).toEqual(new Set(tuned.map((t) => t.workload)));
      expect(r.program.kernels.filter((k) => k.tuned && k.runSizes).length).toBe(lookup.used.length);
      await matchesOrt(
        r.artifact,
        [
          [1, 3],
          [4, 16],
          [3, 9],
        ],
        'tuned',
      );
      // other ranges: no record applies
      const none = tunedTraces(db, report.target);
      await compile(model, { dims: otherDims, traceFor: none.traceFor });
      expect(none.used).toEqual([]);

      // every candidate measured without error (a schedule other than the default) gives the same numbers
      const candidates = new Map<string, TraceStep[]>();
      for (const t of tuned) {
        const rec = db
          .records(t.workload, report.target.key)
          .find((x) => !x.error && x.search !== 'default' && JSON.stringify(x.trace) !== JSON.stringify(t.bestTrace));
        if (rec) candidates.set(t.workload, rec.trace);
      }
      expect(candidates.size).toBeGreaterThan(0);
      const withCandidates = await lookedUp(dims, (key) => candidates.get(key));
      expect(withCandidates.r.program.kernels.filter((k) => k.tuned).length).toBe(candidates.size);
      await matchesOrt(
        withCandidates.r.artifact,
        [
          [2, 1],
          [4, 7],
        ],
        'candidates',
      );
    } finally {
      db.close();
    }
  }, 120_000);

  it('measures at the sizes with a runner that measures one program at a time (no interleaving)', async () => {
    const inner = new PoolRunner();
    const asked: { sizes?: number[][]; costs: number[]; sizeCosts?: number[][]; outputLength: number }[] = [];
    const runner: Runner = {
      measure: async (task: MeasureTask, timeoutMs: number) => {
        const r = await inner.measure(task, timeoutMs);
        if (r.ok)
          asked.push({
            sizes: task.sizes,
            costs: r.out.costs,
            sizeCosts: r.out.sizeCosts,
            outputLength: r.out.output.data.length,
          });
        return r;
      },
      close: () => inner.close(),
    };
    try {
      const report = await tune(model, {
        dims,
        trials: 4,
        batch: 2,
        workers: 1,
        db: ':memory:',
        seed: 3,
        repeats: 2,
        minRepeatMs: 1,
        runner,
        onlyTasks: [0],
      });
      expect(report.trials).toBe(4);
      expect(report.tasks[0].defaultMs).toBeGreaterThan(0);
      const sizes = report.sizes!.map((z) => [z.values.batch, z.values.seq]);
      // the default and each candidate alone, then the default again after each: every one at the three sizes,
      // its time per size per repeat, and its output at each size one after another (the first task's output is
      // [batch, seq, 16])
      expect(asked.length).toBeGreaterThanOrEqual(1 + 2 * 4);
      for (const a of asked) {
        expect(a.sizes).toEqual(sizes);
        expect(a.sizeCosts?.map((c) => c.length)).toEqual([2, 2, 2]);
        expect(a.outputLength).toBe(sizes.reduce((n, [b, q]) => n + b * q * 16, 0));
      }
    } finally {
      await inner.close();
    }
  }, 60_000);

  it('weighs each size by its weight on the time relative to the default there, and merges sizes that coincide', () => {
    const sizes = { ...measuredSizes({ names: ['n'], ranges: new Map([['n', [1, 64]]]) }, 0) };
    expect(sizes.weights).toEqual([0.4, 0.35, 0.25]);
    // the default: 10 ms at the upper bound, 1 ms at the lower, 4 ms inside; its cost is its time at the bound
    const def = [
      [10, 10],
      [1, 1],
      [4, 4],
    ];
    sizes.scales = sizeScales(def);
    expect(sizes.scales).toEqual([1, 10, 2.5]);
    expect(combineSizeCosts(sizes, def).map((c) => c.toFixed(6))).toEqual(['10.000000', '10.000000']);
    // twice as fast at the lower bound only: 0.35 of the way to half the cost, though its time there is small
    expect(combineSizeCosts(sizes, [[10], [0.5], [4]])[0] / 10).toBeCloseTo(1 - 0.35 / 2, 9);
    // a fixed size and a range of two: the points that coincide are one, their weights summed
    const two = measuredSizes(
      {
        names: ['a', 'b'],
        ranges: new Map([
          ['a', [3, 3]],
          ['b', [4, 5]],
        ]),
      },
      0,
    );
    expect(two.values).toEqual([
      [3, 5],
      [3, 4],
    ]);
    expect(two.weights.map((w) => w.toFixed(2))).toEqual(['0.65', '0.35']);
  });

  it('leaves the key of a kernel of static sizes as it was', async () => {
    const mulTanh = buildModel({
      inputs: [['x', 'float32', [2, 8]]],
      outputs: [['y', 'float32', [2, 8]]],
      nodes: [
        { op: 'Mul', inputs: ['x', 'x'], outputs: ['sq'] },
        { op: 'Tanh', inputs: ['sq'], outputs: ['y'] },
      ],
    });
    const keys: { key: string; text: string }[] = [];
    await compile(mulTanh, {
      traceFor: (_fn, def) => {
        keys.push(workloadOf(def));
        return undefined;
      },
    });
    // the canonical text and the key's recipe of every Kiln before the ranges were added (format 1)
    expect(WORKLOAD_FORMAT).toBe(1);
    expect(keys.map((k) => k.text)).toEqual([
      'in0: float32[2,8]\nt0[v0,v1]: float32[2,8] = mul(in0[v0,v1],in0[v0,v1])\nt1[v2,v3]: float32[2,8] out = tanh(t0[v2,v3])\n',
    ]);
    expect(keys[0].key).toBe(createHash('sha256').update(`kiln-workload/1\n${keys[0].text}`).digest('hex'));
  });

  it('refuses GPU targets and symbols without a range with a KilnError saying what to do', async () => {
    const gpu = await kilnError(() => tune(model, { dims, target: 'webgpu', trials: 1, db: ':memory:' }));
    expect([gpu.code, gpu.message]).toEqual([
      'E_UNSUPPORTED',
      expect.stringMatching(
        /kernels for run-time sizes \(the ranges of batch, seq\) is supported for target 'wasm' only/,
      ),
    ]);
    expect(gpu.hint).toMatch(/--target wasm.*--dim batch=N --dim seq=N/);
    const cuda = await kilnError(() =>
      tune(model, { dims, target: 'cuda', buildOnly: true, trials: 1, db: ':memory:' }),
    );
    expect(cuda.code).toBe('E_UNSUPPORTED');
    const open = await kilnError(() => tune(model, { dims: { seq: [1, 16] }, trials: 1, db: ':memory:' }));
    expect([open.code, open.hint]).toEqual(['E_DYNAMIC', expect.stringMatching(/kiln tune --dim batch=LO\.\.HI/)]);
  });

  it('kiln tune --dim NAME=LO..HI tunes and says which compile applies the records', () => {
    const dir = tempDir('kiln-tune-cli-');
    const path = join(dir, 'm.onnx');
    writeFileSync(path, model);
    const out = execFileSync(
      'node',
      [
        join(process.cwd(), 'dist/cli/kiln.js'),
        'tune',
        path,
        '--dim',
        'batch=1..4',
        '--dim',
        'seq=1..16',
        '--trials',
        '2',
        '--workers',
        '1',
        '--db',
        join(dir, 'kiln.sqlite'),
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    expect(out).toMatch(/kernels for run-time sizes measured at batch=4 seq=16 \(upper, weight 0\.40\), batch=1 seq=1/);
    expect(out).toMatch(/`kiln compile --dim batch=1\.\.4 --dim seq=1\.\.16` applies them/);
    // that compile applies the records (the defaults, confirmed, count as kept); one with other ranges finds none
    const compiled = (...range: string[]) =>
      execFileSync(
        'node',
        [
          join(process.cwd(), 'dist/cli/kiln.js'),
          'compile',
          path,
          ...range.flatMap((d) => ['--dim', d]),
          '--db',
          join(dir, 'kiln.sqlite'),
          '-o',
          join(dir, 'm.kiln'),
        ],
        { encoding: 'utf8' },
      );
    const m = /tuned schedules: (\d+) of (\d+) kernels[^;\n]*(?:; (\d+) kept their default schedule)?/.exec(
      compiled('batch=1..4', 'seq=1..16'),
    );
    expect(m).not.toBeNull();
    const [tuned, total, kept] = [Number(m![1]), Number(m![2]), Number(m![3] ?? 0)];
    expect(tuned + kept).toBeGreaterThan(0);
    expect(tuned + kept).toBeLessThanOrEqual(total);
    expect(compiled('batch=1..8', 'seq=1..16')).toMatch(/tuned schedules: 0 of \d+ kernels from \S+\n/);
  }, 60_000);
});
