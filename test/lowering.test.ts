// Tensor expressions -> schedule traces -> loop IR -> WebAssembly, checked numerically.
import { describe, expect, it } from 'vitest';
import * as E from '../src/tensor-expr/expr.js';
import { at, compute, placeholder, reduceAxis, type Tensor } from '../src/tensor-expr/tensor.js';
import { fixVar, simplify } from '../src/tensor-expr/simplify.js';
import { Schedule, type TraceStep } from '../src/schedule/schedule.js';
import { defaultTrace, registerTileTrace } from '../src/schedule/cpu-schedule.js';
import { lower } from '../src/schedule/lower.js';
import { printPrimFunc, type PrimFunc } from '../src/schedule/loop-ir.js';
import { emitWasmModule, wasmText } from '../src/codegen/wasm/codegen.js';
import { kernelPhases } from '../src/schedule/loop-ir.js';
import { SPECULATIVE_GUARD_BYTES, scratchLayout } from '../src/compiler/memory-plan.js';
import { hoistIndexArithmetic } from '../src/schedule/passes/hoist-index.js';
import { hoistLoopInvariantValues } from '../src/schedule/passes/hoist-values.js';
import { partitionLoops } from '../src/schedule/passes/partition.js';
import { erf, mathImports } from '../src/runtime/math.js';

function run(f: PrimFunc, inputs: Float32Array[], outSize: number): Float32Array {
  const memory = new WebAssembly.Memory({ initial: 4, maximum: 65536 });
  const inst = new WebAssembly.Instance(new WebAssembly.Module(emitWasmModule([f])), {
    env: { memory },
    math: mathImports(),
  });
  const F = new Float32Array(memory.buffer);
  let off = SPECULATIVE_GUARD_BYTES; // as the memory plan does: vector loads may overrun a buffer by this much
  const ptrs: number[] = [];
  for (const x of inputs) {
    F.set(x, off / 4);
    ptrs.push(off);
    off += Math.ceil(x.length / 4) * 16;
  }
  const outAt = off;
  off += Math.ceil(outSize / 4) * 16;
  const args = [...ptrs, outAt, ...(scratchLayout(f).bytes ? [off] : [])];
  const phases = kernelPhases(f).length;
  for (let p = 0; p < phases; p++) (inst.exports[f.name] as (...a: number[]) => void)(...args, p, 0, 1);
  return F.slice(outAt / 4, outAt / 4 + outSize);
}

function matmulTE(M: number, K: number, N: number): { A: Tensor; B: Tensor; C: Tensor } {
  const A = placeholder('A', [M, K], 'float32'),
    B = placeholder('B', [K, N], 'float32');
  const k = reduceAxis(K, 'k');
  const C = compute('matmul', [M, N], ([i, j]) => E.sum(E.mul(at(A, i, k.v), at(B, k.v, j)), [k]));
  return { A, B, C };
}

const data = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => ((i * 7 + s) % 13) / 13 - 0.5);

function refMatmul(a: Float32Array, b: Float32Array, M: number, K: number, N: number) {
  const c = new Float32Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k] * b[k * N + j];
      c[i * N + j] = s;
    }
  return c;
}

