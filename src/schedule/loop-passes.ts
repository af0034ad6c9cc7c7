// Loop-IR passes as named PrimFunc -> PrimFunc steps, run by the same pass manager as the graph passes: lowering
// runs LOWERING_LOOP_PASSES for every target, then each backend runs its own list just before it emits, so
// `kiln inspect --level loop` shows the IR a backend really emits and `--after PASS` any step on the way.
import type { Pass } from '../relay-ir/pass-manager.js';
import { type PrimFunc, type Stmt, kernelStages } from './loop-ir.js';
import { unrollLoops } from './passes/unroll.js';
import { shareSharedLoads } from './passes/share-loads.js';

export type LoopPass = Pass<PrimFunc>;

/** A pass rewriting the kernel's body as a whole. */
export const bodyPass = (name: string, rewrite: (body: Stmt) => Stmt): LoopPass => ({ name, run: (f) => ({ ...f, body: rewrite(f.body) }) });

/**
 * A pass rewriting each stage of the kernel on its own: a stage may become several statements, but the stages
 * stay as many as they were (the runtime calls a WebAssembly kernel phase by phase).
 */
export const stagePass = (name: string, rewrite: (stage: Stmt) => Stmt): LoopPass =>
  ({ name, run: (f) => ({ ...f, body: { k: 'seq', body: kernelStages(f).map((s) => rewrite(s)) } }) });

/** The first step of every loop pipeline: the scheduled kernel lowered to loops (see lower.ts). */
export const LOWER = 'lower';

export const LOWERING_LOOP_PASSES: readonly LoopPass[] = [
  bodyPass('unroll', (s) => unrollLoops(s)),
  bodyPass('share-shared-loads', shareSharedLoads),
];
