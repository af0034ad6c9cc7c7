// The loop-IR verifier: it accepts every kernel Kiln generates (CPU, WebGPU and CUDA schedules; small models, the
// model fixtures, the ONNX node suite) and rejects hand-broken kernels, naming the rule. Broken kernels are shown
// as printed IR (Before) with the message they must give (Expected).
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile } from '../src/index.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { gpuPrimFunc } from '../src/compiler/cuda-program.js';
import { KilnError } from '../src/runtime/errors.js';
import type { DType } from '../src/runtime/dtype.js';
import { type Expr, type Var, constant, printExpr } from '../src/tensor-expr/expr.js';
import {
  type Buffer,
  type PrimFunc,
  type Stmt,
  type ForKind,
  buffer,
  printPrimFunc,
  seq,
} from '../src/schedule/loop-ir.js';
import {
  CUDA_LAUNCH_LIMITS,
  WEBGPU_LAUNCH_LIMITS,
  type VerifyOptions,
  verifyPrimFunc,
} from '../src/schedule/verify.js';
import { cpuKernels, cudaPrims, nodeCase, stageGraph, webgpuPrims } from './helpers/verify-ir.js';

const CUDA: VerifyOptions = { localIndex: 'constant', launch: CUDA_LAUNCH_LIMITS };
const WEBGPU: VerifyOptions = { localIndex: 'constant', launch: WEBGPU_LAUNCH_LIMITS };

/** The verifier's message for `f`, or undefined when it accepts it. */
function problem(f: PrimFunc, opts?: VerifyOptions): string | undefined {
  try {
    verifyPrimFunc(f, opts);
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(KilnError);
    expect((e as KilnError).code).toBe('E_INTERNAL');
    return (e as KilnError).detail;
  }
}

/** Verifies every prim; returns the messages of those rejected. */
function rejected(prims: readonly PrimFunc[], opts?: VerifyOptions): string[] {
  return prims.map((p) => problem(p, opts)).filter((m): m is string => m !== undefined);
}