describe('schedules', () => {
  const [M, K, N] = [13, 17, 10];
  const a = data(M * K, 1),
    b = data(K * N, 2),
    want = refMatmul(a, b, M, K, N);
  const traces: Record<string, TraceStep[]> = {
    default: [],
    'split + reorder (reduction interleaved)': [
      { p: 'split', stage: 0, axis: 'i1', factor: 4 },
      { p: 'split', stage: 0, axis: 'r0', factor: 5 },
      { p: 'reorder', stage: 0, order: ['i0', 'r0.o', 'i1.o', 'r0.i', 'i1.i'] },
    ],
    'fused outer loops, parallel': [
      { p: 'split', stage: 0, axis: 'i1', factor: 4 },
      { p: 'fuse', stage: 0, outer: 'i0', inner: 'i1.o' },
      { p: 'annotate', stage: 0, axis: 'i0*i1.o', kind: 'parallel' },
      { p: 'annotate', stage: 0, axis: 'i1.i', kind: 'vectorized' },
    ],
    'tiled, unrolled inner': [
      { p: 'split', stage: 0, axis: 'i0', factor: 4 },
      { p: 'split', stage: 0, axis: 'i1', factor: 4 },
      { p: 'reorder', stage: 0, order: ['i0.o', 'i1.o', 'i0.i', 'i1.i'] },
      { p: 'annotate', stage: 0, axis: 'i1.i', kind: 'unrolled' },
    ],
  };
  for (const [name, trace] of Object.entries(traces)) {
    it(`matmul with ${name} trace matches the reference`, () => {
      const { A, B, C } = matmulTE(M, K, N);
      const sch = new Schedule([C]);
      for (const s of trace) sch.apply(s);
      const got = run(lower('k', [A, B], sch), [a, b], M * N);
      for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 4);
    });
  }

  it('a trace replays to the same loop IR on a fresh schedule', () => {
    const t = traces['split + reorder (reduction interleaved)'];
    const text = (trace: TraceStep[]) => {
      const { A, B, C } = matmulTE(M, K, N);
      const sch = new Schedule([C]);
      trace.forEach((s) => sch.apply(s));
      return { text: printPrimFunc(lower('k', [A, B], sch)).replace(/[a-z_]+\d+/gi, 'v'), trace: sch.trace };
    };
    const first = text(t);
    const again = text(JSON.parse(JSON.stringify(first.trace)));
    expect(again.text).toBe(first.text);
  });

  it('vectorized loops use SIMD128 and compute the same values', () => {
    const X = placeholder('X', [6, 8], 'float32'),
      Y = placeholder('Y', [8], 'float32');
    const Z = compute('axpy', [6, 8], ([i, j]) =>
      E.max(E.add(E.mul(at(X, i, j), at(Y, j)), E.constant(0.25, 'float32')), E.constant(0, 'float32')),
    );
    const sch = new Schedule([Z]);
    sch.apply({ p: 'split', stage: 0, axis: 'i1', factor: 4 });
    sch.apply({ p: 'annotate', stage: 0, axis: 'i1.i', kind: 'vectorized' });
    const f = lower('k', [X, Y], sch);
    expect(wasmText(emitWasmModule([f]))).toMatch(/f32x4\.(mul|add|max)/);
    const x = data(48, 3),
      y = data(8, 4);
    const got = run(f, [x, y], 48);
    for (let i = 0; i < 48; i++) expect(got[i]).toBeCloseTo(Math.max(x[i] * y[i % 8] + 0.25, 0), 6);
  });

  it('a register tile broadcasts each row operand with one load (v128.load32_splat), shared by its vectors', () => {
    const { A, B, C } = matmulTE(8, 32, 16);
    const sch = new Schedule([C]);
    defaultTrace(sch).forEach((s) => sch.apply(s));
    const f = lower('k', [A, B], sch);
    const text = wasmText(emitWasmModule([f]));
    // a scalar load and f32x4.splat per use cost a shuffle each (a port the adds need on Intel cores)
    expect(text).not.toContain('f32x4.splat');
    // one broadcast per tile row per reduction step: 4 rows (the tile is 4 x 2 vectors)
    expect(text.match(/v128\.load32_splat/g)?.length).toBe(4);
    // the rows' and the second vector's constant distances are access offsets, not address arithmetic
    expect(text.match(/v128\.load32_splat offset=\d+/g)?.length).toBe(3);
    expect(text).toMatch(/v128\.load offset=\d+/);
    const a = data(8 * 32, 5),
      b = data(32 * 16, 6),
      want = refMatmul(a, b, 8, 32, 16);
    const got = run(f, [a, b], 8 * 16);
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 4);
  });

  it('a single row (a matrix-vector product) gets 8 accumulator vectors, not 2: independent chains through the reduction', () => {
    const { A, B, C } = matmulTE(1, 64, 512);
    const sch = new Schedule([C]);
    const steps = defaultTrace(sch);
    // 8 vectors of 4 lanes per tile on WebAssembly; 8 of 16 natively (24 accumulators)
    expect(steps).toContainEqual(expect.objectContaining({ p: 'split', factor: 32 }));
    const native = defaultTrace(new Schedule([C]), { lanes: 16, maxAccumulators: 24, registers: 32 });
    expect(native).toContainEqual(expect.objectContaining({ p: 'split', factor: 128 }));
    steps.forEach((s) => sch.apply(s));
    const f = lower('k', [A, B], sch);
    const a = data(64, 7),
      b = data(64 * 512, 8),
      want = refMatmul(a, b, 1, 64, 512);
    const got = run(f, [a, b], 512);
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 4);
  });

  it('keeps a constant index term in the address where the rest of the index may be negative', () => {
    // out[i] = x[7 - i]: the index is (i * -1) + 7; an offset of 7 elements would need a negative address
    const X = placeholder('X', [8], 'float32');
    const Y = compute('rev', [8], ([i]) => at(X, E.sub(E.int(7), i)));
    const f = lower('k', [X], new Schedule([Y]));
    expect(wasmText(emitWasmModule([f]))).not.toMatch(/load offset=/);
    const x = data(8, 3);
    expect(Array.from(run(f, [x], 8))).toEqual(Array.from(x).reverse());
  });

  it('inlines injective producers and materializes reductions', () => {
    const { A, B, C } = matmulTE(4, 4, 4);
    const D = compute('relu', [4, 4], ([i, j]) => E.max(at(C, i, j), E.constant(0, 'float32')));
    const T = compute('scale', [4, 4], ([i, j]) => E.mul(at(A, i, j), E.constant(2, 'float32')));
    const O = compute('out', [4, 4], ([i, j]) => E.add(at(D, i, j), at(T, i, j)));
    const sch = new Schedule([O]);
    defaultTrace(sch).forEach((s) => sch.apply(s));
    expect(sch.stages.filter((s) => s.inlined).map((s) => s.tensor.name)).toEqual([D.name, T.name]);
    // the matmul is the only reduction; the output stage (relu + scale + add) runs at its tile's write-back,
    // so nothing is materialized in between
    expect(sch.trace.some((s) => s.p === 'fuseEpilogue')).toBe(true);
    const f = lower('k', [A, B], sch);
    expect(f.temps.length).toBe(0);
    const a = data(16, 1),
      b = data(16, 2);
    const got = run(f, [a, b], 16),
      mm = refMatmul(a, b, 4, 4, 4);
    for (let i = 0; i < 16; i++) expect(got[i]).toBeCloseTo(Math.max(mm[i], 0) + 2 * a[i], 5);
  });
});

