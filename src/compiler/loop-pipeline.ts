// Which loop-IR passes run for a target, and the IR after each of them (for `kiln inspect --level loop`).
import type { PrimFunc } from '../schedule/loop-ir.js';
import {
  LOWER,
  LOWERING_LOOP_PASSES,
  type LoopPass,
  type LoopPassRun,
  runLoopPasses,
} from '../schedule/loop-passes.js';
import { lower } from '../schedule/lower.js';
import { Schedule } from '../schedule/schedule.js';
import { WASM_LOOP_PASSES, WASM_LOOP_RUN } from '../codegen/wasm/codegen.js';
import { WGSL_LOOP_PASSES, WGSL_LOOP_RUN } from '../codegen/wgsl/codegen.js';
import { PTX_LOOP_PASSES, PTX_LOOP_RUN } from '../codegen/ptx/codegen.js';
import { NATIVE_LOOP_PASSES, NATIVE_LOOP_RUN } from '../codegen/native/llvm-ir.js';
import type { BuiltKernel } from './kernel.js';

export type LoopTarget = 'wasm' | 'webgpu' | 'cuda' | 'native';

/** The passes a target's backend runs on a lowered kernel before it emits. */
export const TARGET_LOOP_PASSES: Record<LoopTarget, readonly LoopPass[]> = {
  wasm: WASM_LOOP_PASSES,
  webgpu: WGSL_LOOP_PASSES,
  cuda: PTX_LOOP_PASSES,
  native: NATIVE_LOOP_PASSES,
};
const TARGET_LOOP_RUN: Record<LoopTarget, LoopPassRun> = {
  wasm: WASM_LOOP_RUN,
  webgpu: WGSL_LOOP_RUN,
  cuda: PTX_LOOP_RUN,
  native: NATIVE_LOOP_RUN,
};

/** A kernel as lowered (its prim) after `target`'s passes: what that backend emits. */
export const targetLoopIR = (lowered: PrimFunc, target: LoopTarget): PrimFunc =>
  runLoopPasses(lowered, TARGET_LOOP_PASSES[target], TARGET_LOOP_RUN[target]);

/** Names of every step of a target's loop pipeline, in order. */
export const loopPassNames = (target: LoopTarget): string[] => [
  LOWER,
  ...[...LOWERING_LOOP_PASSES, ...TARGET_LOOP_PASSES[target]].map((p) => p.name),
];

/**
 * The kernel's loop IR after each step of its pipeline: lowering, the passes every target runs, then the passes
 * `target`'s backend runs before it emits (the last entry is what it emits). Lowered again from the kernel's
 * trace, so loop variables get new numbers.
 */
export function loopIRAfterEachPass(k: BuiltKernel, target: LoopTarget): { pass: string; prim: PrimFunc }[] {
  const steps: { pass: string; prim: PrimFunc }[] = [];
  const record = (pass: string, prim: PrimFunc) => steps.push({ pass, prim });
  const sch = new Schedule([k.output]);
  for (const step of k.trace) sch.apply(step);
  runLoopPasses(lower(k.prim.name, k.inputs, sch, record), TARGET_LOOP_PASSES[target], {
    ...TARGET_LOOP_RUN[target],
    after: record,
  });
  return steps;
}
