// Runs named passes in order, graph passes (FuncNode -> FuncNode) and loop-IR passes (PrimFunc -> PrimFunc) alike,
// so a caller can print the IR after any of them (`compile`'s dump option, `kiln inspect --after PASS`).
import type { FuncNode } from './expr.js';

export interface Pass<IR = FuncNode> {
  readonly name: string;
  readonly run: (ir: IR) => IR;
}

export function runPasses<IR>(ir: IR, passes: readonly Pass<IR>[], after?: (pass: string, ir: IR) => void): IR {
  let cur = ir;
  for (const p of passes) {
    cur = p.run(cur);
    after?.(p.name, cur);
  }
  return cur;
}