describe('simplifier', () => {
  const i = E.freshVar('i'),
    j = E.freshVar('j');
  const ranges = new Map([
    [i, { lo: 0, hi: 7 }],
    [j, { lo: 0, hi: 3 }],
  ]);
  const p = (e: E.Expr) => E.printExpr(simplify(e, ranges));
  it('folds constants and identities', () => {
    expect(p(E.add(E.mul(i, 1), 0))).toBe(i.name);
    expect(p(E.add(E.add(i, 3), 4))).toBe(`(${i.name} + 7)`);
    expect(p(E.mul(E.int(6), E.int(7)))).toBe('42');
  });
  it('keeps int32 and/or bitwise: only x & 0, x & -1, x | 0, x | -1 fold', () => {
    expect(p(E.and(i, 3))).toBe(`(${i.name} && 3)`);
    expect(p(E.or(E.int(4), i))).toBe(`(4 || ${i.name})`);
    expect(p(E.and(i, 0))).toBe('0');
    expect(p(E.and(i, -1))).toBe(i.name);
    expect(p(E.or(i, 0))).toBe(i.name);
    expect(p(E.or(i, -1))).toBe('-1');
    expect(p(E.and(E.lt(i, 5), E.constant(1, 'bool')))).toBe(`(${i.name} < 5)`);
  });
  it('uses variable ranges for div/mod and comparisons', () => {
    expect(p(E.floordiv(E.add(E.mul(i, 4), j), 4))).toBe(i.name);
    expect(p(E.floormod(E.add(E.mul(i, 4), j), 4))).toBe(j.name);
    expect(p(E.lt(i, 8))).toBe('true');
    expect(p(E.ge(j, 4))).toBe('false');
    expect(p(E.lt(i, 5))).toBe(`(${i.name} < 5)`);
  });
  it('keeps a split lane unit-stride inside a reshaped axis: (x*4 + lane) %% 64 and // 64', () => {
    // j in 0..3 is a SIMD lane, o (0..63) the outer part of the split; 4 divides 64
    const o = E.freshVar('o');
    const wide = new Map([...ranges, [o, { lo: 0, hi: 63 }]]);
    const q = (e: E.Expr) => E.printExpr(simplify(e, wide));
    expect(q(E.floormod(E.add(E.mul(o, 4), j), 64))).toBe(`(((${o.name} %% 16) * 4) + ${j.name})`);
    expect(q(E.floordiv(E.add(E.mul(o, 4), j), 64))).toBe(`(${o.name} // 16)`);
    // not when the lane may reach the next multiple of 4 (j + 1 in 1..4)
    expect(q(E.floormod(E.add(E.mul(o, 4), E.add(j, 1)), 64))).toContain('%% 64');
    // exact over the ranges, checked by evaluation
    for (let x = 0; x < 8; x++)
      for (let y = 0; y < 4; y++) {
        const fix = (e: E.Expr) => Number(E.printExpr(fixVar(fixVar(simplify(e, ranges), i, x), j, y)));
        expect(fix(E.floormod(E.add(E.mul(i, 12), j), 24))).toBe((x * 12 + y) % 24);
        expect(fix(E.floordiv(E.add(E.mul(i, 12), j), 24))).toBe(Math.floor((x * 12 + y) / 24));
      }
  });
  it('drops a multiple of the divisor added to a dividend: (lane + 16) %% 16 and // 16 (a second vector)', () => {
    const l = E.freshVar('l');
    const r = new Map([...ranges, [l, { lo: 0, hi: 15 }]]);
    const q = (e: E.Expr) => E.printExpr(simplify(e, r));
    expect(q(E.floormod(E.add(l, 16), 16))).toBe(l.name);
    expect(q(E.floordiv(E.add(l, 32), 16))).toBe('2');
    // exact for every integer, negative ones included (floor semantics)
    const x = E.freshVar('x');
    for (let v = -40; v <= 40; v++) {
      const at = (e: E.Expr) => Number(E.printExpr(fixVar(simplify(e, new Map()), x, v)));
      expect(at(E.floormod(E.add(x, 48), 16))).toBe(((v % 16) + 16) % 16);
      expect(at(E.floordiv(E.add(x, -32), 16))).toBe(Math.floor((v - 32) / 16));
    }
  });
});

describe('loop IR for GPU backends', () => {
  it('expresses thread-bound loops, shared-memory buffers and barriers', async () => {
    const { buffer, printStmt } = await import('../src/schedule/loop-ir.js');
    const { A, B, C } = matmulTE(64, 64, 64);
    const sch = new Schedule([C]);
    sch.apply({ p: 'split', stage: 0, axis: 'i0', factor: 16 });
    sch.apply({ p: 'split', stage: 0, axis: 'i1', factor: 16 });
    sch.apply({ p: 'reorder', stage: 0, order: ['i0.o', 'i1.o', 'i0.i', 'i1.i'] });
    sch.apply({ p: 'annotate', stage: 0, axis: 'i0.o', kind: 'blockIdx.y' });
    sch.apply({ p: 'annotate', stage: 0, axis: 'i1.o', kind: 'blockIdx.x' });
    sch.apply({ p: 'annotate', stage: 0, axis: 'i0.i', kind: 'threadIdx.y' });
    sch.apply({ p: 'annotate', stage: 0, axis: 'i1.i', kind: 'threadIdx.x' });
    const f = lower('k', [A, B], sch);
    const tile = buffer('A_shared', 'float32', 16 * 16, 'shared');
    const text = printStmt({ k: 'alloc', buf: tile, body: { k: 'seq', body: [f.body, { k: 'barrier' }] } });
    expect(text).toMatch(/alloc A_shared: float32\[256\] \(shared\)/);
    expect(text).toMatch(/\(blockIdx\.y\)[\s\S]*\(blockIdx\.x\)[\s\S]*\(threadIdx\.y\)[\s\S]*\(threadIdx\.x\)/);
    expect(text).toMatch(/barrier\(\)/);
  });
});

