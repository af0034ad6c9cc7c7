// The GPU launch binder (src/codegen/common/launch.ts), the last loop pass of the WGSL and PTX backends: bound loops
// become lets of the GPU index variables, plus guards and a launch per stage. Written as Before -> Expected on
// printed loop IR, run through each backend's real pass list (verified after every pass: KILN_DEBUG=verify).
import { describe, expect, it } from 'vitest';
import { add, constant, load, mul } from '../src/tensor-expr/expr.js';
import { type PrimFunc, buffer, printPrimFunc, seq } from '../src/schedule/loop-ir.js';
import { runLoopPasses } from '../src/schedule/loop-passes.js';
import { WGSL_LOOP_PASSES, WGSL_LOOP_RUN, emitWgslKernel } from '../src/codegen/wgsl/codegen.js';
import { PTX_LOOP_PASSES, PTX_LOOP_RUN, emitPtxModule } from '../src/codegen/ptx/codegen.js';
import { KilnError } from '../src/runtime/errors.js';
import { func, loop, named, store, text } from './helpers/loop-ir-builders.js';

const webgpu = (f: PrimFunc) => runLoopPasses(f, WGSL_LOOP_PASSES, WGSL_LOOP_RUN);
const cuda = (f: PrimFunc) => runLoopPasses(f, PTX_LOOP_PASSES, PTX_LOOP_RUN);
const error = (run: () => unknown): KilnError => {
  try {
    run();
  } catch (e) {
    expect(e).toBeInstanceOf(KilnError);
    return e as KilnError;
  }
  throw new Error('no error');
};

