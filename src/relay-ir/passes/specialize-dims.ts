// Binding symbolic dims to sizes: the graph imported once with symbolic dims, made the graph of one size. Every
// type and every dim-valued attribute (a Reshape's shape, a Slice's bounds, a Range's count) gets the symbols'
// values, and each call's type is inferred again, so a dim derived from symbols (`batch*sequence`,
// `min(sequence, 128)`) becomes its number. Constant folding afterwards turns what then depends on sizes alone
// (Shape, Range) into constants.
import { KilnError } from '../../runtime/errors.js';
import { type FuncNode, type GExpr, type VarNode, gcall, gfunc, gtuple, gvar, isFuncCall, postOrder } from '../expr.js';
import type { AttrValue, Attrs, OpSpec } from '../op.js';
import { type Dim, type TensorType, symbolsOf, tensorType } from '../types.js';
import { dimSymbols, substituteDim } from '../sym-dim.js';

export function specializeDims(fn: FuncNode, values: ReadonlyMap<string, number>): FuncNode {
  const missing = fn.params.flatMap((p) => symbolsOf(p.type).flatMap(dimSymbols)).filter((s) => !values.has(s));
  if (missing.length)
    throw new KilnError('E_INPUT', `no size for the symbolic dims ${[...new Set(missing)].join(', ')}`, {
      hint: 'give every symbolic dim of the inputs a size',
    });
  const dim = (d: Dim) => substituteDim(d, values);
  // (string lists that name no symbol, such as an RNN's activations, stay as they are)
  const bindsSymbols = (v: readonly unknown[]) =>
    v.some((d) => typeof d === 'string' && dimSymbols(d).some((s) => values.has(s)));
  const params = new Map<GExpr, VarNode>(
    fn.params.map((p) => {
      const t = p.type as TensorType;
      return [p, gvar(p.name, tensorType(t.shape.map(dim), t.dtype))];
    }),
  );
  const attrs = (a: Attrs): Attrs => {
    let changed = false;
    const out: Record<string, AttrValue> = {};
    for (const [k, v] of Object.entries(a)) {
      if (Array.isArray(v) && bindsSymbols(v)) {
        out[k] = (v as Dim[]).map(dim);
        changed = true;
      } else out[k] = v;
    }
    return changed ? out : a;
  };
  // (not `rewrite`: it would infer a call's type from the new arguments with the old attributes)
  const bound = new Map<GExpr, GExpr>(params);
  for (const n of postOrder(fn.body, (x) => bound.has(x))) {
    if (n.kind === 'call') {
      if (isFuncCall(n))
        throw new KilnError('E_INTERNAL', 'specializeDims: the graph is fused already', {
          hint: 'bind dims before fusion',
        });
      bound.set(
        n,
        gcall(
          n.op as OpSpec,
          n.args.map((a) => bound.get(a)!),
          attrs(n.attrs),
          n.origin,
        ),
      );
    } else if (n.kind === 'tuple') bound.set(n, gtuple(n.fields.map((f) => bound.get(f)!)));
    else bound.set(n, n);
  }
  const body = bound.get(fn.body)!;
  return gfunc([...params.values()], body, fn.name);
}
