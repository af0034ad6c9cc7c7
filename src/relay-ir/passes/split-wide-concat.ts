// A concatenation of more inputs than one kernel may bind (WebGPU: maxStorageBuffersPerShaderStage, output
// included) becomes a concatenation of concatenations along the same axis, each of at most `maxInputs` inputs.
// Concatenation is associative along one axis, so the result is the same values; the inner ones are kernels of
// their own (fusion keeps every group within the same limit).
import { type CallNode, type FuncNode, type GExpr, gcall, isFuncCall, mapFunc } from '../expr.js';
import type { OpSpec } from '../op.js';

/** `count(e)`: the bindings one input takes (several where a large value is bound as windows). */
export function splitWideConcat(fn: FuncNode, maxInputs: number, count: (e: GExpr) => number = () => 1): FuncNode {
  return mapFunc(fn, (n) => {
    if (n.kind !== 'call' || isFuncCall(n) || (n.op as OpSpec).name !== 'concat') return undefined;
    const call = n as CallNode;
    const width = (xs: readonly GExpr[]) => [...new Set(xs)].reduce((s, x) => s + count(x), 0);
    if (width(call.args) <= maxInputs) return undefined;
    let level: GExpr[] = [...call.args];
    while (width(level) > maxInputs) {
      const next: GExpr[] = [];
      let chunk: GExpr[] = [];
      const flush = () => {
        next.push(chunk.length === 1 ? chunk[0] : gcall(call.op as OpSpec, chunk, call.attrs, call.origin));
        chunk = [];
      };
      for (const x of level) {
        if (chunk.length && width([...chunk, x]) > maxInputs) flush();
        chunk.push(x);
      }
      if (chunk.length) flush();
      if (next.length === level.length) break; // every input alone exceeds the limit: nothing to group
      level = next;
    }
    return gcall(call.op as OpSpec, level, call.attrs, call.origin);
  });
}
