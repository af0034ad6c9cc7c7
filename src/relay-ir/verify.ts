// A verifier for the graph IR: what every graph pass and the kernel builder assume of a function, checked in one
// walk. Nodes infer their types when they are built (gcall), but a pass can still break the graph: rebuild a
// node by spreading it with new arguments and keep the old type, reach a variable of another function, or call a
// fused function with arguments that do not match its parameters. It throws KilnError('E_INTERNAL') naming the
// function, the rule and the offending node; a pass manager runs it after each pass in tests.
//
// Rules:
//  - types: every tensor type has a known dtype and dims that are whole numbers >= 0 or non-empty names; a
//    constant's type is its value's shape and dtype, and its value holds that many elements; a call of an operator
//    has the type its operator's inferType gives for its arguments' types and attributes (the operator is the one
//    registered under its name); a tuple's type is the tuple of its fields' types
//  - scoping: every variable reached from the body is one of the function's parameters (the same node); parameters
//    are distinct, with distinct names
//  - tuples: only the function's result is a tuple (of tensors); no call takes a tuple argument
//  - fused functions: a call of a function calls a primitive function with as many arguments as it has parameters,
//    each of its parameter's type, and has the type of the function's result; each primitive function is verified
//    in turn (its body calls operators only, and uses every parameter); with `fused`, the outer function calls
//    primitive functions only (the graph after fuseOps)
import { bodiesOf, isControlCall, isControlOp } from './control.js';
import { KilnError } from '../runtime/errors.js';
import { DTYPES } from '../runtime/dtype.js';
import { type CallNode, type FuncNode, type GExpr, isFuncCall, opName, postOrder } from './expr.js';
import { type AttrValue, type OpSpec, getOp } from './op.js';
import { type TensorType, type Type, numel, printType } from './types.js';

export interface GraphVerifyOptions {
  /** Named in the message: where the graph comes from (e.g. 'after fold-constants'). */
  readonly where?: string;
  /** The outer function calls fused (primitive) functions only: the graph after operator fusion. */
  readonly fused?: boolean;
}

const attrText = (v: AttrValue): string => (Array.isArray(v) ? `[${v.join(',')}]` : JSON.stringify(v));

/** One line for a node: what it is, its arguments' types, its own type. */
export function describeNode(e: GExpr): string {
  switch (e.kind) {
    case 'var':
      return `%${e.name}: ${printType(e.type)}`;
    case 'const':
      return `constant ${printType(e.type)}`;
    case 'tuple':
      return `(${e.fields.map((f) => printType(f.type)).join(', ')}) : ${printType(e.type)}`;
    case 'call': {
      const attrs = Object.entries(e.attrs).map(([k, v]) => `${k}=${attrText(v)}`);
      const origin = e.origin.length ? `  # ${e.origin.slice(0, 4).join(', ')}` : '';
      return `${opName(e)}(${[...e.args.map((a) => printType(a.type)), ...attrs].join(', ')}) : ${printType(e.type)}${origin}`;
    }
  }
}

function sameType(a: Type, b: Type): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'tuple') {
    const bt = b as Extract<Type, { kind: 'tuple' }>;
    return a.fields.length === bt.fields.length && a.fields.every((f, i) => sameType(f, bt.fields[i]));
  }
  const bt = b as TensorType;
  return a.dtype === bt.dtype && a.shape.length === bt.shape.length && a.shape.every((d, i) => d === bt.shape[i]);
}

/** Checks `fn` and the primitive functions it calls; throws KilnError('E_INTERNAL') at the first violation. */
export function verifyFunc(fn: FuncNode, opts: GraphVerifyOptions = {}): void {
  const verified = new Set<FuncNode>();
  verifyOne(fn, opts, verified, undefined);
}

