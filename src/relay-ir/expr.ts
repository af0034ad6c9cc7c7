// Immutable graph IR: variables, constants, operator calls, tuples and functions. Each node's type is
// inferred when it is built, so a malformed graph fails at the node that makes it so.
import type { Tensor } from '../runtime/tensor.js';
import { KilnError } from '../runtime/errors.js';
import type { Attrs, OpSpec } from './op.js';
import { type TensorType, type Type, tensorType, tupleType, asTensor } from './types.js';

export interface VarNode {
  readonly kind: 'var';
  readonly name: string;
  readonly type: TensorType;
}
export interface ConstNode {
  readonly kind: 'const';
  readonly value: Tensor;
  readonly type: TensorType;
}
export interface CallNode {
  readonly kind: 'call';
  readonly op: OpSpec | FuncNode;
  readonly args: readonly GExpr[];
  readonly attrs: Attrs;
  readonly type: TensorType;
  /** ONNX node names this call came from (for error messages, inspect and the profiler). */
  readonly origin: readonly string[];
}
export interface TupleNode {
  readonly kind: 'tuple';
  readonly fields: readonly GExpr[];
  readonly type: Type;
}
export interface FuncNode {
  readonly kind: 'func';
  readonly params: readonly VarNode[];
  readonly body: GExpr;
  /** A primitive function is one fused kernel. */
  readonly primitive: boolean;
  readonly name: string;
}
export type GExpr = VarNode | ConstNode | CallNode | TupleNode;

export const gvar = (name: string, type: TensorType): VarNode => ({ kind: 'var', name, type });
export const gconst = (value: Tensor): ConstNode => ({
  kind: 'const',
  value,
  type: tensorType(value.shape, value.dtype),
});
export const gtuple = (fields: readonly GExpr[]): TupleNode => ({
  kind: 'tuple',
  fields,
  type: tupleType(fields.map((f) => f.type)),
});
export const gfunc = (params: readonly VarNode[], body: GExpr, name = 'main', primitive = false): FuncNode => ({
  kind: 'func',
  params,
  body,
  primitive,
  name,
});

export function gcall(op: OpSpec, args: readonly GExpr[], attrs: Attrs = {}, origin: readonly string[] = []): CallNode {
  const argTypes = args.map((a, i) => asTensor(a.type, `${op.name} argument ${i}`));
  let type: TensorType;
  try {
    type = op.inferType(argTypes, attrs);
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw new KilnError('E_SHAPE', `${op.name}: ${(e as Error).message}`, { node: origin[0] });
  }
  // a safety net under the type rules: attribute values no rule checks must not make a NaN, fractional or negative dim
  if (type.shape.some((d) => typeof d === 'number' && !(Number.isSafeInteger(d) && d >= 0))) {
    const attrText = JSON.stringify(attrs);
    throw new KilnError(
      'E_SHAPE',
      `${op.name}: the arguments [${argTypes.map((t) => `[${t.shape}]`).join(', ')}] and attributes ${attrText.length > 200 ? `${attrText.slice(0, 200)}...` : attrText} give output shape [${type.shape}]; every dim must be a whole number >= 0`,
      { hint: 'an attribute or a shape input of this node is out of range' },
    );
  }
  return { kind: 'call', op, args, attrs, type, origin };
}

/** Calls a primitive (fused) function with the given arguments. */
export function gcallFunc(fn: FuncNode, args: readonly GExpr[], origin: readonly string[]): CallNode {
  return { kind: 'call', op: fn, args, attrs: {}, type: asTensor(fn.body.type, fn.name), origin };
}

export const isFuncCall = (c: CallNode): c is CallNode & { op: FuncNode } => (c.op as FuncNode).kind === 'func';
export const opName = (c: CallNode): string => (isFuncCall(c) ? c.op.name : (c.op as OpSpec).name);
/** The operator of a call of a primitive operator; undefined for anything else (a fused function's call, a constant...). */
export const primitiveOp = (e: GExpr): string | undefined =>
  e.kind === 'call' && !isFuncCall(e) ? (e.op as OpSpec).name : undefined;

/** How many calls take each node as an argument (a pass rewrites a node in place only where one call reads it). */
export function argumentUses(fn: FuncNode): Map<GExpr, number> {
  const uses = new Map<GExpr, number>();
  for (const n of postOrder(fn.body))
    if (n.kind === 'call') for (const a of n.args) uses.set(a, (uses.get(a) ?? 0) + 1);
  return uses;
}

/**
 * Nodes reachable from `root`, producers before consumers (each once). Nodes for which `skip` holds are left out
 * and not walked into (the part of a graph an earlier walk already handled).
 */
export function postOrder(root: GExpr, skip?: (n: GExpr) => boolean): GExpr[] {
  const out: GExpr[] = [];
  const seen = new Set<GExpr>();
  const stack: [GExpr, boolean][] = [[root, false]];
  while (stack.length) {
    const [n, done] = stack.pop()!;
    if (done) {
      out.push(n);
      continue;
    }
    if (seen.has(n) || skip?.(n)) continue;
    seen.add(n);
    stack.push([n, true]);
    const kids = n.kind === 'call' ? n.args : n.kind === 'tuple' ? n.fields : [];
    for (let i = kids.length - 1; i >= 0; i--) if (!seen.has(kids[i])) stack.push([kids[i], false]);
  }
  return out;
}

/**
 * Rebuilds the graph bottom-up. `f` receives a node whose children are already rewritten (`rebuilt`) and returns
 * its replacement, or undefined to keep it (rebuilt only if a child changed). `memo` maps original nodes to their
 * rewrites; passing the same one to later calls with the same `f` rewrites each node once across them all.
 */
export function rewrite(
  root: GExpr,
  f: (rebuilt: GExpr, original: GExpr) => GExpr | undefined,
  memo: Map<GExpr, GExpr> = new Map(),
): GExpr {
  for (const n of postOrder(root, (x) => memo.has(x))) {
    let r: GExpr = n;
    if (n.kind === 'call') {
      const args = n.args.map((a) => memo.get(a)!);
      if (args.some((a, i) => a !== n.args[i])) {
        r = isFuncCall(n) ? gcallFunc(n.op, args, n.origin) : gcall(n.op as OpSpec, args, n.attrs, n.origin);
      }
    } else if (n.kind === 'tuple') {
      const fields = n.fields.map((a) => memo.get(a)!);
      if (fields.some((a, i) => a !== n.fields[i])) r = gtuple(fields);
    }
    memo.set(n, f(r, n) ?? r);
  }
  return memo.get(root)!;
}

export function mapFunc(fn: FuncNode, f: (rebuilt: GExpr, original: GExpr) => GExpr | undefined): FuncNode {
  const body = rewrite(fn.body, f);
  return body === fn.body ? fn : { ...fn, body };
}
