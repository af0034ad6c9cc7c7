// The CPU search space's stage kinds beyond plain register tiles: fused-row tiles (pointwise convolutions), lane
// reductions (softmax, layernorm, reduce ops) with several partial vectors, non-sum tiles (max pooling) and
// K-blocking (the reduction cut into cache blocks whose loop runs outside the tile loops). Sampled candidates of
// every kernel of the real models are built and run, and must compute what the default schedule computes.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { importAndOptimize } from '../src/compiler/compile.js';
import { fuseOps } from '../src/relay-ir/passes/fuse-ops.js';
import { extractTasks, type TuneTask } from '../src/autotune/tasks.js';
import { Rng } from '../src/autotune/rng.js';
import type { Decisions, StageSpace } from '../src/autotune/space.js';
import { build, measure } from '../src/autotune/worker.js';
import { Schedule, type TraceStep } from '../src/schedule/schedule.js';
import { compareTensors } from '../src/conformance/compare.js';
import { matmulModel } from '../src/bench/matmul-model.js';

const tasksOf = (bytes: Uint8Array) => extractTasks(fuseOps(importAndOptimize(bytes).graph));
const modelPath = (name: string) => `.cache/models/${name}/model.onnx`;
const have = (...names: string[]) => names.every((n) => existsSync(modelPath(n)));

/** Builds the kernel with `trace` (null: its default), runs it once on the task's random inputs. */
function run(t: TuneTask, trace: TraceStep[] | null) {
  const out = build({ spec: t.spec, trace });
  return measure({ header: out.header, wasm: out.wasm, seed: 1, warmup: 1, minWarmupMs: 0, repeats: 1, minRepeatMs: 0 })
    .output;
}

/** Candidates that differ from the default in the given stage's decisions only, one per listed value of `field`. */
function variants(
  t: TuneTask,
  s: StageSpace,
  field: string,
  values: readonly unknown[],
  extra: Record<string, unknown> = {},
): Decisions[] {
  const d = t.space.defaults()!;
  return values
    .map((v) => ({ ...d, [s.stage]: { ...d[s.stage], ...extra, [field]: v } }) as Decisions)
    .filter((c) => t.space.valid(c));
}

