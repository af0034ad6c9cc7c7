// The profiler: per-kernel aggregation, the key_averages-style table, the Chrome trace, and `kiln profile`.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers/temp.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compile } from '../src/compiler/compile.js';
import { load } from '../src/runtime/index.js';
import { aggregateProfile, chromeTrace, formatProfileTable, profileModel } from '../src/profiler/profile.js';

// conv -> relu, then matmul, then tanh: several kernels, one of them with flops
const onnx = buildModel({
  inputs: [['x', 'float32', [1, 4, 16, 16]]],
  outputs: [['y', 'float32', [1, 8, 16, 8]]],
  nodes: [
    {
      op: 'Conv',
      inputs: ['x', 'w', 'b'],
      outputs: ['c'],
      name: 'conv0',
      attrs: { pads: [1, 1, 1, 1], kernel_shape: [3, 3] },
    },
    { op: 'Relu', inputs: ['c'], outputs: ['r'], name: 'relu0' },
    { op: 'MatMul', inputs: ['r', 'm'], outputs: ['mm'], name: 'matmul0' },
    { op: 'Tanh', inputs: ['mm'], outputs: ['t'], name: 'tanh0' },
    { op: 'Softmax', inputs: ['t'], outputs: ['y'], name: 'softmax0', attrs: { axis: -1 } },
  ],
  initializers: { w: randomF32([8, 4, 3, 3], 2), b: randomF32([8], 3), m: randomF32([16, 8], 4) },
});

describe('profiler', () => {
  it('aggregates per-kernel times into rows that add up, and a trace with one event per call', async () => {
    const { artifact } = await compile(onnx);
    const model = await load(artifact);
    const h = model.header;
    const runs = 4;
    const profiled = profileModel(model, { x: randomF32([1, 4, 16, 16], 5) }, { runs });
    expect(profiled).toHaveLength(runs);
    for (const r of profiled) expect(r.timings).toHaveLength(h.calls.length);

    const rep = aggregateProfile(h, profiled);
    expect(rep.runs).toBe(runs);
    expect(rep.rows.length).toBe(new Set(h.calls.map((c) => c.kernel)).size);
    expect(rep.rows.reduce((a, r) => a + r.calls, 0)).toBe(runs * h.calls.length);
    expect(rep.rows.reduce((a, r) => a + r.percent, 0)).toBeCloseTo(100, 6);
    for (let i = 1; i < rep.rows.length; i++)
      expect(rep.rows[i - 1].totalMs).toBeGreaterThanOrEqual(rep.rows[i].totalMs);
    const kernelMs = rep.rows.reduce((a, r) => a + r.totalMs, 0) / runs;
    expect(rep.kernelMsPerRun).toBeCloseTo(kernelMs, 9);
    expect(rep.wallMsPerRun).toBeGreaterThanOrEqual(rep.kernelMsPerRun);
    for (const r of rep.rows) {
      expect(r.avgMs).toBeCloseTo(r.totalMs / r.calls, 9);
      expect(r.ops.length).toBeGreaterThan(0);
      expect(r.nodes.length).toBeGreaterThan(0);
    }
    // every ONNX node is attributed to some kernel; the conv's flops are counted
    const nodes = rep.rows.flatMap((r) => r.nodes);
    for (const n of ['conv0', 'matmul0', 'softmax0']) expect(nodes).toContain(n);
    expect(rep.flopsPerRun).toBeGreaterThanOrEqual(2 * 8 * 4 * 9 * 16 * 16 + 2 * 8 * 16 * 16 * 8);
    expect(rep.rows.some((r) => r.gflops !== undefined && r.gflops > 0)).toBe(true);

    const table = formatProfileTable(rep);
    expect(table).toMatch(/Kernel\s+Ops\s+ONNX nodes\s+Calls\s+Total ms\s+Avg ms\s+% run\s+GFLOP\/s\s+Bytes\/run/);
    for (const r of rep.rows) expect(table).toContain(r.name);

    const trace = JSON.parse(JSON.stringify(chromeTrace(h, profiled))) as {
      traceEvents: { ph: string; cat: string; ts: number; dur: number; name: string; args: { nodes?: string[] } }[];
    };
    const kernelEvents = trace.traceEvents.filter((e) => e.ph === 'X' && e.cat === 'kernel');
    const runEvents = trace.traceEvents.filter((e) => e.ph === 'X' && e.cat === 'run');
    expect(kernelEvents).toHaveLength(runs * h.calls.length);
    expect(runEvents).toHaveLength(runs);
    for (const e of kernelEvents) {
      expect(e.ts).toBeGreaterThanOrEqual(0);
      expect(e.dur).toBeGreaterThanOrEqual(0);
      expect(Array.isArray(e.args.nodes)).toBe(true);
    }
    // kernel events sit inside their run (up to rounding) and in order
    for (let r = 0; r < runs; r++) {
      const evs = kernelEvents.slice(r * h.calls.length, (r + 1) * h.calls.length);
      expect(evs[0].ts).toBeGreaterThanOrEqual(runEvents[r].ts - 0.01);
      for (let i = 1; i < evs.length; i++) expect(evs[i].ts).toBeGreaterThanOrEqual(evs[i - 1].ts);
    }
  });

  it('kiln profile prints the table and writes a trace', async () => {
    const dir = tempDir('kiln-profile-');
    const { artifact, header } = await compile(onnx);
    writeFileSync(join(dir, 'm.kiln'), artifact);
    const out = execFileSync(
      'node',
      [
        join(process.cwd(), 'dist/cli/kiln.js'),
        'profile',
        join(dir, 'm.kiln'),
        '--runs',
        '3',
        '--trace',
        join(dir, 't.json'),
      ],
      { encoding: 'utf8' },
    );
    expect(out).toMatch(/input x: random float32\[1,4,16,16\]/);
    expect(out).toMatch(/% run/);
    expect(out).toMatch(/3 runs; per run: kernels [\d.]+ ms/);
    const trace = JSON.parse(readFileSync(join(dir, 't.json'), 'utf8')) as {
      traceEvents: { ph: string; cat: string }[];
    };
    expect(trace.traceEvents.filter((e) => e.ph === 'X' && e.cat === 'kernel')).toHaveLength(3 * header.calls.length);
  });
});