describe('bind-launch', () => {
  const [b0, b1, t, u] = ['b0', 'b1', 't', 'u'].map((n) => named(n));
  const x = buffer('x', 'float32', 2048),
    y = buffer('y', 'float32', 2048);

  it('a chain of two blockIdx.x loops and a thread loop: row-major linearized ids, one launch', () => {
    const idx = add(mul(add(mul(b0, 8), b1), 64), t);
    const before = func(
      loop(b0, 4, loop(b1, 8, loop(t, 64, store(y, idx, load(x, [idx])), 'threadIdx.x'), 'blockIdx.x'), 'blockIdx.x'),
      [x],
      [y],
    );
    const expected = text(`
kernel k(x: float32[2048], y: float32[2048]) {
  // stage 0: launch grid [32, 1, 1] block [64, 1, 1]
  let b0: int32 = (blockIdx.x / 8)
  let b1: int32 = (blockIdx.x % 8)
  let t: int32 = threadIdx.x
  y[((((b0 * 8) + b1) * 64) + t)] = x[((((b0 * 8) + b1) * 64) + t)]
}`);
    expect(printPrimFunc(webgpu(before))).toBe(expected);
    expect(printPrimFunc(cuda(before))).toBe(expected);
    // the emitters only map the index variables
    const [stage] = emitWgslKernel(before);
    expect(stage.grid).toEqual([32, 1, 1]);
    expect(stage.workgroupSize).toBe(64);
    expect(stage.code).toContain('@workgroup_size(64)');
    expect(stage.code).toContain('let kiln_block = i32(wid.x + wid.y * nwg.x);');
    expect(stage.code).toContain('let kiln_thread = i32(lidx);');
    const ptx = emitPtxModule([before]);
    expect(ptx.kernels[0].launches[0]).toMatchObject({ grid: [32, 1, 1], block: [64, 1, 1] });
    expect(ptx.ptx).toMatch(/mov\.u32 %r\d+, %ctaid\.x/);
    expect(ptx.ptx).toMatch(/mov\.u32 %r\d+, %tid\.x/);
  });

  it('sibling thread loops share the largest extent; the shorter one is guarded', () => {
    const before = func(
      loop(
        b0,
        2,
        seq([
          loop(t, 64, store(y, add(mul(b0, 64), t), constant(1, 'float32')), 'threadIdx.x'),
          loop(u, 16, store(y, add(mul(b0, 64), u), constant(2, 'float32')), 'threadIdx.x'),
        ]),
        'blockIdx.x',
      ),
      [x],
      [y],
    );
    const expected = text(`
kernel k(x: float32[2048], y: float32[2048]) {
  // stage 0: launch grid [2, 1, 1] block [64, 1, 1]
  let b0: int32 = blockIdx.x
  let t: int32 = threadIdx.x
  y[((b0 * 64) + t)] = 1:float32
  let u: int32 = threadIdx.x
  if (u < 16) {
    y[((b0 * 64) + u)] = 2:float32
  }
}`);
    expect(printPrimFunc(cuda(before))).toBe(expected);
    expect(printPrimFunc(webgpu(before))).toBe(expected);
  });

  it('WebGPU: more than 65535 workgroups fold into dispatch y, the surplus guarded off (uniformly)', () => {
    const big = buffer('big', 'float32', 70000 * 4);
    const S = buffer('s', 'float32', 4, 'shared');
    const before = func(
      loop(
        b0,
        70000,
        loop(
          t,
          4,
          {
            k: 'alloc',
            buf: S,
            body: seq([
              store(S, t, constant(1, 'float32')),
              { k: 'barrier' },
              store(big, add(mul(b0, 4), t), load(S, [t])),
            ]),
          },
          'threadIdx.x',
        ),
        'blockIdx.x',
      ),
      [],
      [big],
    );
    expect(printPrimFunc(webgpu(before))).toBe(
      text(`
kernel k(big: float32[280000]) {
  // stage 0: launch grid [65535, 2, 1] block [4, 1, 1] (blockIdx.x = x + y * 65535)
  let b0: int32 = blockIdx.x
  if (b0 < 70000) {
    let t: int32 = threadIdx.x
    alloc s: float32[4] (shared)
    s[t] = 1:float32
    barrier()
    big[((b0 * 4) + t)] = s[t]
  }
}`),
    );
    const [stage] = emitWgslKernel(before);
    expect(stage.grid).toEqual([65535, 2, 1]);
    expect(stage.code).toContain('let kiln_block = i32(wid.x + wid.y * nwg.x);');
    // CUDA's grid x takes them all
    expect(printPrimFunc(cuda(before))).toMatch(/stage 0: launch grid \[70000, 1, 1\] block \[4, 1, 1\]\n {2}let b0/);
  });

  it('a stage over nothing has an empty grid: WGSL drops it, PTX launches grid [0, 0, 0]', () => {
    const before = func(
      seq([
        loop(b0, 0, loop(t, 8, store(y, t, constant(0, 'float32')), 'threadIdx.x'), 'blockIdx.x'),
        loop(b1, 1, loop(u, 8, store(y, u, constant(1, 'float32')), 'threadIdx.x'), 'blockIdx.x'),
      ]),
      [x],
      [y],
    );
    expect(printPrimFunc(webgpu(before))).toBe(
      text(`
kernel k(x: float32[2048], y: float32[2048]) {
  // stage 0: launch grid [0, 0, 0] block [8, 1, 1]
  // stage 1: launch grid [1, 1, 1] block [8, 1, 1]
  let b1: int32 = 0
  let u: int32 = threadIdx.x
  y[u] = 1:float32
}`),
    );
    expect(emitWgslKernel(before)).toHaveLength(1);
    expect(emitPtxModule([before]).kernels[0].launches.map((l) => l.grid)).toEqual([
      [0, 0, 0],
      [1, 1, 1],
    ]);
  });

  it('launches over the target limits: E_UNSUPPORTED on WebGPU, E_INTERNAL on CUDA', () => {
    // the binder itself (with KILN_DEBUG=verify the verifier stops such IR first, as lowered)
    const bindWebgpu = (f: PrimFunc) => WGSL_LOOP_PASSES.at(-1)!.run(f);
    const bindCuda = (f: PrimFunc) => PTX_LOOP_PASSES.at(-1)!.run(f);
    const threads = (n: number) =>
      func(loop(t, n, store(y, constant(0, 'int32'), constant(0, 'float32')), 'threadIdx.x'), [x], [y]);
    const wg = error(() => bindWebgpu(threads(512)));
    expect(wg.code).toBe('E_UNSUPPORTED');
    expect(wg.message).toMatch(/wgsl: kernel k stage 0 has a workgroup of 512x1x1 = 512 threads, over the 256/);
    const cu = error(() => bindCuda(threads(2048)));
    expect(cu.code).toBe('E_INTERNAL');
    expect(cu.message).toMatch(/PTX codegen: kernel k stage 0 has a block of 2048x1x1 = 2048 threads, over the 1024/);
    expect(emitPtxModule([threads(1024)]).kernels[0].launches[0].block).toEqual([1024, 1, 1]);
    // more workgroups than dispatch x * y holds; blockIdx.x past 65535 with blockIdx.y in use
    const grid = (gx: number, gy: number) =>
      func(
        loop(b0, gx, loop(b1, gy, store(y, constant(0, 'int32'), constant(0, 'float32')), 'blockIdx.y'), 'blockIdx.x'),
        [x],
        [y],
      );
    const d1 = error(() => bindWebgpu(grid(65535 * 65536, 1)));
    expect(d1.code).toBe('E_UNSUPPORTED');
    expect(d1.message).toMatch(/needs 4294901760x1x1 blocks, over the dispatch limit of 65535x65535x65535/);
    const d2 = error(() => bindWebgpu(grid(70000, 2)));
    expect(d2.code).toBe('E_UNSUPPORTED');
    expect(d2.message).toMatch(/needs 70000x2x1 blocks, over the dispatch limit/);
    expect(error(() => emitWgslKernel(grid(70000, 2))).message).toMatch(/blockIdx.x size 70000 exceeds the grid limit/);
    expect(emitWgslKernel(grid(300, 2))[0].grid).toEqual([300, 2, 1]);
    expect(emitWgslKernel(grid(300, 2))[0].code).toContain('i32(wid.x)');
  });
});
