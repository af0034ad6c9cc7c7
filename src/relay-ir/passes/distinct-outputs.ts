// Gives every graph output its own buffer: an output that is a graph input, or the same value as an
// earlier output, becomes an identity call (a copy kernel after fusion).
import { type FuncNode, type GExpr, gcall, gtuple } from '../expr.js';
import { getOp } from '../op.js';

export function distinctOutputs(fn: FuncNode): FuncNode {
  const outs: readonly GExpr[] = fn.body.kind === 'tuple' ? fn.body.fields : [fn.body];
  const seen = new Set<GExpr>();
  let changed = false;
  const fixed = outs.map((o) => {
    if (o.kind === 'var' || seen.has(o)) {
      changed = true;
      return gcall(getOp('identity'), [o], {}, ['(output copy)']);
    }
    seen.add(o);
    return o;
  });
  if (!changed) return fn;
  return { ...fn, body: fn.body.kind === 'tuple' ? gtuple(fixed) : fixed[0] };
}