function verifyOne(
  fn: FuncNode,
  opts: GraphVerifyOptions,
  verified: Set<FuncNode>,
  caller: FuncNode | undefined,
): void {
  verified.add(fn);
  const where = opts.where ? ` (${opts.where})` : '';
  const inside = caller ? `, called from ${caller.name}` : '';
  const fail = (problem: string, node?: GExpr): never => {
    const lines = [`graph IR of function ${fn.name}${inside}${where}: ${problem}`];
    if (node) lines.push(`  node: ${describeNode(node)}`);
    throw new KilnError('E_INTERNAL', lines.join('\n'), { node: node?.kind === 'call' ? node.origin[0] : undefined });
  };
  const checkTensorType = (t: Type, node: GExpr, what: string): void => {
    if (t.kind === 'tuple') {
      fail(`${what} is a tuple; only a function's result may be one`, node);
      return;
    }
    if (!DTYPES.includes(t.dtype)) fail(`${what} has unknown dtype ${t.dtype}`, node);
    for (const d of t.shape) {
      const ok = typeof d === 'number' ? Number.isSafeInteger(d) && d >= 0 : typeof d === 'string' && d.length > 0;
      if (!ok) fail(`${what} has dim ${JSON.stringify(d)}; dims are whole numbers >= 0 or names`, node);
    }
  };

  if (!fn.name) fail('the function has no name');
  const params = new Set(fn.params);
  const names = new Set<string>();
  for (const p of fn.params) {
    if (p.kind !== 'var')
      fail(`parameter ${String((p as { name?: string }).name)} is a ${(p as GExpr).kind}, not a variable`, p);
    checkTensorType(p.type, p, `parameter %${p.name}`);
    if (names.has(p.name)) fail(`two parameters are named %${p.name}`, p);
    names.add(p.name);
  }
  if (params.size !== fn.params.length) fail('a parameter is listed twice');

  const nodes = postOrder(fn.body);
  const used = new Set<GExpr>();
  for (const n of nodes) {
    switch (n.kind) {
      case 'var':
        if (!params.has(n)) {
          fail(
            names.has(n.name)
              ? `variable %${n.name} is not this function's parameter of that name (a node of another graph)`
              : `variable %${n.name} is not a parameter of the function`,
            n,
          );
        }
        break;
      case 'const': {
        checkTensorType(n.type, n, 'constant');
        const v = n.value;
        if (
          v.dtype !== n.type.dtype ||
          v.shape.length !== n.type.shape.length ||
          v.shape.some((d, i) => d !== n.type.shape[i])
        ) {
          fail(`constant's type ${printType(n.type)} is not its value's ${v.dtype}[${v.shape.join(',')}]`, n);
        }
        if (v.data.length !== numel(v.shape))
          fail(`constant of shape [${v.shape.join(',')}] holds ${v.data.length} elements`, n);
        break;
      }
      case 'tuple': {
        if (n !== fn.body) fail("a tuple that is not the function's result", n);
        for (const f of n.fields) if (f.type.kind === 'tuple') fail('a tuple inside a tuple', n);
        if (n.type.kind !== 'tuple' || !sameType(n.type, { kind: 'tuple', fields: n.fields.map((f) => f.type) }))
          fail("tuple type is not the tuple of its fields' types", n);
        break;
      }
      case 'call': {
        n.args.forEach((a, i) => {
          used.add(a);
          checkTensorType(a.type, n, `argument ${i}`);
        });
        checkTensorType(n.type, n, 'result');
        if (isFuncCall(n)) checkFuncCall(n, fn, opts, verified, fail);
        else checkOpCall(n, fn, opts, fail);
        // a control region's bodies are functions of their own
        if (isControlCall(n))
          for (const b of bodiesOf(n.op.control)) if (!verified.has(b)) verifyOne(b, opts, verified, fn);
        break;
      }
    }
  }
  if (fn.primitive)
    for (const p of fn.params)
      if (!used.has(p) && p !== fn.body) fail(`parameter %${p.name} of the primitive function is never used`, p);
}

function checkOpCall(n: CallNode, fn: FuncNode, opts: GraphVerifyOptions, fail: (p: string, n?: GExpr) => never): void {
  const op = n.op as OpSpec;
  if (opts.fused && !fn.primitive) fail(`call of operator ${op.name} outside a fused function`, n);
  let registered: OpSpec | undefined;
  try {
    registered = getOp(op.name);
  } catch {
    registered = undefined;
  }
  if (registered !== op && !isControlOp(op)) fail(`operator ${op.name} is not the registered operator of that name`, n);
  let want: TensorType;
  try {
    want = op.inferType(
      n.args.map((a) => a.type as TensorType),
      n.attrs,
    );
  } catch (e) {
    fail(`the type rule of ${op.name} rejects the arguments: ${(e as Error).message}`, n);
    return;
  }
  if (!sameType(want, n.type))
    fail(`call has type ${printType(n.type)} but ${op.name}'s type rule gives ${printType(want)}`, n);
}

function checkFuncCall(
  n: CallNode & { op: FuncNode },
  fn: FuncNode,
  opts: GraphVerifyOptions,
  verified: Set<FuncNode>,
  fail: (p: string, n?: GExpr) => never,
): void {
  const callee = n.op;
  if (fn.primitive) fail(`primitive function calls function ${callee.name}; fused functions call operators only`, n);
  if (!callee.primitive)
    fail(`call of function ${callee.name}, which is not primitive (only fused kernels are called)`, n);
  if (callee === fn) fail(`function ${fn.name} calls itself`, n);
  if (n.args.length !== callee.params.length)
    fail(`call of ${callee.name} passes ${n.args.length} arguments for ${callee.params.length} parameters`, n);
  n.args.forEach((a, i) => {
    const p = callee.params[i];
    if (!sameType(a.type, p.type))
      fail(
        `argument ${i} of the call of ${callee.name} is ${printType(a.type)}, its parameter %${p.name} is ${printType(p.type)}`,
        n,
      );
  });
  if (!sameType(n.type, callee.body.type))
    fail(`call has type ${printType(n.type)} but ${callee.name} returns ${printType(callee.body.type)}`, n);
  if (Object.keys(n.attrs).length) fail(`call of ${callee.name} has attributes`, n);
  if (!verified.has(callee)) verifyOne(callee, opts, verified, fn);
}