describe('CPU search space: fused rows, lane reductions, K-blocking', () => {
  it.skipIf(!have('mobilenet_v2', 'bert', 'squeezenet1_1'))(
    'describes the default of pointwise convolutions, lane reductions and max pools',
    () => {
      const kinds = new Map<string, number>();
      let fusedRows = 0,
        lanes = 0,
        maxTiles = 0,
        fixedReductions = 0;
      for (const name of ['mobilenet_v2', 'squeezenet1_1', 'bert']) {
        for (const t of tasksOf(readFileSync(modelPath(name)))) {
          for (const s of t.space.stages) {
            kinds.set(s.kind, (kinds.get(s.kind) ?? 0) + 1);
            if (s.kind === 'reduce' && s.defaults && (s.defaults.rows as number) > 1) fusedRows++;
            if (s.kind === 'lane') lanes++;
            const steps = t.kernel.trace.filter((x) => x.stage === s.stage);
            const op =
              typeof s.stage === 'number' ? new Schedule([t.kernel.output]).stages[s.stage].reduction?.op : undefined;
            if (s.kind === 'reduce' && op === 'max' && s.defaults) maxTiles++;
            // a reduction whose default accumulates in registers is a tunable stage now
            if (s.kind === 'fixed' && steps.some((x) => x.p === 'cacheWrite')) fixedReductions++;
          }
        }
      }
      console.log('stage kinds:', Object.fromEntries(kinds), { fusedRows, lanes, maxTiles });
      expect(fusedRows).toBeGreaterThan(10); // mobilenet's and squeezenet's 1x1 convolutions
      expect(lanes).toBeGreaterThanOrEqual(2); // BERT's softmax (max and sum)
      expect(maxTiles).toBeGreaterThan(0); // squeezenet's max pools
      expect(fixedReductions).toBe(0);
    },
  );

  it.skipIf(!have('bert', 'mobilenet_v2', 'squeezenet1_1'))(
    'sampled candidates of every kernel compute what the default computes',
    async () => {
      const rng = new Rng(5);
      let checked = 0,
        fusedRows = 0,
        lanes = 0,
        blocked = 0,
        staged = 0;
      for (const name of ['mobilenet_v2', 'squeezenet1_1', 'bert']) {
        for (const t of tasksOf(readFileSync(modelPath(name)))) {
          if (!t.space.tunable) continue;
          const want = run(t, null);
          const cands: Decisions[] = [t.space.sample(rng), t.space.sample(rng)];
          // every producer materialized (a scalar constant read by a fused epilogue must be computed before it)
          const d0 = t.space.defaults()!;
          const mat = Object.fromEntries(
            t.space.stages.filter((s) => s.kind === 'inline').map((s) => [s.stage, { inline: false }]),
          );
          if (Object.keys(mat).length) cands.push({ ...d0, ...mat });
          for (const s of t.space.stages) {
            if (s.kind === 'lane') {
              cands.push(...variants(t, s, 'acc', [2, 3, 4], { unroll: 1 }), ...variants(t, s, 'unroll', [2, 4]));
              lanes++;
            }
            if (s.kind === 'reduce' && s.defaults && (s.defaults.rows as number) > 1) {
              fusedRows++;
              // other row counts over the fused axes (partial last tiles), fewer fused axes, an outer tile of rows
              cands.push(
                ...variants(t, s, 'vi', [3, 5, 7]),
                ...variants(t, s, 'rows', [1]),
                ...variants(t, s, 'ti', [2]),
              );
            }
            if (s.kind === 'reduce' && s.defaults) {
              // a read tensor staged per reduction step (with an inner reduction loop to make the step worth it)
              const st = variants(t, s, 'staged', [0, 1, 2], { unroll: 2 });
              if (st.length) staged++;
              cands.push(...st.slice(0, 2));
              const kb = variants(t, s, 'kblock', [64, 128, 256, 512]);
              if (kb.length) blocked++;
              cands.push(...kb.slice(0, 2));
            }
          }
          for (const c of cands) {
            // (builds take a while: let vitest's worker answer its RPCs, or it fails the run with a timeout)
            await new Promise((r) => setImmediate(r));
            const got = run(t, t.space.trace(c));
            const bad = compareTensors(got, want);
            expect(bad?.message, `${name} task ${t.index} (${t.ops.join('+')}): ${JSON.stringify(c)}`).toBeUndefined();
            checked++;
          }
        }
      }
      console.log({ checked, fusedRows, lanes, blocked, staged });
      expect(staged).toBeGreaterThan(10); // register-tiled reductions with a read tensor to stage
      expect(fusedRows).toBeGreaterThan(10);
      expect(lanes).toBeGreaterThanOrEqual(2);
      expect(blocked).toBeGreaterThan(3); // BERT's projections and FFN, the larger convolutions
    },
    600_000,
  );

  it('K-blocks a MatMul 512^3: the block loop outside the tile loops, with the epilogue on the last block', () => {
    const { bytes } = matmulModel(128, 512, 96);
    const [t] = tasksOf(bytes);
    const s = t.space.stages.find((x) => x.kind === 'reduce')!;
    const [c] = variants(t, s, 'kblock', [128]);
    expect(c).toBeDefined();
    const trace = t.space.trace(c);
    const reorder = trace.find((x) => x.p === 'reorder' && x.stage === s.stage) as Extract<TraceStep, { p: 'reorder' }>;
    const kb = reorder.order.indexOf('r0.o');
    expect(kb).toBeGreaterThanOrEqual(0);
    expect(reorder.order.slice(kb + 1).some((a) => a.startsWith('i'))).toBe(true); // spatial tile loops inside it
    expect(compareTensors(run(t, trace), run(t, null))?.message).toBeUndefined();
  });
});
