// Runs graph passes in order; each pass is a function FuncNode -> FuncNode with a name, so a caller can print
// the graph after any of them (kiln inspect, KILN_DEBUG=graph).
import type { FuncNode } from './expr.js';

export interface Pass { readonly name: string; readonly run: (fn: FuncNode) => FuncNode }

export function runPasses(fn: FuncNode, passes: readonly Pass[], after?: (pass: string, fn: FuncNode) => void): FuncNode {
  let cur = fn;
  for (const p of passes) {
    cur = p.run(cur);
    after?.(p.name, cur);
  }
  return cur;
}
