// Loop-IR infrastructure: the generic walkers every pass uses, named passes written as Before -> Expected on
// printed IR, and the pipeline `kiln inspect --level loop` prints (the last step is what a backend emits).
import { describe, expect, it } from 'vitest';
import { add, cast, constant, ge, int, load, lt, mul, select, and, unary } from '../src/tensor-expr/expr.js';
import {
  buffer,
  childStmts,
  kernelStages,
  mapChildren,
  mapStmtParts,
  printPrimFunc,
  printStmt,
  seq,
  visitStmtExprs,
} from '../src/schedule/loop-ir.js';
import { LOWERING_LOOP_PASSES, bodyPass, runLoopPasses, stagePass } from '../src/schedule/loop-passes.js';
import { runPasses } from '../src/relay-ir/pass-manager.js';
import { WASM_LOOP_PASSES } from '../src/codegen/wasm/codegen.js';
import { WGSL_LOOP_PASSES } from '../src/codegen/wgsl/codegen.js';
import { loopIRAfterEachPass, loopPassNames, targetLoopIR } from '../src/compiler/loop-pipeline.js';
import { kernelKey } from '../src/compiler/kernel.js';
import { printTrace } from '../src/schedule/schedule.js';
import { compile } from '../src/index.js';
import { buildModel } from '../src/frontend/onnx/model-builder.js';
import { func, loop, named, store } from './helpers/loop-ir-builders.js';

const f32 = (v: number) => constant(v, 'float32');
/** Printed IR without the indentation of its first line, trimmed, for Before -> Expected tables. */
const text = (s: string) =>
  s
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n')
    .trim();
/** `text`, with the names passes make (freshVar: a hint and a process-wide counter) numbered by first appearance. */
function canonical(s: string, hints: string[]): string {
  const seen = new Map<string, string>();
  return text(s).replace(new RegExp(`\\b(${hints.join('|')})\\d+\\b`, 'g'), (m, hint: string) => {
    if (!seen.has(m)) seen.set(m, `${hint}${[...seen.keys()].filter((k) => k.startsWith(hint)).length + 1}`);
    return seen.get(m)!;
  });
}

describe('walkers', () => {
  const x = buffer('x', 'float32', 8),
    y = buffer('y', 'float32', 8);
  const i = named('i');
  const body = loop(
    i,
    8,
    seq([store(y, i, mul(load(x, [i]), f32(2))), { k: 'if', cond: lt(i, int(4)), then: store(y, i, f32(0)) }]),
  );

  it('mapChildren keeps a statement whose children did not change, and rebuilds one whose did', () => {
    expect(mapChildren(body, (c) => c)).toBe(body);
    const swapped = mapChildren(body, (c) => (c.k === 'seq' ? seq([...c.body].reverse()) : c));
    expect(swapped).not.toBe(body);
    expect(childStmts(childStmts(swapped)[0])[0].k).toBe('if');
  });

  it('visitStmtExprs sees each statement expression once, in evaluation order', () => {
    const seen: string[] = [];
    visitStmtExprs(body, (e) => seen.push(e.k));
    // store: index then value; if: its condition; the store under the if: index then value
    expect(seen).toEqual(['var', 'bin', 'bin', 'var', 'const']);
  });

  it('mapStmtParts rewrites buffers, expressions and scalar variables everywhere', () => {
    const z = buffer('z', 'float32', 8);
    const out = mapStmtParts(body, {
      buf: (b) => (b === y ? z : b),
      expr: (e) => (e.k === 'const' && e.value === 0 ? f32(-1) : e),
    });
    expect(text(printStmt(out))).toBe(
      text(`
for i in 0..8 {
  z[i] = (x[i] * 2:float32)
  if (i < 4) {
    z[i] = -1:float32
  }
}`),
    );
  });
});

