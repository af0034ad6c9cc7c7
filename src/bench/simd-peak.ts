// The WebAssembly SIMD128 f32 ceiling of this engine and machine, one thread: a loop over ACC independent f32x4
// accumulators, each updated as acc = acc * x + b with f32x4.mul + f32x4.add (or one f32x4.relaxed_madd), so the
// only dependency is each accumulator's own chain. The accumulator is an operand of the multiply on purpose: with
// loop-invariant multiply operands V8 hoists the multiply out of the loop and the "peak" doubles. x = 0.999 keeps
// every accumulator converging to b / (1 - x): no overflow, no denormals. Built with binaryen.
import binaryen from 'binaryen';
import { Worker } from 'node:worker_threads';
import { KilnError } from '../runtime/errors.js';

const ACC = 16;
const UNROLL = 2;

export interface SimdPeak {
  /** GFLOP/s with f32x4.mul + f32x4.add (8 flops per pair). */
  mulAdd: number;
  /** GFLOP/s with f32x4.relaxed_madd (8 flops each); undefined when the engine rejects relaxed SIMD. */
  relaxedMadd?: number;
  relaxedNote?: string;
  accumulators: number;
}

/** Module exporting `peak(iters: i32) -> f32`; each iteration does ACC x UNROLL vector multiply-adds. */
export function peakModule(relaxed: boolean): Uint8Array {
  const m = new binaryen.Module();
  m.setFeatures(binaryen.Features.MVP | binaryen.Features.SIMD128 | (relaxed ? binaryen.Features.RelaxedSIMD : 0));
  const v128 = binaryen.v128,
    i32 = binaryen.i32;
  // params: 0 iters; locals: 1 counter, 2 x (multiplicand), 3 y, 4.. accumulators, then 4+ACC.. per-acc addends
  const X = 2,
    Y = 3,
    A0 = 4,
    B0 = 4 + ACC;
  const body: number[] = [];
  for (let u = 0; u < UNROLL; u++) {
    for (let a = 0; a < ACC; a++) {
      const acc = m.local.get(A0 + a, v128),
        b = m.local.get(B0 + a, v128),
        x = m.local.get(X, v128);
      const upd = relaxed
        ? (
            binaryen as unknown as {
              _BinaryenSIMDTernary(mod: number, op: number, a: number, b: number, c: number): number;
            }
          )._BinaryenSIMDTernary(
            m.ptr,
            (binaryen as unknown as { RelaxedMaddVecF32x4: number }).RelaxedMaddVecF32x4,
            acc,
            x,
            b,
          )
        : m.f32x4.add(m.f32x4.mul(acc, x), b);
      body.push(m.local.set(A0 + a, upd));
    }
  }
  body.push(m.local.set(1, m.i32.sub(m.local.get(1, i32), m.i32.const(1))));
  body.push(m.br('loop', m.i32.gt_s(m.local.get(1, i32), m.i32.const(0))));
  const init: number[] = [
    m.local.set(1, m.local.get(0, i32)),
    m.local.set(X, m.f32x4.splat(m.f32.const(0.999))),
    m.local.set(Y, m.f32x4.splat(m.f32.const(1e-3))),
  ];
  for (let a = 0; a < ACC; a++) {
    init.push(m.local.set(A0 + a, m.f32x4.splat(m.f32.const(a))));
    init.push(m.local.set(B0 + a, m.f32x4.add(m.local.get(Y, v128), m.f32x4.splat(m.f32.const(a * 1e-4)))));
  }
  let sum = m.local.get(A0, v128);
  for (let a = 1; a < ACC; a++) sum = m.f32x4.add(sum, m.local.get(A0 + a, v128));
  const fn = m.block(null, [...init, m.loop('loop', m.block(null, body)), m.f32x4.extract_lane(sum, 0)], binaryen.f32);
  m.addFunction(
    'peak',
    binaryen.createType([i32]),
    binaryen.f32,
    [i32, v128, v128, ...new Array(2 * ACC).fill(v128)],
    fn,
  );
  m.addFunctionExport('peak', 'peak');
  if (!m.validate())
    throw new KilnError('E_INTERNAL', 'simd peak module does not validate', {
      hint: 'please report this with the Node version',
    });
  // No binaryen optimization: it must not fold or reorder the chains away.
  const bytes = m.emitBinary();
  m.dispose();
  return bytes;
}

function measure(bytes: Uint8Array, budgetMs: number): number {
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes as BufferSource));
  const peak = inst.exports.peak as (n: number) => number;
  const flopsPerIter = ACC * UNROLL * 8;
  // calibrate to ~50 ms per sample
  let iters = 100_000;
  for (;;) {
    const t0 = performance.now();
    peak(iters);
    const dt = performance.now() - t0;
    if (dt > 20) {
      iters = Math.max(1, Math.round((iters * 50) / dt));
      break;
    }
    iters *= 4;
  }
  let best = 0;
  const end = performance.now() + budgetMs;
  do {
    const t0 = performance.now();
    peak(iters);
    const dt = performance.now() - t0;
    best = Math.max(best, (iters * flopsPerIter) / (dt * 1e6));
  } while (performance.now() < end);
  return best;
}

