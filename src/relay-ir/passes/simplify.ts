// Dead-code elimination and no-op removal. The graph is a DAG rebuilt from the outputs, so nodes no output
// depends on disappear whenever a pass rebuilds it; this pass also drops calls that compute nothing
// (identity, Dropout at inference, casts to the same type, reshapes/expands to the same shape).
import { type FuncNode, type GExpr, isFuncCall, mapFunc } from '../expr.js';
import type { OpSpec } from '../op.js';

function sameShape(a: GExpr, b: GExpr): boolean {
  const ta = a.type,
    tb = b.type;
  return (
    ta.kind === 'tensor' &&
    tb.kind === 'tensor' &&
    ta.dtype === tb.dtype &&
    ta.shape.length === tb.shape.length &&
    ta.shape.every((d, i) => d === tb.shape[i])
  );
}

const NO_OPS = new Set(['identity', 'cast', 'reshape', 'expand', 'squeeze', 'unsqueeze', 'flatten']);

export function eliminateDeadCode(fn: FuncNode): FuncNode {
  const roots = new Set<GExpr>(fn.body.kind === 'tuple' ? fn.body.fields : [fn.body]);
  return mapFunc(fn, (n, orig) => {
    if (n.kind !== 'call' || isFuncCall(n) || roots.has(orig)) return undefined; // keep output names' producers
    const name = (n.op as OpSpec).name;
    if (NO_OPS.has(name) && sameShape(n, n.args[0])) return n.args[0];
    return undefined;
  });
}
