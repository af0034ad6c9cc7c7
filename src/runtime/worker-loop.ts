// What each worker thread runs: instantiate the kernel module over the shared memory, then wait for jobs posted
// through a small shared control block (no messages per job, only Atomics).
import { mathImports } from './math.js';

/**
 * Control block layout (Int32Array over a SharedArrayBuffer). NEXT: the next unclaimed chunk of the phase; RUNNING:
 * 1 while the caller runs a model (workers do not sleep between its phases); FAULT: 1 when a worker's chunk trapped
 * in the current phase (the worker still reaches the barrier, the caller reports the trap).
 */
export const CTRL = {
  SEQ: 0,
  DONE: 1,
  KERNEL: 2,
  PHASE: 3,
  NCHUNKS: 4,
  NARGS: 5,
  NEXT: 6,
  RUNNING: 7,
  FAULT: 8,
  ARGS: 9,
} as const;
export const CTRL_INTS = 64;
export const STOP = -1;
/** Reads of the control block before a thread sleeps on it (some tens of microseconds). */
export const SPIN_CHECKS = 20000;

export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  kernels: string[];
}

/**
 * Runs chunks of the current phase until none is left. Threads claim chunks one at a time (not a fixed share
 * each) so that a thread on a slower core (a busy SMT sibling, a little core, a preempted vCPU) takes fewer.
 */
export function runChunks(ctrl: Int32Array, run: (chunk: number, nchunks: number) => void): void {
  const nchunks = ctrl[CTRL.NCHUNKS];
  for (let c = Atomics.add(ctrl, CTRL.NEXT, 1); c < nchunks; c = Atomics.add(ctrl, CTRL.NEXT, 1)) run(c, nchunks);
}

export function runWorker(init: WorkerInit, ready: () => void): void {
  const instance = new WebAssembly.Instance(init.module, { env: { memory: init.memory }, math: mathImports() });
  const fns = init.kernels.map((k) => instance.exports[k] as (...a: number[]) => void);
  const ctrl = new Int32Array(init.control);
  let seen = Atomics.load(ctrl, CTRL.SEQ);
  ready();
  for (;;) {
    // spin before sleeping: the next phase of a run follows within microseconds (or after a serial kernel), while
    // waking from Atomics.wait takes tens of them, every phase: all through a run (RUNNING), a little after it
    let seq = Atomics.load(ctrl, CTRL.SEQ);
    for (let i = 0; seq === seen && (i < SPIN_CHECKS || Atomics.load(ctrl, CTRL.RUNNING)); i++)
      seq = Atomics.load(ctrl, CTRL.SEQ);
    if (seq === seen) {
      Atomics.wait(ctrl, CTRL.SEQ, seen);
      seq = Atomics.load(ctrl, CTRL.SEQ);
    }
    if (seq === seen) continue;
    seen = seq;
    if (Atomics.load(ctrl, CTRL.KERNEL) === STOP) return;
    const fn = fns[ctrl[CTRL.KERNEL]],
      phase = ctrl[CTRL.PHASE];
    const args = Array.from(ctrl.subarray(CTRL.ARGS, CTRL.ARGS + ctrl[CTRL.NARGS]));
    try {
      runChunks(ctrl, (chunk, nchunks) => fn(...args, phase, chunk, nchunks));
    } catch {
      // a trap: claim the remaining chunks so nobody runs them, flag it, and meet the others at the barrier
      Atomics.store(ctrl, CTRL.NEXT, ctrl[CTRL.NCHUNKS]);
      Atomics.store(ctrl, CTRL.FAULT, 1);
    }
    Atomics.add(ctrl, CTRL.DONE, 1);
    Atomics.notify(ctrl, CTRL.DONE);
  }
}
