// What each worker thread runs: instantiate the kernel module over the shared memory, then wait for jobs posted
// through a small shared control block (no messages per job, only Atomics).
import { mathImports } from './math.js';

/** Control block layout (Int32Array over a SharedArrayBuffer). */
export const CTRL = { SEQ: 0, DONE: 1, KERNEL: 2, PHASE: 3, NTASKS: 4, NARGS: 5, ARGS: 6 } as const;
export const CTRL_INTS = 64;
export const STOP = -1;
/** Reads of the control block before a thread sleeps on it (some tens of microseconds). */
export const SPIN_CHECKS = 20000;

export interface WorkerInit { module: WebAssembly.Module; memory: WebAssembly.Memory; control: SharedArrayBuffer; kernels: string[]; task: number }

export function runWorker(init: WorkerInit, ready: () => void): void {
  const instance = new WebAssembly.Instance(init.module, { env: { memory: init.memory }, math: mathImports() });
  const fns = init.kernels.map((k) => instance.exports[k] as (...a: number[]) => void);
  const ctrl = new Int32Array(init.control);
  let seen = Atomics.load(ctrl, CTRL.SEQ);
  ready();
  for (;;) {
    // spin a little before sleeping: the next phase of a run follows within microseconds, while waking from
    // Atomics.wait takes tens of them, every phase
    let seq = Atomics.load(ctrl, CTRL.SEQ);
    for (let i = 0; seq === seen && i < SPIN_CHECKS; i++) seq = Atomics.load(ctrl, CTRL.SEQ);
    if (seq === seen) { Atomics.wait(ctrl, CTRL.SEQ, seen); seq = Atomics.load(ctrl, CTRL.SEQ); }
    if (seq === seen) continue;
    seen = seq;
    if (Atomics.load(ctrl, CTRL.KERNEL) === STOP) return;
    const ntasks = ctrl[CTRL.NTASKS];
    if (init.task < ntasks) {
      const args = Array.from(ctrl.subarray(CTRL.ARGS, CTRL.ARGS + ctrl[CTRL.NARGS]));
      fns[ctrl[CTRL.KERNEL]](...args, ctrl[CTRL.PHASE], init.task, ntasks);
    }
    Atomics.add(ctrl, CTRL.DONE, 1);
    Atomics.notify(ctrl, CTRL.DONE);
  }
}