describe('passes: Before -> Expected', () => {
  const x = buffer('x', 'float32', 8),
    y = buffer('y', 'float32', 8);

  it('unroll: an unrolled loop becomes one copy per iteration, its guard resolved in each', () => {
    const i = named('i');
    const before = func(
      loop(
        i,
        3,
        { k: 'if', cond: lt(i, int(2)), then: store(y, i, load(x, [add(i, int(1))])), else: store(y, i, f32(0)) },
        'unrolled',
      ),
      [x],
      [y],
    );
    const after = runPasses(
      before,
      LOWERING_LOOP_PASSES.filter((p) => p.name === 'unroll'),
    );
    expect(text(printPrimFunc(after))).toBe(
      text(`
kernel k(x: float32[8], y: float32[8]) {
  y[0] = x[1]
  y[1] = x[2]
  y[2] = 0:float32
}`),
    );
  });

  it('partition-loops: a padded border splits the loop, the interior without its bounds check', () => {
    const i = named('i');
    const inside = and(ge(add(i, int(-1)), int(0)), lt(add(i, int(-1)), int(6)));
    const before = func(loop(i, 8, store(y, i, select(inside, load(x, [add(i, int(-1))]), f32(0)))), [x], [y]);
    const after = runPasses(
      before,
      WASM_LOOP_PASSES.filter((p) => p.name === 'partition-loops'),
    );
    const printed = text(printPrimFunc(after)).replace(/\bi\d+\b/g, 'i*');
    expect(printed).toBe(
      text(`
kernel k(x: float32[8], y: float32[8]) {
  y[0] = 0:float32
  for i* in 0..6 {
    y[(i* + 1)] = x[i*]
  }
  y[7] = 0:float32
}`),
    );
  });

  describe('the hoisting passes, on y[i*8 + j] = x[i*8 + j] * sqrt(s[i])', () => {
    const s4 = buffer('s', 'float32', 4),
      x32 = buffer('x', 'float32', 32),
      y32 = buffer('y', 'float32', 32);
    const i = named('i'),
      j = named('j');
    const at = add(mul(i, int(8)), j);
    const before = func(
      loop(i, 4, loop(j, 8, store(y32, at, mul(load(x32, [at]), unary('sqrt', load(s4, [i])))))),
      [x32, s4],
      [y32],
    );
    const only = (name: string) => WASM_LOOP_PASSES.filter((p) => p.name === name);

    it('hoist-loop-invariant-values: the row factor once per row', () => {
      expect(canonical(printPrimFunc(runPasses(before, only('hoist-loop-invariant-values'))), ['h'])).toBe(
        text(`
kernel k(x: float32[32], s: float32[4], y: float32[32]) {
  for i in 0..4 {
    let h1: float32 = sqrt(s[i])
    for j in 0..8 {
      y[((i * 8) + j)] = (x[((i * 8) + j)] * h1)
    }
  }
}`),
      );
    });

    it('hoist-index-arithmetic: each index term in the loop that binds it, equal sums shared', () => {
      expect(canonical(printPrimFunc(runPasses(before, only('hoist-index-arithmetic'))), ['p'])).toBe(
        text(`
kernel k(x: float32[32], s: float32[4], y: float32[32]) {
  for i in 0..4 {
    let p1: int32 = (i * 8)
    let p2: int32 = i
    for j in 0..8 {
      let p3: int32 = (p1 + j)
      y[p3] = (x[p3] * sqrt(s[p2]))
    }
  }
}`),
      );
    });
  });

  it('demote-float64: float64 intermediates of a WGSL kernel compute in float32', () => {
    const i = named('i'),
      acc = named('acc', 'float64');
    const t = buffer('t', 'float64', 8);
    const before = func(
      loop(
        i,
        8,
        seq([
          store(t, i, cast('float64', load(x, [i]))),
          {
            k: 'decl',
            v: acc,
            init: constant(0.5, 'float64'),
            body: store(y, i, cast('float32', add(load(t, [i]), acc))),
          },
        ]),
      ),
      [x],
      [y],
      [t],
    );
    const after = runPasses(before, WGSL_LOOP_PASSES);
    expect(text(printPrimFunc(after))).toBe(
      text(`
kernel k(x: float32[8], y: float32[8]) temps(t: float32[8]) {
  // stage 0: launch grid [1, 1, 1] block [1, 1, 1]
  for i in 0..8 {
    t[i] = x[i]
    let acc: float32 = 0.5:float32
    y[i] = (t[i] + acc)
  }
}`),
    );
  });

  it('with KILN_DEBUG=verify (vitest.config.ts sets it for every test) a pass that breaks the IR fails, naming itself', () => {
    expect(process.env.KILN_DEBUG).toMatch(/verify/);
    const i = named('i');
    const f = func(loop(i, 8, store(y, i, load(x, [i]))), [x], [y]);
    const dropLoop = bodyPass('drop-loop', (b) => (b.k === 'for' ? b.body : b));
    expect(() => runLoopPasses(f, [dropLoop], {})).toThrow(
      /loop IR of kernel k \(after drop-loop\): variable i is read but not bound/,
    );
    expect(kernelStages(runLoopPasses(f, [bodyPass('keep', (b) => b)], { input: 'as built' }))).toHaveLength(1);
  });

  it('a stage pass rewrites each stage on its own and keeps the stage count', () => {
    const i = named('i');
    const f = func(seq([store(y, int(0), f32(1)), loop(i, 2, store(y, i, f32(2)))]), [x], [y]);
    const split = stagePass('split-first', (s) => (s.k === 'store' ? seq([s, s]) : s));
    const after = runPasses(f, [split, bodyPass('identity', (b) => b)]);
    expect(kernelStages(after)).toHaveLength(2);
    expect(kernelStages(after)[0].k).toBe('seq');
  });
});

