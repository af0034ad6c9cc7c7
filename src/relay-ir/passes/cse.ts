// Common-subexpression elimination: calls with the same operator, attributes and (already merged) arguments,
// and equal small constants, become one node.
import { type FuncNode, type GExpr, isFuncCall, mapFunc } from '../expr.js';
import type { OpSpec } from '../op.js';

export function eliminateCommonSubexpressions(fn: FuncNode): FuncNode {
  const ids = new Map<GExpr, number>();
  const byKey = new Map<string, GExpr>();
  let next = 0;
  const id = (e: GExpr) => {
    let i = ids.get(e);
    if (i === undefined) {
      i = next++;
      ids.set(e, i);
    }
    return i;
  };
  return mapFunc(fn, (n) => {
    let key: string | undefined;
    if (n.kind === 'call' && !isFuncCall(n)) {
      key = `${(n.op as OpSpec).name}(${n.args.map(id).join(',')})${JSON.stringify(n.attrs)}`;
    } else if (n.kind === 'const' && n.value.data.length <= 64) {
      key = `const:${n.value.dtype}[${n.value.shape}]=${Array.from(n.value.data as ArrayLike<number | bigint>, String).join(',')}`;
    }
    if (key === undefined) return undefined;
    const prev = byKey.get(key);
    if (prev) return prev;
    byKey.set(key, n);
    return undefined;
  });
}