describe('cacheRead and computeAt on the CPU', () => {
  it("stages a register tile's operand region per reduction block in a chunk-private buffer, computing an inlined producer there once", () => {
    const [M, K, N] = [12, 32, 24];
    const A = placeholder('A', [M, K], 'float32'),
      B = placeholder('B', [K, N], 'float32');
    const P = compute('scaled', [K, N], ([k, n]) => E.mul(at(B, k, n), E.constant(2, 'float32')));
    const kk = reduceAxis(K, 'k');
    const C = compute('C', [M, N], ([i, j]) => E.sum(E.mul(at(A, i, kk.v), at(P, kk.v, j)), [kk]));
    const sch = new Schedule([C]);
    sch.apply({ p: 'computeInline', stage: 0 });
    for (const st of registerTileTrace(sch.stages[1], 1)) sch.apply(st);
    sch.apply({ p: 'split', stage: 1, axis: 'r0', factor: 8 });
    // compute_at: the scaled B panel of each 8-deep reduction block, computed at the start of the block
    sch.apply({ p: 'cacheRead', stage: 1, input: 1, at: 'r0.o' });
    const f = lower('k', [A, B], sch);
    const text = printPrimFunc(f);
    expect(text).toMatch(/alloc scaled_\d+_shared: float32\[64\] \(shared\)/); // 8 rows of the tile's 8 columns
    expect(text.match(/\* 2:float32/g)?.length).toBe(1); // the producer runs in the fetch only
    expect(scratchLayout(f).chunkStride).toBe(256);
    const a = data(M * K, 1),
      b = data(K * N, 2);
    const got = run(f, [a, b], M * N),
      want = refMatmul(
        a,
        b.map((x) => 2 * x),
        M,
        K,
        N,
      );
    for (let i = 0; i < M * N; i++) expect(got[i]).toBeCloseTo(want[i], 5);
  });
});