describe('verifyPrimFunc accepts the IR Kiln generates', () => {
  it('a conv + relu + pool + matmul + softmax model: the CPU kernels of compile(), their CUDA and WebGPU schedules', async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [1, 3, 16, 16]]],
      outputs: [['y', 'float32', [1, 10]]],
      initializers: { w: randomF32([8, 3, 3, 3], 1), b: randomF32([8], 2), fc: randomF32([8, 10], 3) },
      nodes: [
        { op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['c'], attrs: { pads: [1, 1, 1, 1] } },
        { op: 'Relu', inputs: ['c'], outputs: ['r'] },
        { op: 'GlobalAveragePool', inputs: ['r'], outputs: ['p'] },
        { op: 'Flatten', inputs: ['p'], outputs: ['f'] },
        { op: 'MatMul', inputs: ['f', 'fc'], outputs: ['m'] },
        { op: 'Softmax', inputs: ['m'], outputs: ['y'], attrs: { axis: 1 } },
      ],
    });
    const r = await compile(bytes);
    expect(r.program.kernels.length).toBeGreaterThan(1);
    expect(rejected(r.program.kernels.map((k) => k.prim))).toEqual([]);
    expect(rejected(r.program.kernels.map(gpuPrimFunc), CUDA)).toEqual([]);
    expect(rejected(webgpuPrims(stageGraph(bytes, { target: 'webgpu' }).fused), WEBGPU)).toEqual([]);
  });

  it('CPU kernels index their register tiles by constants only once their vectorized loops are fixed (the lanes rule)', async () => {
    // a finding, kept as a test: the CPU schedule leaves 4-lane 'vectorized' loops over a matmul's local tile,
    // which the WebAssembly backend turns into v128 registers; GPU kernels satisfy the stricter 'constant' rule
    const bytes = buildModel({
      inputs: [['a', 'float32', [16, 32]]],
      outputs: [['y', 'float32', [16, 24]]],
      initializers: { b: randomF32([32, 24], 1) },
      nodes: [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['y'] }],
    });
    const r = await compile(bytes);
    const prims = r.program.kernels.map((k) => k.prim);
    expect(rejected(prims, { localIndex: 'lanes' })).toEqual([]);
    expect(rejected(prims, { localIndex: 'constant' }).join('\n')).toMatch(
      /local buffer matmul_\d+_local at a non-constant index/,
    );
    expect(rejected(r.program.kernels.map(gpuPrimFunc), CUDA)).toEqual([]);
  });

  const models = existsSync('.cache/models')
    ? readdirSync('.cache/models').filter(
        (m) => m.endsWith('_small') && existsSync(join('.cache/models', m, 'model.onnx')),
      )
    : [];
  it.skipIf(models.length === 0)(
    'the model fixtures (.cache/models/*_small): every CPU, CUDA and WebGPU kernel',
    () => {
      for (const m of models) {
        const path = join('.cache/models', m, 'model.onnx'),
          bytes = readFileSync(path);
        const kernels = cpuKernels(stageGraph(bytes, { modelPath: path }).fused);
        expect(rejected(kernels.map((k) => k.prim)), m).toEqual([]);
        expect(
          rejected(cudaPrims(cpuKernels(stageGraph(bytes, { modelPath: path, target: 'cuda' }).fused)), CUDA),
          m,
        ).toEqual([]);
        expect(
          rejected(webgpuPrims(stageGraph(bytes, { modelPath: path, target: 'webgpu' }).fused), WEBGPU),
          m,
        ).toEqual([]);
      }
    },
    120_000,
  );

  const nodeRoot = '.cache/onnx-node';
  it.skipIf(!existsSync(nodeRoot))(
    'every ONNX node test case that compiles: its CPU, CUDA and WebGPU kernels',
    () => {
      let cases = 0,
        compiled = 0,
        prims = 0;
      const bad: string[] = [];
      for (const d of readdirSync(nodeRoot)
        .filter((x) => !x.startsWith('.'))
        .sort()) {
        cases++;
        let sets: [PrimFunc[], VerifyOptions][];
        try {
          const c = nodeCase(join(nodeRoot, d));
          if (!c) continue;
          const kernels = cpuKernels(stageGraph(c.bytes, c.opts).fused);
          sets = [
            [kernels.map((k) => k.prim), {}],
            [cudaPrims(kernels), CUDA],
            [webgpuPrims(stageGraph(c.bytes, { ...c.opts, target: 'webgpu' }).fused), WEBGPU],
          ];
        } catch {
          continue; // a case Kiln does not compile (unsupported op, dtype or attribute)
        }
        compiled++;
        for (const [ps, o] of sets) {
          prims += ps.length;
          for (const m of rejected(ps, o)) bad.push(`${d}: ${m}`);
        }
      }
      console.log(
        `loop-IR verifier over the ONNX node suite: ${cases} cases, ${compiled} compile, ${prims} kernels (CPU + CUDA + WebGPU), ${prims - bad.length} accepted`,
      );
      expect(compiled).toBeGreaterThan(1000);
      expect(bad).toEqual([]);
    },
    300_000,
  );
});

// ---- hand-built kernels
const v = (name: string, dtype: DType = 'int32'): Var => ({ k: 'var', name, dtype });
const c = (value: number, dtype: DType = 'int32') => constant(value, dtype);
const ld = (b: Buffer, i: Expr, dtype: DType = b.dtype): Expr => ({ k: 'load', buf: b, idx: [i], dtype });
const bin = (op: Extract<Expr, { k: 'bin' }>['op'], a: Expr, b: Expr, dtype: DType = a.dtype): Expr => ({
  k: 'bin',
  op,
  a,
  b,
  dtype,
});
const loop = (x: Var, extent: number, body: Stmt, kind: ForKind = 'serial'): Stmt => ({
  k: 'for',
  v: x,
  extent,
  kind,
  body,
});
const st = (b: Buffer, index: Expr, value: Expr): Stmt => ({ k: 'store', buf: b, index, value });

const X = buffer('x', 'float32', 8),
  Y = buffer('y', 'float32', 8);
const kernel = (body: Stmt, more: Partial<PrimFunc> = {}): PrimFunc => ({
  name: 'k',
  inputs: [X],
  outputs: [Y],
  temps: [],
  body,
  ...more,
});
const i = v('i'),
  j = v('j');