describe('pipelines', () => {
  const model = buildModel({
    inputs: [['x', 'float32', [1, 3, 10, 10]]],
    outputs: [['y', 'float32', [1, 3, 12, 12]]],
    nodes: [
      { op: 'Pad', inputs: ['x', 'p'], outputs: ['q'], attrs: {} },
      { op: 'Relu', inputs: ['q'], outputs: ['y'] },
    ],
    initializers: { p: { dtype: 'int64', shape: [8], data: BigInt64Array.from([0, 0, 1, 1, 0, 0, 1, 1].map(BigInt)) } },
  });

  it("names every step: lowering, the passes all targets run, then the backend's own", () => {
    expect(loopPassNames('wasm')).toEqual([
      'lower',
      'unroll',
      'share-shared-loads',
      'half-floats',
      'narrow-integers',
      'legalize-floordiv',
      'partition-loops',
      'hoist-loop-invariant-values',
      'hoist-index-arithmetic',
    ]);
    expect(loopPassNames('webgpu')).toEqual([
      'lower',
      'unroll',
      'share-shared-loads',
      'half-floats',
      'demote-float64',
      'narrow-integers',
      'legalize-floordiv',
      'expand-math',
      'split-int64',
      'cse',
      'bind-launch',
    ]);
    expect(loopPassNames('cuda')).toEqual([
      'lower',
      'unroll',
      'share-shared-loads',
      'half-floats',
      'narrow-integers',
      'legalize-floordiv',
      'expand-math',
      'cse',
      'bind-launch',
    ]);
  });

  it.each(['wasm', 'webgpu', 'cuda'] as const)(
    '%s: the last step, lowered again from the trace, is the IR the backend emits',
    async (target) => {
      const r = await compile(model, { target });
      const kernels = target === 'wasm' ? r.program.kernels : r.gpuKernels;
      expect(kernels.length).toBeGreaterThan(0);
      for (const k of kernels) {
        const steps = loopIRAfterEachPass(k, target);
        expect(steps.map((s) => s.pass)).toEqual(loopPassNames(target));
        // the kernel as built (lowering's passes applied) plus the backend's passes: the same kernel up to names
        expect(kernelKey(steps.at(-1)!.prim)).toBe(kernelKey(targetLoopIR(k.prim, target)));
        expect(kernelKey(steps[LOWERING_LOOP_PASSES.length].prim)).toBe(kernelKey(k.prim));
      }
    },
  );

  it("compile(..., { dump }) receives the graph after each graph pass and each kernel's loop IR after each step", async () => {
    const levels: string[] = [];
    await compile(model, {
      target: 'webgpu',
      dump: (level, textOf) => {
        levels.push(level);
        expect(textOf.length).toBeGreaterThan(0);
      },
    });
    expect(levels[0]).toBe('graph:import');
    expect(levels).toContain('fused');
    const loop = levels.filter((l) => l.startsWith('loop:'));
    expect(loop.slice(0, loopPassNames('wasm').length)).toEqual(loopPassNames('wasm').map((p) => `loop:k0:${p}`));
    expect(loop).toContain('loop:g0:demote-float64');
  });

  it('prints a trace as primitive calls', () => {
    expect(
      printTrace([
        { p: 'split', stage: 0, axis: 'i1', factor: 4 },
        { p: 'reorder', stage: 0, order: ['i1.o', 'i0', 'i1.i'] },
        { p: 'annotate', stage: 0, axis: 'i1.i', kind: 'vectorized' },
        { p: 'annotate', stage: 0, axis: 'i0', kind: 'threadIdx.x' },
        { p: 'split', stage: 1, axis: 'i2', factor: 8, shiftTail: true },
        { p: 'cacheRead', stage: 1, input: 0, at: 'r0.o' },
        { p: 'computeInline', stage: 2 },
      ]),
    ).toBe(
      [
        's0.split(i1, 4)',
        's0.reorder(i1.o, i0, i1.i)',
        's0.vectorize(i1.i)',
        's0.bind(i0, threadIdx.x)',
        's1.split(i2, 8, shiftTail)',
        's1.cacheRead(input 0, at r0.o)',
        's2.computeInline()',
      ].join('\n'),
    );
  });
});
