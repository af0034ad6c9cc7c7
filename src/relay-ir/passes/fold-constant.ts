// Constant folding: a call whose arguments are all constants is evaluated at compile time, as is a call whose
// value its argument types alone decide (Shape, Size). This is what turns shape subgraphs such as
// Shape -> Gather -> Concat -> Reshape into constants. Evaluation is injected: the compiler runs the operator's
// own compute on the WebAssembly path, so folding and run time share one definition.
import { type Tensor, sizeOf } from '../../runtime/tensor.js';
import { type CallNode, type GExpr, type FuncNode, gconst, isFuncCall, rewrite } from '../expr.js';
import type { OpSpec } from '../op.js';
import { isStatic } from '../types.js';

export type Evaluator = (call: CallNode & { op: OpSpec }, args: readonly Tensor[]) => Tensor;

/** Don't materialize folded values larger than this many elements (they would bloat the artifact). */
const MAX_FOLD_ELEMENTS = 1 << 24;

export function foldExpr(root: GExpr, evaluate: Evaluator): GExpr {
  return rewrite(root, (n) => {
    if (n.kind !== 'call' || isFuncCall(n)) return undefined;
    const op = n.op as OpSpec;
    const argTypes = n.args.map((a) => a.type as CallNode['type']);
    if (op.foldFromType && argTypes.every(isStatic)) {
      const v = op.foldFromType(argTypes, n.attrs);
      if (v) return gconst(v);
    }
    if (!n.args.every((a) => a.kind === 'const') || !isStatic(n.type)) return undefined;
    if (sizeOf(n.type.shape as number[]) > MAX_FOLD_ELEMENTS) return undefined;
    return gconst(
      evaluate(
        n as CallNode & { op: OpSpec },
        n.args.map((a) => (a as Extract<GExpr, { kind: 'const' }>).value),
      ),
    );
  });
}

export function foldConstants(fn: FuncNode, evaluate: Evaluator): FuncNode {
  const body = foldExpr(fn.body, evaluate);
  return body === fn.body ? fn : { ...fn, body };
}
