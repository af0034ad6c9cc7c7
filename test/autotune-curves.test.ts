// Tuning curves (CSV + SVG, random vs guided side by side) and which records `kiln compile` applies by Kiln version.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { tempDir } from './helpers/temp.js';
import { compile } from '../src/index.js';
import { matmulModel } from '../src/bench/matmul-model.js';
import { curveCsv, curveSvg, niceTicks, svgPathFor } from '../src/autotune/plot.js';
import { TuningDatabase, type TuningRecord } from '../src/autotune/database.js';
import { compareVersions, tunedTraces } from '../src/autotune/apply.js';
import { detectTarget } from '../src/autotune/target.js';
import { importAndOptimize } from '../src/compiler/compile.js';
import { fuseOps } from '../src/relay-ir/passes/fuse-ops.js';
import { extractTasks } from '../src/autotune/tasks.js';
import { Rng } from '../src/autotune/rng.js';

describe('tuning curves', () => {
  const pts = (ys: number[]) => ys.map((y, i) => ({ trial: i, elapsedMs: i * 10, bestTotalMs: y }));
  const series = [
    { name: 'random', points: pts([2, 2, 1.8, 1.8, 1.5]) },
    { name: 'evolutionary', points: pts([2, 1.6, 1.2, 1.1, 1.1]) },
  ];

  it('writes both strategies into one CSV', () => {
    const csv = curveCsv(series).trim().split('\n');
    expect(csv[0]).toBe('strategy,trial,elapsed_ms,best_total_ms');
    expect(csv).toHaveLength(11);
    expect(csv[5]).toBe('random,4,40.0,1.5000');
    expect(csv[10]).toBe('evolutionary,4,40.0,1.1000');
    expect(svgPathFor('out/curve.csv')).toBe('out/curve.svg');
    expect(svgPathFor('curve')).toBe('curve.svg');
  });

  it('draws an SVG with axes, ticks, one path per strategy and a legend', () => {
    const svg = curveSvg(series, { title: 'A < B' });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('A &lt; B');
    expect(svg.match(/<path /g)).toHaveLength(2);
    expect(svg).toContain('random (1.50 ms)');
    expect(svg).toContain('evolutionary (1.10 ms)');
    expect(svg).toContain('>trials</text>');
    expect(svg).not.toMatch(/NaN|undefined|Infinity/);
    expect(niceTicks(0, 64, 8)).toEqual([0, 10, 20, 30, 40, 50, 60]);
    expect(niceTicks(0.7, 1.15, 6)).toEqual([0.7, 0.8, 0.9, 1, 1.1]);
    // a flat curve (nothing found) still gives a valid y range
    expect(curveSvg([{ name: 'random', points: pts([1, 1, 1]) }])).not.toMatch(/NaN|Infinity/);
  });
});

describe('applying records by Kiln version', () => {
  it('prefers this version, falls back to older ones, never uses a newer Kiln', async () => {
    expect(compareVersions('0.10.0', '0.9.3')).toBe(1);
    expect(compareVersions('0.1.0-rc.1', '0.1.0')).toBe(-1);
    expect(compareVersions('0.1.0', '0.1.0')).toBe(0);

    const { bytes } = matmulModel(64, 64, 64);
    const task = extractTasks(fuseOps(importAndOptimize(bytes).graph))[0];
    const target = detectTarget();
    const rng = new Rng(11);
    const traces = Array.from({ length: 3 }, () => task.space.trace(task.space.sample(rng)));
    const rec = (i: number, ms: number, kiln: string): TuningRecord => ({
      workload: task.workload.key,
      target: target.key,
      trace: traces[i],
      costs: [ms],
      ms,
      time: `2026-01-01T00:00:0${i}Z`,
      kiln,
      search: 'random',
    });
    const db = TuningDatabase.open(join(tempDir('kiln-ver-'), 'kiln.sqlite'));
    try {
      const w = { ...task.workload, ops: task.ops };
      const use = async (kiln: string) => {
        const lookup = tunedTraces(db, target, { kiln });
        await compile(bytes, { traceFor: lookup.traceFor });
        return lookup;
      };
      db.addRecord(w, target, rec(0, 2, '0.0.9')); // older
      db.addRecord(w, target, rec(1, 1, '0.2.0')); // newer and fastest: never used by 0.1.0
      expect((await use('0.1.0')).used.map((u) => u.ms)).toEqual([2]);
      db.addRecord(w, target, rec(2, 3, '0.1.0')); // this version: preferred over the faster older one
      expect((await use('0.1.0')).used.map((u) => u.ms)).toEqual([3]);
      expect((await use('0.2.0')).used.map((u) => u.ms)).toEqual([1]);
      const none = await use('0.0.1');
      expect(none.used).toEqual([]);
      expect(none.newer[0].versions).toEqual(['0.0.9', '0.1.0', '0.2.0']);
    } finally {
      db.close();
    }
  });
});
