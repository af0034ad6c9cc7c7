// Loop-IR passes as named PrimFunc -> PrimFunc steps, run by the same pass manager as the graph passes: lowering
// runs LOWERING_LOOP_PASSES for every target, then each backend runs its own list just before it emits, so
// `kiln inspect --level loop` shows the IR a backend really emits and `--after PASS` any step on the way.
import { type Pass, runPasses } from '../relay-ir/pass-manager.js';
import { type PrimFunc, type Stmt, kernelStages } from './loop-ir.js';
import { type VerifyOptions, verifyPrimFunc } from './verify.js';
import { debugSwitch } from '../util/debug.js';
import { unrollLoops } from './passes/unroll.js';
import { shareSharedLoads } from './passes/share-loads.js';

export type LoopPass = Pass<PrimFunc>;

export interface LoopPassRun {
  /** Where the IR given comes from, for the verifier's message (e.g. 'as lowered'); absent: not verified again. */
  readonly input?: string;
  /** The target's rules for the verifier (its launch limits, how it indexes register tiles). */
  readonly check?: VerifyOptions;
  readonly after?: (pass: string, f: PrimFunc) => void;
}

/** With KILN_DEBUG=verify, verifies `f` (else does nothing). */
export function checkLoopIR(f: PrimFunc, where: string, check?: VerifyOptions): void {
  if (debugSwitch('verify')) verifyPrimFunc(f, { ...check, where });
}

/** Runs loop passes in order; with KILN_DEBUG=verify the IR given and each pass's result are verified. */
export function runLoopPasses(f: PrimFunc, passes: readonly LoopPass[], run: LoopPassRun): PrimFunc {
  if (run.input !== undefined) checkLoopIR(f, run.input, run.check);
  return runPasses(f, passes, (name, g) => {
    checkLoopIR(g, `after ${name}`, run.check);
    run.after?.(name, g);
  });
}

/** A pass rewriting the kernel's body as a whole. */
export const bodyPass = (name: string, rewrite: (body: Stmt) => Stmt): LoopPass => ({
  name,
  run: (f) => ({ ...f, body: rewrite(f.body) }),
});

/**
 * A pass rewriting each stage of the kernel on its own: a stage may become several statements, but the stages
 * stay as many as they were (the runtime calls a WebAssembly kernel phase by phase).
 */
export const stagePass = (name: string, rewrite: (stage: Stmt) => Stmt): LoopPass => ({
  name,
  run: (f) => ({ ...f, body: { k: 'seq', body: kernelStages(f).map((s) => rewrite(s)) } }),
});

/** The first step of every loop pipeline: the scheduled kernel lowered to loops (see lower.ts). */
export const LOWER = 'lower';

export const LOWERING_LOOP_PASSES: readonly LoopPass[] = [
  bodyPass('unroll', (s) => unrollLoops(s)),
  bodyPass('share-shared-loads', shareSharedLoads),
];