describe('epilogue fusion', () => {
  it('applies the output stage to the register tile as it is written back (no temporary)', () => {
    const [M, K, N] = [8, 12, 16];
    const { A, B, C } = matmulTE(M, K, N);
    const Bias = placeholder('bias', [N], 'float32');
    const D = compute('bias_relu', [M, N], ([i, j]) =>
      E.max(E.add(at(C, i, j), at(Bias, j)), E.constant(0, 'float32')),
    );
    const sch = new Schedule([D]);
    const steps = defaultTrace(sch);
    expect(steps.some((s) => s.p === 'fuseEpilogue')).toBe(true);
    steps.forEach((s) => sch.apply(s));
    const f = lower('k', [A, B, Bias], sch);
    expect(f.temps).toEqual([]);
    expect(kernelPhases(f).length).toBe(1);
    const a = data(M * K, 1),
      b = data(K * N, 2),
      bias = data(N, 3);
    const mm = refMatmul(a, b, M, K, N);
    const got = run(f, [a, b, bias], M * N);
    for (let i = 0; i < M * N; i++) expect(got[i]).toBeCloseTo(Math.max(mm[i] + bias[i % N], 0), 5);
  });

  it('vectorizes a row that is not a multiple of 4 (last vector shifted back) and masks a padded border', () => {
    const X = placeholder('X', [2, 3, 10], 'float32');
    const P = compute('pad', [2, 5, 14], ([c, i, j]) => {
      const y = E.sub(i, 1),
        x = E.sub(j, 2);
      const inside = E.and(E.and(E.ge(y, 0), E.lt(y, 3)), E.and(E.ge(x, 0), E.lt(x, 10)));
      return E.select(inside, at(X, c, y, x), E.constant(0, 'float32'));
    });
    const sch = new Schedule([P]);
    defaultTrace(sch).forEach((s) => sch.apply(s));
    expect(sch.trace).toContainEqual({ p: 'split', stage: 0, axis: 'i2', factor: 4, shiftTail: true });
    const f = lower('k', [X], sch);
    expect(printPrimFunc(f)).toContain('min((i2_o'); // the last vector starts at 14 - 4
    const text = wasmText(emitWasmModule([f]));
    expect(text).toContain('v128.bitselect'); // border lanes masked, not loaded one by one
    expect(text).not.toContain('f32x4.replace_lane');
    const x = data(60, 5);
    const got = run(f, [x], 140);
    for (let c = 0; c < 2; c++)
      for (let i = 0; i < 5; i++)
        for (let j = 0; j < 14; j++) {
          const inside = i >= 1 && i < 4 && j >= 2 && j < 12;
          expect(got[c * 70 + i * 14 + j]).toBe(inside ? x[c * 30 + (i - 1) * 10 + (j - 2)] : 0);
        }
    // loop partitioning (under the parallel channel loop): border rows and vectors apart, the interior unchecked
    const rowLoop = (s: PrimFunc['body']): PrimFunc['body'] =>
      s.k === 'for' && s.kind !== 'serial' ? rowLoop(s.body) : s;
    const parts = partitionLoops(rowLoop(f.body));
    const rows = parts.k === 'seq' ? parts.body : [];
    expect(rows.length).toBe(3); // row 0, rows 1..3, row 4
    const interior = printPrimFunc({ ...f, body: rows[1] });
    expect(interior).toContain('select('); // its first and last vectors still straddle the border
    const middle = interior.split('\n').filter((l) => l.includes('out0[') && !l.includes('select('));
    expect(middle.length).toBeGreaterThan(0); // the vectors in between copy with no check
    expect(printPrimFunc({ ...f, body: rows[0] })).not.toContain('in0['); // a border row only writes zeros
  });

  it('with tails, a parallel loop branches where a shifted last tile starts: the other tiles read packed operands as vectors', () => {
    // C = A x B with B packed by 8 columns ([3, K, 8], the last block half empty), 20 columns in tiles of 8: the
    // last tile starts at 12, inside a block; the tiles before it start on a block and read it contiguously
    const K = 6,
      N = 20;
    const A = placeholder('A', [2, K], 'float32'),
      B = placeholder('B', [3, K, 8], 'float32');
    const k = reduceAxis(K, 'k');
    const C = compute('matmul', [2, N], ([i, j]) =>
      E.sum(E.mul(at(A, i, k.v), at(B, E.floordiv(j, 8), k.v, E.floormod(j, 8))), [k]),
    );
    const sch = new Schedule([C]);
    for (const s of [
      { p: 'split', stage: 0, axis: 'i1', factor: 8, shiftTail: true },
      { p: 'split', stage: 0, axis: 'i1.i', factor: 4 },
      { p: 'reorder', stage: 0, order: ['i1.o', 'i0', 'r0', 'i1.i.o', 'i1.i.i'] },
      { p: 'annotate', stage: 0, axis: 'i1.i.o', kind: 'unrolled' },
      { p: 'annotate', stage: 0, axis: 'i1.i.i', kind: 'vectorized' },
      { p: 'cacheWrite', stage: 0 },
      { p: 'annotate', stage: 0, axis: 'i1.o', kind: 'parallel' },
    ] as TraceStep[])
      sch.apply(s);
    const f = lower('k', [A, B], sch);
    expect(partitionLoops(f.body)).toEqual(f.body); // without tails: nothing to split under a parallel loop
    const body = partitionLoops(f.body, { tails: true });
    const text = printPrimFunc({ ...f, body });
    expect(text).toMatch(/for i1_o\w* in 0\.\.3 \(parallel\) \{\n\s*if \(i1_o\w* < 2\) \{/);
    const [first, last] = text.split('} else {');
    expect(first).not.toMatch(/min\(|%/); // tiles 0 and 1: contiguous blocks
    expect(last).toContain('%');
    const a = data(2 * K, 1),
      b = data(3 * K * 8, 2);
    const want = new Float32Array(2 * N);
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < N; j++)
        for (let kk = 0; kk < K; kk++) want[i * N + j] += a[i * K + kk] * b[(Math.floor(j / 8) * K + kk) * 8 + (j % 8)];
    const got = run({ ...f, body }, [a, b], 2 * N);
    for (let x = 0; x < 2 * N; x++) expect(got[x]).toBeCloseTo(want[x], 4);
  });

  it('a shiftTail split is refused where overlapping iterations would accumulate twice', () => {
    const { A, B, C } = matmulTE(4, 4, 6);
    const sch = new Schedule([C]);
    sch.apply({ p: 'split', stage: 0, axis: 'i1', factor: 4, shiftTail: true });
    sch.apply({ p: 'reorder', stage: 0, order: ['i0', 'r0', 'i1.o', 'i1.i'] }); // reduction between spatial loops
    expect(() => lower('k', [A, B], sch)).toThrow(/accumulate overlapping elements twice/);
    expect(() => sch.apply({ p: 'split', stage: 0, axis: 'r0', factor: 3, shiftTail: true })).toThrow(
      /count terms twice/,
    );
  });

  it('hoists index arithmetic to the loop that binds each term', () => {
    const { A, B, C } = matmulTE(8, 8, 8);
    const sch = new Schedule([C]);
    const f = lower('k', [A, B], sch);
    const innermost = (s: PrimFunc['body']): PrimFunc['body'] =>
      s.k === 'for' || s.k === 'decl' || s.k === 'alloc' ? innermost(s.body) : s.k === 'seq' ? innermost(s.body[0]) : s;
    const before = printPrimFunc({ ...f, body: innermost(f.body) });
    const hoisted = hoistIndexArithmetic(f.body);
    const after = printPrimFunc({ ...f, body: innermost(hoisted) });
    expect(printPrimFunc({ ...f, body: hoisted })).toMatch(/let p\w*: int32 = /);
    expect((after.match(/\*/g) ?? []).length).toBeLessThan((before.match(/\*/g) ?? []).length);
    const a = data(64, 1),
      b = data(64, 2);
    const got = run(f, [a, b], 64),
      want = refMatmul(a, b, 8, 8, 8);
    for (let i = 0; i < 64; i++) expect(got[i]).toBeCloseTo(want[i], 5);
  });

  it("hoists a loop-invariant value (a row's 1 / sqrt(v + eps)) out of the loops inside, not out of a guard", () => {
    // out[r, c] = (x[r, c] - m[r]) / sqrt(v[r] + eps): the per-row factor once per row, not once per vector
    const X = placeholder('X', [3, 16], 'float32'),
      Mn = placeholder('M', [3], 'float32'),
      V = placeholder('V', [3], 'float32');
    const Y = compute('norm', [3, 16], ([r, c]) =>
      E.mul(
        E.sub(at(X, r, c), at(Mn, r)),
        E.div(E.constant(1, 'float32'), E.unary('sqrt', E.add(at(V, r), E.constant(1e-5, 'float32')))),
      ),
    );
    const sch = new Schedule([Y]);
    defaultTrace(sch).forEach((s) => sch.apply(s));
    const f = lower('k', [X, Mn, V], sch);
    const text = printPrimFunc({ ...f, body: hoistLoopInvariantValues(f.body) });
    // declared in the row loop, before the loop over the row's vectors
    expect(text).toMatch(/let h\w*: float32 = \(1:float32 \/ sqrt\(/);
    expect(text.indexOf('let h')).toBeLessThan(text.lastIndexOf('(vectorized)'));
    const x = data(48, 7),
      m = data(3, 8),
      v = data(3, 9).map(Math.abs);
    const got = run(f, [x, m, v], 48);
    for (let r = 0; r < 3; r++)
      for (let c = 0; c < 16; c++)
        expect(got[r * 16 + c]).toBeCloseTo((x[r * 16 + c] - m[r]) / Math.sqrt(v[r] + 1e-5), 4);
    // a value under a guard stays there (its loads may be out of bounds when the guard is false)
    const i = E.freshVar('i'),
      j = E.freshVar('j');
    const src = { name: 'b', dtype: 'float32' as const, size: 4, scope: 'global' as const },
      dst = { ...src, name: 'o', size: 32 };
    const load = { k: 'load' as const, buf: src, idx: [i], dtype: 'float32' as const };
    const inner: PrimFunc['body'] = {
      k: 'for',
      v: j,
      extent: 4,
      kind: 'serial',
      body: { k: 'store', buf: dst, index: E.add(E.mul(i, 4), j), value: E.unary('sqrt', load) },
    };
    const loop = (body: PrimFunc['body']): PrimFunc['body'] => ({ k: 'for', v: i, extent: 8, kind: 'serial', body });
    expect(printPrimFunc({ ...f, body: hoistLoopInvariantValues(loop(inner)) })).toMatch(/let h/); // unguarded: moves
    expect(
      printPrimFunc({ ...f, body: hoistLoopInvariantValues(loop({ k: 'if', cond: E.lt(i, E.int(4)), then: inner })) }),
    ).not.toMatch(/let h/);
  });

  it('reads a stride-2 row with two vector loads and a shuffle', () => {
    const X = placeholder('X', [3, 24], 'float32');
    const Y = compute('down', [3, 12], ([i, j]) => E.add(at(X, i, E.mul(j, 2)), at(X, i, E.add(E.mul(j, 2), 1))));
    const sch = new Schedule([Y]);
    defaultTrace(sch).forEach((s) => sch.apply(s));
    const f = lower('k', [X], sch);
    const text = wasmText(emitWasmModule([f]));
    expect(text).toContain('i8x16.shuffle');
    expect(text).not.toContain('f32x4.replace_lane');
    const x = data(72, 3);
    const got = run(f, [x], 36);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 12; j++) expect(got[i * 12 + j]).toBeCloseTo(x[i * 24 + 2 * j] + x[i * 24 + 2 * j + 1], 6);
  });

  it('computes float32 exp, erf and tanh inline, vectorized and scalar, within float32 accuracy', () => {
    const n = 4003; // not a multiple of 4: vector body and shifted last vector
    const X = placeholder('X', [n], 'float32');
    const coarse = Float32Array.from({ length: n }, (_, i) => -90 + (180 * i) / (n - 1));
    const erfRef = (x: number) => {
      // erf by its Taylor series in float64 where that converges well
      if (Math.abs(x) > 3) return erf(x); // the float64 Chebyshev fit the f64 path imports (1.2e-7)
      let sum = x,
        term = x;
      for (let k = 1; k < 120; k++) {
        term *= (-x * x) / k;
        sum += term / (2 * k + 1);
      }
      return (2 / Math.sqrt(Math.PI)) * sum;
    };
    // erf also on a fine grid where it is not yet 1 (the rational fit's error peaks between the coarse points)
    const fine = Float32Array.from({ length: n }, (_, i) => -5 + (10 * i) / (n - 1));
    for (const [fn, ref, tol, xs] of [
      ['exp', Math.exp, 3e-7, coarse],
      ['erf', erfRef, 4e-7, coarse],
      ['erf', erfRef, 4e-7, fine],
      ['tanh', Math.tanh, 3e-7, coarse],
    ] as const) {
      for (const vectorize of [true, false]) {
        const Y = compute(fn, [n], ([i]) => E.unary(fn, at(X, i)));
        const sch = new Schedule([Y]);
        if (vectorize) defaultTrace(sch).forEach((s) => sch.apply(s));
        const f = lower('k', [X], sch);
        const text = wasmText(emitWasmModule([f]));
        expect(text).not.toContain(`call $math_${fn}`);
        if (vectorize) expect(text).toContain('f32x4.mul');
        const got = run(f, [xs], n);
        for (let i = 0; i < n; i++) {
          const want = ref(xs[i]);
          // exp: relative error; erf/tanh: absolute (values within [-1, 1])
          const err = fn === 'exp' ? Math.abs(got[i] - want) / Math.max(want, 1e-30) : Math.abs(got[i] - want);
          // below 2^-125.5 (x < -86.99) exp flushes to 0: the scale 2^(n-1) is built from exponent bits
          if (fn === 'exp' && want < 1.8e-38) expect(got[i] === 0 || err <= tol).toBe(true);
          else if (fn === 'exp' && want > 3.4028234663852886e38)
            expect(got[i]).toBeGreaterThan(3.4e38); // overflows float32
          else if (!(err <= tol))
            throw new Error(`${fn}(${xs[i]}) = ${got[i]}, want ${want} (${vectorize ? 'vector' : 'scalar'})`);
        }
      }
    }
    // special values, four lanes and one: exp(-inf) ~ 0, exp(+inf) = inf, erf/tanh(+-inf) = +-1, NaN stays NaN
    // (the vector clamps are pmin/pmax, which keep a NaN only as their first operand)
    const special = Float32Array.from([-Infinity, Infinity, NaN, 0]);
    for (const [fn, want] of [
      ['exp', [0, Infinity, NaN, 1]],
      ['erf', [-1, 1, NaN, 0]],
      ['tanh', [-1, 1, NaN, 0]],
    ] as const) {
      for (const vectorize of [true, false]) {
        const Y = compute(fn, [4], ([i]) => E.unary(fn, at(X, i)));
        const sch = new Schedule([Y]);
        if (vectorize) defaultTrace(sch).forEach((s) => sch.apply(s));
        const got = Array.from(run(lower('k', [X], sch), [special], 4));
        got.forEach((g, i) => (Number.isNaN(want[i]) ? expect(g).toBeNaN() : expect(g).toBeCloseTo(want[i], 30)));
      }
    }
    // exp flushes results below 2^-125.5 (~1.8e-38, just above the smallest normal) to 0: subnormals slow every
    // later multiply
    for (const vectorize of [true, false]) {
      const Y = compute('exp', [4], ([i]) => E.unary('exp', at(X, i)));
      const sch = new Schedule([Y]);
      if (vectorize) defaultTrace(sch).forEach((s) => sch.apply(s));
      const got = run(lower('k', [X], sch), [Float32Array.from([-86.9, -87.1, -100, -3.4e38])], 4);
      const want = Math.exp(Math.fround(-86.9)); // a normal float32
      expect(Math.abs(got[0] - want) / want).toBeLessThan(3e-7);
      expect(Array.from(got.slice(1))).toEqual([0, 0, 0]);
    }
  });

  it('clamps to constants (Relu, Clip) with pmax/pmin in vectors, keeping NaN and infinities', () => {
    const X = placeholder('X', [8], 'float32');
    const Y = compute('clip', [8], ([i]) => E.min(E.max(at(X, i), E.constant(0, 'float32')), E.constant(6, 'float32')));
    const sch = new Schedule([Y]);
    defaultTrace(sch).forEach((s) => sch.apply(s));
    const f = lower('k', [X], sch);
    const text = wasmText(emitWasmModule([f]));
    expect(text).toMatch(/f32x4\.pmax/);
    expect(text).toMatch(/f32x4\.pmin/);
    const got = Array.from(run(f, [Float32Array.from([NaN, -Infinity, Infinity, -3, 0.5, 7, 6, -0])], 8));
    expect(got[0]).toBeNaN();
    expect(got.slice(1)).toEqual([0, 6, 0, 0.5, 6, 6, -0]);
  });

  it('vectorizes a row reduction along its reduced axis: partial vectors combined at the end (softmax)', () => {
    const X = placeholder('X', [3, 40], 'float32');
    const r1 = reduceAxis(40, 'r'),
      r2 = reduceAxis(40, 's');
    const mx = compute('mx', [3], ([i]) => E.reduce('max', at(X, i, r1.v), [r1]));
    const sm = compute('sum', [3], ([i]) => E.sum(E.unary('exp', E.sub(at(X, i, r2.v), at(mx, i))), [r2]));
    const Y = compute('softmax', [3, 40], ([i, j]) => E.div(E.unary('exp', E.sub(at(X, i, j), at(mx, i))), at(sm, i)));
    const sch = new Schedule([Y]);
    defaultTrace(sch).forEach((s) => sch.apply(s));
    // rows of 40: two partial vectors (independent dependency chains), 4 lanes each
    expect(sch.trace.filter((s) => s.p === 'annotate' && s.kind === 'vectorized' && s.axis === 'r0.i.i')).toHaveLength(
      2,
    );
    const f = lower('k', [X], sch);
    expect(printPrimFunc(f)).toMatch(/_lanes: float32\[8\] \(local\)/);
    const text = wasmText(emitWasmModule([f]));
    expect(text).toContain('f32x4.max');
    const x = data(120, 9).map((v, i) => v * (1 + (i % 7)));
    const got = run(f, [x], 120);
    for (let i = 0; i < 3; i++) {
      const row = Array.from(x.slice(i * 40, i * 40 + 40));
      const m = Math.max(...row),
        s = row.reduce((a, v) => a + Math.exp(v - m), 0);
      for (let j = 0; j < 40; j++) expect(got[i * 40 + j]).toBeCloseTo(Math.exp(row[j] - m) / s, 6);
    }
  });

  it('sums contiguous rows along the row (layernorm statistics), not with lanes across rows; matmul keeps its tile', () => {
    const X = placeholder('X', [6, 64], 'float32');
    const r = reduceAxis(64, 'r');
    const S = compute('rowsum', [6], ([i]) => E.sum(E.mul(at(X, i, r.v), at(X, i, r.v)), [r]));
    const sch = new Schedule([S]);
    const trace = defaultTrace(sch);
    trace.forEach((s) => sch.apply(s));
    // four partial vectors along the row; no lanes over the 6 rows (each lane would load from another row)
    expect(
      trace.filter((s) => s.p === 'annotate' && s.kind === 'vectorized').map((s) => (s as { axis: string }).axis),
    ).toEqual(['r0.i.i']);
    const f = lower('k', [X], sch);
    expect(printPrimFunc(f)).toMatch(/_lanes: float32\[16\] \(local\)/);
    const x = data(384, 4);
    const got = run(f, [x], 6);
    for (let i = 0; i < 6; i++)
      expect(got[i]).toBeCloseTo(
        x.slice(i * 64, i * 64 + 64).reduce((a, v) => a + v * v, 0),
        4,
      );
    // a matmul shares A's element across its lanes and reads B contiguously along them: register tile
    const { C } = matmulTE(8, 16, 64);
    const mm = new Schedule([C]);
    expect(
      defaultTrace(mm).some(
        (s) => s.p === 'annotate' && s.kind === 'vectorized' && (s as { axis: string }).axis.startsWith('i'),
      ),
    ).toBe(true);
  });

  it('tiles a pointwise conv over its fused rows and columns; the flattened index folds back', () => {
    const p = E.freshVar('p'),
      c = E.freshVar('c');
    const ranges = new Map([[p, { lo: 0, hi: 168 }]]);
    const flat = E.add(E.add(E.mul(E.floordiv(p, 13), 13), E.floormod(p, 13)), E.mul(c, 169));
    expect(E.printExpr(simplify(flat, ranges))).toBe(`(${p.name} + (${c.name} * 169))`);
    // out[m, y, x] = sum_c X[c, y, x] * W[c, m]: lanes over m, rows over the fused y*x axis (5 x 7 = 35 rows)
    const X = placeholder('X', [6, 5, 7], 'float32'),
      W = placeholder('W', [6, 8], 'float32');
    const r = reduceAxis(6, 'c');
    const O = compute('pw', [8, 5, 7], ([m, y, x]) => E.sum(E.mul(at(X, r.v, y, x), at(W, r.v, m)), [r]), {
      vectorAxis: 0,
      rowAxis: 2,
      rowAxes: 2,
    });
    const sch = new Schedule([O]);
    defaultTrace(sch).forEach((s) => sch.apply(s));
    expect(sch.trace[0]).toEqual({ p: 'fuse', stage: 0, outer: 'i1', inner: 'i2' });
    const f = lower('k', [X, W], sch);
    const text = printPrimFunc(f);
    expect(text).not.toMatch(/\/\/|%%/); // no division left in any index, the last partial tile included
    const x = data(210, 4),
      w = data(48, 6);
    const got = run(f, [x, w], 280);
    for (let m = 0; m < 8; m++)
      for (let q = 0; q < 35; q++) {
        let acc = 0;
        for (let k = 0; k < 6; k++) acc += x[k * 35 + q] * w[k * 8 + m];
        expect(got[m * 35 + q]).toBeCloseTo(acc, 5);
      }
  });

  it('no epilogue fusion when a materialized stage reads the reduction through an inlined one', () => {
    const { A, B, C } = matmulTE(4, 4, 8);
    const biased = compute('biased', [4, 8], ([i, j]) => E.add(at(C, i, j), E.constant(1, 'float32')));
    const mid = compute('mid', [4, 8], ([i, j]) => E.mul(at(biased, i, j), E.constant(2, 'float32')));
    const O = compute('out', [4, 8], ([i, j]) => E.add(at(biased, i, j), at(mid, i, j)));
    const sch = new Schedule([O]);
    // biased inlined, mid kept: mid reads the matmul through biased, so the matmul must be stored
    sch.apply({ p: 'computeInline', stage: 1 });
    for (const s of registerTileTrace(sch.stages[0], 0)) sch.apply(s);
    expect(sch.epilogueOf(sch.stages[0])).toBeUndefined();
    const a = data(16, 1),
      b = data(32, 2);
    const got = run(lower('k', [A, B], sch), [a, b], 32),
      want = refMatmul(a, b, 4, 4, 8);
    for (let i = 0; i < 32; i++) expect(got[i]).toBeCloseTo(3 * (want[i] + 1), 5);
  });
});