/** Before (the printed kernel) -> Expected (the verifier's message, or undefined). */
function check(f: PrimFunc, before: string, expected: string | RegExp | undefined, opts?: VerifyOptions): void {
  expect(printPrimFunc(f)).toBe(before);
  const got = problem(f, opts);
  if (expected === undefined) expect(got).toBeUndefined();
  else if (typeof expected === 'string') expect(got).toBe(expected);
  else expect(got).toMatch(expected);
}

describe('verifyPrimFunc rejects broken IR', () => {
  it('accepts a well-formed kernel', () => {
    const acc = v('acc', 'float32');
    const f = kernel(
      loop(
        i,
        8,
        {
          k: 'decl',
          v: acc,
          init: c(0, 'float32'),
          body: seq([
            loop(j, 8, { k: 'assign', v: acc, value: bin('add', acc, ld(X, j)) }),
            st(Y, i, bin('max', acc, ld(X, i))),
          ]),
        },
        'parallel',
      ),
    );
    check(
      f,
      `kernel k(x: float32[8], y: float32[8]) {
  for i in 0..8 (parallel) {
    let acc: float32 = 0:float32
    for j in 0..8 {
      acc = (acc + x[j])
    }
    y[i] = max(acc, x[i])
  }
}
`,
      undefined,
    );
  });

  it('a variable read outside every loop that binds it', () => {
    check(
      kernel(seq([loop(i, 8, st(Y, i, ld(X, i))), st(Y, i, c(1, 'float32'))])),
      `kernel k(x: float32[8], y: float32[8]) {
  for i in 0..8 {
    y[i] = x[i]
  }
  y[i] = 1:float32
}
`,
      'loop IR of kernel k: variable i is read but not bound\n  expression: i\n  statement: y[i] = 1:float32',
    );
  });

  it('a loop that binds its own variable again, and one that shadows another of the same name', () => {
    expect(problem(kernel(loop(i, 8, loop(i, 2, st(Y, i, ld(X, i))))))).toMatch(
      /variable i is bound again inside its own scope\n {2}statement: for i in 0..2 \{/,
    );
    expect(problem(kernel(loop(i, 8, loop(v('i'), 2, st(Y, i, ld(X, i))))))).toMatch(
      /variable i shadows another variable of the same name/,
    );
  });

  it('assignments: to a loop variable, to an undeclared variable, of another dtype', () => {
    expect(problem(kernel(loop(i, 8, { k: 'assign', v: i, value: c(0) })))).toMatch(/assignment to loop variable i/);
    expect(problem(kernel(loop(i, 8, { k: 'assign', v: v('s', 'float32'), value: c(0, 'float32') })))).toMatch(
      /assignment to s, which no enclosing let declares/,
    );
    const s = v('s', 'float32');
    check(
      kernel({ k: 'decl', v: s, init: c(0, 'float32'), body: { k: 'assign', v: s, value: c(1) } }),
      `kernel k(x: float32[8], y: float32[8]) {
  let s: float32 = 0:float32
  s = 1
}
`,
      'loop IR of kernel k: assignment of a int32 value to s: float32\n  expression: 1\n  statement: s = 1',
    );
    expect(problem(kernel({ k: 'decl', v: s, init: c(0), body: st(Y, c(0), s) }))).toMatch(
      /let s: float32 is initialized with a int32 value/,
    );
  });

  it('operand dtypes that disagree, a comparison that is not bool, bitwise ops on floats', () => {
    check(
      kernel(loop(i, 8, st(Y, i, bin('add', ld(X, i), i)))),
      `kernel k(x: float32[8], y: float32[8]) {
  for i in 0..8 {
    y[i] = (x[i] + i)
  }
}
`,
      'loop IR of kernel k: operands of add have dtypes float32 and int32\n  expression: (x[i] + i)\n  statement: y[i] = (x[i] + i)',
    );
    const lt = bin('lt', i, c(4), 'int32');
    expect(problem(kernel(loop(i, 8, { k: 'if', cond: lt, then: st(Y, i, c(0, 'float32')) })))).toMatch(
      /lt of int32 operands has dtype int32, not bool/,
    );
    expect(problem(kernel(loop(i, 8, st(Y, i, bin('xor', ld(X, i), ld(X, i))))))).toMatch(
      /xor of float32 operands \(bitwise and logical ops take integers or bool\)/,
    );
    expect(problem(kernel(st(Y, c(0), { k: 'un', op: 'isnan', a: ld(X, c(0)), dtype: 'float32' })))).toMatch(
      /isnan of a float32 operand has dtype float32, not bool/,
    );
  });

  it("stores and loads whose dtype is not their buffer's; an if or select condition that is not bool", () => {
    expect(problem(kernel(st(Y, c(0), c(1))))).toMatch(/store of a int32 value to float32 buffer y/);
    expect(problem(kernel(st(Y, c(0), ld(X, c(0), 'int32'))))).toMatch(/load of float32 buffer x has dtype int32/);
    check(
      kernel(loop(i, 8, { k: 'if', cond: i, then: st(Y, i, c(0, 'float32')) })),
      `kernel k(x: float32[8], y: float32[8]) {
  for i in 0..8 {
    if i {
      y[i] = 0:float32
    }
  }
}
`,
      'loop IR of kernel k: if condition has dtype int32, not bool\n  expression: i\n  statement: if i {',
    );
    const sel: Expr = { k: 'select', c: i, a: c(1, 'float32'), b: c(2, 'float32'), dtype: 'float32' };
    expect(problem(kernel(loop(i, 8, st(Y, i, sel))))).toMatch(/select condition has dtype int32, not bool/);
  });

  it('constants that are not values of their dtype', () => {
    expect(problem(kernel(st(Y, { k: 'const', dtype: 'int32', value: 1.5 }, c(0, 'float32'))))).toMatch(
      /constant 1.5 \(number\) is not a value of dtype int32/,
    );
    const Z = buffer('z', 'int64', 1);
    expect(problem(kernel(st(Z, c(0), { k: 'const', dtype: 'int64', value: 3 }), { outputs: [Z] }))).toMatch(
      /constant 3 \(number\) is not a value of dtype int64/,
    );
  });

  it('a reduction left after lowering', () => {
    const r: Expr = { k: 'reduce', op: 'sum', body: ld(X, j), axes: [{ v: j, extent: 8 }], dtype: 'float32' };
    check(
      kernel(st(Y, c(0), r)),
      `kernel k(x: float32[8], y: float32[8]) {
  y[0] = sum(x[j], axes=[j:8])
}
`,
      'loop IR of kernel k: a reduction is left in the loop IR (lowering turns reductions into accumulator loops)\n  expression: sum(x[j], axes=[j:8])\n  statement: y[0] = sum(x[j], axes=[j:8])',
    );
  });

  it('a local buffer indexed by a loop variable: rejected unless the loop is vectorized (lanes) or the target keeps arrays (any)', () => {
    const T = buffer('t', 'float32', 4, 'local');
    const tile = (kind: ForKind) =>
      kernel({
        k: 'alloc',
        buf: T,
        body: seq([loop(i, 4, st(T, i, ld(X, i)), kind), loop(j, 4, st(Y, j, ld(T, j)), 'unrolled')]),
      });
    check(
      tile('serial'),
      `kernel k(x: float32[8], y: float32[8]) {
  alloc t: float32[4] (local)
  for i in 0..4 {
    t[i] = x[i]
  }
  for j in 0..4 (unrolled) {
    y[j] = t[j]
  }
}
`,
      'loop IR of kernel k: store of local buffer t at a non-constant index (after fixing the enclosing vectorized loops); register tiles must be indexed by constants once their loops are unrolled\n  expression: i\n  statement: t[i] = x[i]',
    );
    expect(problem(tile('vectorized'))).toMatch(
      /load of local buffer t at a non-constant index.*\n {2}expression: t\[j\]/,
    );
    expect(problem(tile('serial'), { localIndex: 'any' })).toBeUndefined();
    const lanes = kernel({
      k: 'alloc',
      buf: T,
      body: seq([loop(i, 4, st(T, i, ld(X, i)), 'vectorized'), st(Y, c(0), ld(T, c(3)))]),
    });
    expect(problem(lanes)).toBeUndefined();
    expect(problem(lanes, { localIndex: 'constant' })).toMatch(/store of local buffer t at a non-constant index;/);
  });

  it('buffers that are not in scope, stores to inputs, global allocations, a name used twice', () => {
    const T = buffer('t', 'float32', 4, 'shared'),
      Q = buffer('q', 'float32', 8);
    check(
      kernel(seq([{ k: 'alloc', buf: T, body: st(T, c(0), c(1, 'float32')) }, st(Y, c(0), ld(T, c(0)))])),
      `kernel k(x: float32[8], y: float32[8]) {
  alloc t: float32[4] (shared)
  t[0] = 1:float32
  y[0] = t[0]
}
`,
      'loop IR of kernel k: load of buffer t, which is neither a parameter, a temp nor an allocation in scope\n  expression: t[0]\n  statement: y[0] = t[0]',
    );
    expect(problem(kernel(st(Q, c(0), c(1, 'float32'))))).toMatch(/store to buffer q, which is neither a parameter/);
    expect(problem(kernel(st(X, c(0), c(1, 'float32'))))).toMatch(/store to input buffer x/);
    expect(problem(kernel({ k: 'alloc', buf: Q, body: st(Y, c(0), ld(Q, c(0))) }))).toMatch(
      /allocation of global buffer q inside a kernel/,
    );
    expect(problem(kernel(st(Y, c(0), c(1, 'float32')), { temps: [buffer('y', 'float32', 2)] }))).toMatch(
      /buffer y \(temp\) has the name of another buffer in scope/,
    );
  });

  it('indices outside the buffer: a constant one, one out of range for every iteration; none checked in an empty loop', () => {
    expect(problem(kernel(st(Y, c(8), c(1, 'float32'))))).toMatch(
      /store of y at constant index 8, outside its 8 elements/,
    );
    check(
      kernel(loop(i, 4, st(Y, i, ld(X, bin('add', i, c(8)))))),
      `kernel k(x: float32[8], y: float32[8]) {
  for i in 0..4 {
    y[i] = x[(i + 8)]
  }
}
`,
      'loop IR of kernel k: load of x at an index in [8, 11] for every iteration, outside its 8 elements\n  expression: x[(i + 8)]\n  statement: y[i] = x[(i + 8)]',
    );
    // what lowering makes of Reshape of an empty tensor (test_reshape_allowzero_reordered): never runs
    const E = buffer('e', 'float32', 0),
      F = buffer('f', 'float32', 0);
    expect(
      problem({ name: 'k', inputs: [E], outputs: [F], temps: [], body: loop(i, 3, loop(j, 0, st(F, j, ld(E, c(0))))) }),
    ).toBeUndefined();
  });

  it('loop extents that are not whole numbers >= 0, loop variables that are not int32', () => {
    expect(problem(kernel(loop(i, -1, st(Y, c(0), c(0, 'float32')))))).toMatch(
      /loop extent -1 is not a whole number >= 0/,
    );
    expect(problem(kernel(loop(i, 2.5, st(Y, c(0), c(0, 'float32')))))).toMatch(
      /loop extent 2.5 is not a whole number >= 0/,
    );
    expect(problem(kernel(loop(v('w', 'int64'), 2, st(Y, c(0), c(0, 'float32')))))).toMatch(
      /loop variable w has dtype int64, not int32/,
    );
  });

  describe('GPU launches', () => {
    const bx = v('bx'),
      tx = v('tx'),
      ty = v('ty');
    const gpu = (
      blocks: number,
      threads: number,
      inner: (e: Expr) => Stmt = (e) => st(Y, e, c(0, 'float32')),
    ): PrimFunc =>
      kernel(
        loop(
          bx,
          blocks,
          loop(
            tx,
            threads,
            {
              k: 'if',
              cond: bin('lt', bin('add', bin('mul', bx, c(threads)), tx), c(8), 'bool'),
              then: inner(bin('add', bin('mul', bx, c(threads)), tx)),
            },
            'threadIdx.x',
          ),
          'blockIdx.x',
        ),
      );

    it('threads per block and grid size within the limits', () => {
      expect(problem(gpu(1, 8), CUDA)).toBeUndefined();
      check(
        gpu(1, 2048),
        `kernel k(x: float32[8], y: float32[8]) {
  for bx in 0..1 (blockIdx.x) {
    for tx in 0..2048 (threadIdx.x) {
      if (((bx * 2048) + tx) < 8) {
        y[((bx * 2048) + tx)] = 0:float32
      }
    }
  }
}
`,
        'loop IR of kernel k: launch of 2048x1x1 = 2048 threads per block exceeds the limit of 1024\n  statement: for bx in 0..1 (blockIdx.x) {',
        CUDA,
      );
      expect(problem(gpu(1, 512), WEBGPU)).toMatch(
        /launch of 512x1x1 = 512 threads per block exceeds the limit of 256/,
      );
      expect(problem(gpu(1, 8), { launch: { maxThreadsPerBlock: 64, maxBlockDim: [4, 4, 4] } })).toMatch(
        /threadIdx.x size 8 exceeds the limit of 4/,
      );
      expect(problem(gpu(70000, 1), { launch: { maxGrid: [65535, 65535, 65535] } })).toMatch(
        /blockIdx.x size 70000 exceeds the grid limit of 65535/,
      );
      // nested loops of one tag form one chain: the backends fuse them, and the size is their product
      const chain = kernel(loop(tx, 32, loop(ty, 64, st(Y, c(0), c(0, 'float32')), 'threadIdx.x'), 'threadIdx.x'));
      expect(problem(chain, CUDA)).toMatch(/launch of 2048x1x1 = 2048 threads per block/);
      expect(problem(chain, { launch: { distinctTags: true } })).toMatch(
        /loop ty is bound to threadIdx.x inside another loop bound to threadIdx.x/,
      );
    });

    it('a tag nested in one place and side by side in another; a bound loop below a serial one', () => {
      const mixed = kernel(
        loop(
          tx,
          4,
          seq([
            loop(ty, 2, st(Y, ty, c(0, 'float32')), 'threadIdx.x'),
            loop(j, 8, st(Y, j, c(1, 'float32')), 'threadIdx.x'),
          ]),
          'threadIdx.x',
        ),
      );
      expect(problem(mixed, CUDA)).toMatch(
        /loops bound to threadIdx.x are nested in one place and side by side in another/,
      );
      const late = kernel(loop(i, 2, loop(tx, 4, st(Y, tx, c(0, 'float32')), 'threadIdx.x')));
      expect(problem(late, CUDA)).toBeUndefined();
      expect(problem(late, WEBGPU)).toBeUndefined(); // the launch binder takes bound loops anywhere
    });

    it('barriers: not under a thread-dependent condition; in a GPU kernel, inside a thread loop', () => {
      const S = buffer('s', 'float32', 8, 'shared');
      const divergent = kernel(
        loop(
          tx,
          8,
          {
            k: 'alloc',
            buf: S,
            body: seq([
              st(S, tx, ld(X, tx)),
              {
                k: 'if',
                cond: bin('lt', tx, c(4), 'bool'),
                then: seq([{ k: 'barrier' }, st(Y, tx, ld(S, bin('add', tx, c(4))))]),
              },
            ]),
          },
          'threadIdx.x',
        ),
      );
      check(
        divergent,
        `kernel k(x: float32[8], y: float32[8]) {
  for tx in 0..8 (threadIdx.x) {
    alloc s: float32[8] (shared)
    s[tx] = x[tx]
    if (tx < 4) {
      barrier()
      y[tx] = s[(tx + 4)]
    }
  }
}
`,
        'loop IR of kernel k: barrier under a condition that depends on the thread index ((tx < 4)): threads that skip it deadlock the others\n  statement: barrier()',
      );
      const outside = kernel(seq([loop(tx, 8, st(Y, tx, c(0, 'float32')), 'threadIdx.x'), { k: 'barrier' }]));
      expect(problem(outside)).toBeUndefined(); // the CPU target runs barriers as no-ops
      expect(problem(outside, CUDA)).toMatch(/barrier outside every loop bound to threadIdx/);
    });
  });

  it('names where the IR comes from', () => {
    expect(problem(kernel(st(Y, i, c(0, 'float32'))), { where: 'after unroll-loops' })).toMatch(
      /^loop IR of kernel k \(after unroll-loops\): variable i is read but not bound/,
    );
    expect(printExpr(i)).toBe('i');
  });
});