/** Best GFLOP/s over ~budgetMs per variant (max, as a ceiling). */
export function measureSimdPeak(budgetMs = 1500): SimdPeak {
  const res: SimdPeak = { mulAdd: measure(peakModule(false), budgetMs), accumulators: ACC };
  let relaxed: Uint8Array | undefined;
  try {
    relaxed = peakModule(true);
    new WebAssembly.Module(relaxed as BufferSource);
  } catch (e) {
    relaxed = undefined;
    res.relaxedNote = `relaxed SIMD unavailable (${(e as Error).message.split('\n')[0]}); Node 20 needs --experimental-wasm-relaxed-simd`;
  }
  if (relaxed) res.relaxedMadd = measure(relaxed, budgetMs);
  return res;
}

/**
 * How much faster `threads` threads run the mul+add peak loop than the calling thread alone, right now: on a shared
 * or virtual machine two vCPUs may be SMT siblings of one core (about 1.35x here) or sit beside busy siblings, so a
 * model's thread speedup is read against this. Worker threads (Node) wait on a shared control block; `measure`
 * runs the loop on the calling thread alone, then on all threads at once.
 */
export class ParallelScaling {
  private readonly ctrl: Int32Array;
  private readonly elapsed: Float64Array;
  private readonly peak: (n: number) => number;
  private iters = 100_000;

  private constructor(
    private readonly workers: Worker[],
    shared: SharedArrayBuffer,
    bytes: Uint8Array,
  ) {
    this.ctrl = new Int32Array(shared, 0, 4);
    this.elapsed = new Float64Array(shared, 16);
    this.peak = new WebAssembly.Instance(new WebAssembly.Module(bytes as BufferSource)).exports.peak as (
      n: number,
    ) => number;
  }

  static async create(threads: number, sampleMs = 5): Promise<ParallelScaling> {
    const bytes = peakModule(false);
    const shared = new SharedArrayBuffer(16 + 8 * threads);
    // control: [0] round, [1] iterations, [2] workers finished; elapsed[i]: ms of thread i (0 = caller)
    const source = `const { workerData: { bytes, shared, index } } = require('node:worker_threads');
      const peak = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.peak;
      const ctrl = new Int32Array(shared, 0, 4), elapsed = new Float64Array(shared, 16);
      for (let seen = 0; ; ) {
        Atomics.wait(ctrl, 0, seen); seen = Atomics.load(ctrl, 0);
        if (seen < 0) break;
        const t0 = performance.now(); peak(ctrl[1]); elapsed[index] = performance.now() - t0;
        Atomics.add(ctrl, 2, 1); Atomics.notify(ctrl, 2);
      }`;
    const workers = await Promise.all(
      Array.from(
        { length: threads - 1 },
        (_, i) =>
          new Promise<Worker>((resolve, reject) => {
            const w = new Worker(source, { eval: true, workerData: { bytes, shared, index: i + 1 } });
            w.once('online', () => resolve(w)).once('error', reject);
          }),
      ),
    );
    const s = new ParallelScaling(workers, shared, bytes);
    for (;;) {
      // calibrate: one sample ~sampleMs on the calling thread
      const t0 = performance.now();
      s.peak(s.iters);
      const dt = performance.now() - t0;
      if (dt > sampleMs / 4) {
        s.iters = Math.max(1, Math.round((s.iters * sampleMs) / dt));
        break;
      }
      s.iters *= 4;
    }
    return s;
  }

  /** Sum over threads of each one's loop rate, over the calling thread's rate alone (threads x when all are full cores). */
  measure(): number {
    const c = this.ctrl,
      n = this.workers.length;
    let t0 = performance.now();
    this.peak(this.iters);
    const solo = performance.now() - t0;
    c[1] = this.iters;
    Atomics.store(c, 2, 0);
    Atomics.add(c, 0, 1);
    Atomics.notify(c, 0);
    t0 = performance.now();
    this.peak(this.iters);
    this.elapsed[0] = performance.now() - t0;
    for (let done = Atomics.load(c, 2); done < n; done = Atomics.load(c, 2)) Atomics.wait(c, 2, done, 100);
    let rate = 0;
    for (let i = 0; i <= n; i++) rate += solo / this.elapsed[i];
    return rate;
  }

  async dispose(): Promise<void> {
    Atomics.store(this.ctrl, 0, -1);
    Atomics.notify(this.ctrl, 0);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
