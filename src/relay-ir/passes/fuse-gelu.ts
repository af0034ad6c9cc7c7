// Recognizes GELU written out with Erf (how PyTorch and Hugging Face export it before opset 20's Gelu):
//   0.5 * x * (1 + erf(x / sqrt(2)))   in any order of its multiplications and additions, x / sqrt(2) also as
//   x * (1 / sqrt(2)),
// and replaces it with one `gelu` call (ONNX Gelu, approximate 'none'), as ONNX Runtime's GeluFusion does: one
// operator in the printed graph and in kernel names, and its scaling by 1/sqrt(2) is a multiplication, not a
// division. Only float32 patterns (the constants must be float32 scalars).
import {
  type CallNode,
  type ConstNode,
  type FuncNode,
  type GExpr,
  argumentUses,
  gcall,
  mapFunc,
  primitiveOp as opOf,
} from '../expr.js';
import { getOp } from '../op.js';

/** The value of a float32 constant holding one element, else undefined. */
function scalar(e: GExpr): number | undefined {
  if (e.kind !== 'const') return undefined;
  const v = (e as ConstNode).value;
  return v.dtype === 'float32' && v.data.length === 1 ? Number(v.data[0]) : undefined;
}
const near = (v: number | undefined, want: number) => v !== undefined && Math.abs(v - want) <= 1e-6 * want;

/** The other operand of a binary `op` call whose one operand is the scalar `want` (divisor only, for div). */
function withConst(n: GExpr, op: string, want: number): GExpr | undefined {
  if (opOf(n) !== op) return undefined;
  const [a, b] = (n as CallNode).args;
  if (near(scalar(b), want)) return a;
  if (op !== 'div' && near(scalar(a), want)) return b;
  return undefined;
}

export function fuseGelu(fn: FuncNode): FuncNode {
  const uses = argumentUses(fn);
  for (const o of fn.body.kind === 'tuple' ? fn.body.fields : [fn.body]) uses.set(o, (uses.get(o) ?? 0) + 1); // outputs
  const once = (n: GExpr) => (uses.get(n) ?? 0) === 1;
  // 1 + erf(x / sqrt 2) -> x, or undefined
  const onePlusErf = (n: GExpr): { x: GExpr; nodes: GExpr[] } | undefined => {
    const e = withConst(n, 'add', 1);
    if (!e || opOf(e) !== 'erf' || !once(e) || !once(n)) return undefined;
    const scaled = (e as CallNode).args[0];
    const x = withConst(scaled, 'div', Math.SQRT2) ?? withConst(scaled, 'mul', Math.SQRT1_2);
    return x && once(scaled) ? { x, nodes: [scaled, e, n] } : undefined;
  };
  return mapFunc(fn, (n, orig) => {
    if (opOf(orig) !== 'mul') return undefined;
    const [p, q] = (orig as CallNode).args;
    let match: { x: GExpr; nodes: GExpr[] } | undefined;
    // (x * (1 + erf)) * 0.5, or 0.5 * (...)
    const half = withConst(orig, 'mul', 0.5);
    if (half && opOf(half) === 'mul' && once(half)) {
      const [a, b] = (half as CallNode).args;
      for (const [x, t] of [
        [a, b],
        [b, a],
      ]) {
        const m = onePlusErf(t);
        if (m && m.x === x) {
          match = { x, nodes: [...m.nodes, half] };
          break;
        }
      }
    }
    // (x * 0.5) * (1 + erf), either side
    for (const [h, t] of [
      [p, q],
      [q, p],
    ]) {
      if (match) break;
      const x = withConst(h, 'mul', 0.5),
        m = onePlusErf(t);
      if (x && m && m.x === x && once(h)) match = { x, nodes: [h, ...m.nodes] };
    }
    if (!match) return undefined;
    const origin = [...match.nodes, orig].flatMap((c) => (c as CallNode).origin);
    // (origins from the input side) matched on the original graph (use counts); x as rewritten so far, found at the same place under `n`
    const x = rebuiltOperand(n, orig, match.x);
    return x ? gcall(getOp('gelu'), [x], { approximate: 'none' }, origin) : undefined;
  });
}

/** The rebuilt counterpart of `x`, an operand somewhere inside `orig`, found at the same position under `rebuilt`. */
function rebuiltOperand(rebuilt: GExpr, orig: GExpr, x: GExpr): GExpr | undefined {
  if (orig === x) return rebuilt;
  if (orig.kind !== 'call' || rebuilt.kind !== 'call') return undefined;
  const o = orig as CallNode,
    r = rebuilt as CallNode;
  for (let i = 0; i < o.args.length; i++) {
    const found = rebuiltOperand(r.args[i], o.args[i], x);
    if (found) return found;
  }
  return undefined;
}
