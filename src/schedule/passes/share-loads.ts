// Within a run of consecutive stores to a 'local' (register) tile, a value loaded from a 'shared' buffer that
// several stores use is loaded once into a scalar first: a 4x4 register tile's 16 updates of one reduction step
// read 4 + 4 shared values instead of 32. The run writes no shared buffer, so the hoisted loads see the same data.
import { type Expr, freshVar, mapExpr, printExpr, visitExpr } from '../../tensor-expr/expr.js';
import { type Buffer, type Stmt, mapChildren, seq } from '../loop-ir.js';

const isLocalStore = (s: Stmt) => s.k === 'store' && s.buf.scope === 'local';

export function shareSharedLoads(s: Stmt): Stmt {
  switch (s.k) {
    case 'seq': {
      const body = s.body.map(shareSharedLoads);
      const out: Stmt[] = [];
      for (let i = 0; i < body.length; ) {
        let j = i;
        while (j < body.length && isLocalStore(body[j])) j++;
        if (j - i >= 2) {
          out.push(hoist(body.slice(i, j)));
          i = j;
        } else out.push(body[i++]);
      }
      return seq(out);
    }
    default:
      return mapChildren(s, shareSharedLoads);
  }
}

function hoist(run: Stmt[]): Stmt {
  const count = new Map<string, { e: Expr; n: number }>();
  for (const st of run) {
    if (st.k !== 'store') continue;
    const seen = new Set<string>();
    visitExpr(st.value, (x) => {
      if (x.k !== 'load' || (x.buf as Buffer).scope !== 'shared') return;
      const key = printExpr(x);
      if (seen.has(key)) return;
      seen.add(key);
      const c = count.get(key);
      if (c) c.n++;
      else count.set(key, { e: x, n: 1 });
    });
  }
  const shared = [...count.entries()].filter(([, c]) => c.n >= 2);
  if (!shared.length) return seq(run);
  const vars = new Map(shared.map(([k, c]) => [k, freshVar('sh', c.e.dtype)]));
  const replaced = run.map((st) =>
    st.k === 'store'
      ? {
          ...st,
          value: mapExpr(st.value, (x) =>
            x.k === 'load' && (x.buf as Buffer).scope === 'shared' ? vars.get(printExpr(x)) : undefined,
          ),
        }
      : st,
  );
  let body: Stmt = seq(replaced);
  for (let i = shared.length - 1; i >= 0; i--)
    body = { k: 'decl', v: vars.get(shared[i][0])!, init: shared[i][1].e, body };
  return body;
}
