// Constant folding: a call whose arguments are all constants is evaluated at compile time, as is a call whose
// value its argument types alone decide (Shape, Size). This is what turns shape subgraphs such as
// Shape -> Gather -> Concat -> Reshape into constants. Evaluation is injected: the compiler runs the operator's
// own compute, so folding and run time share one definition.
// One ConstantFolder serves a whole compile: the frontend asks it for the values it needs while it converts nodes,
// then the fold-constants passes fold the graph. It remembers what each node folds to and, for small arguments,
// what each (operator, attributes, argument values) evaluates to, so each value is computed once however often it
// is asked for, whatever graph rebuilds happen in between, and however many layers repeat the same shape arithmetic.
import { type Tensor, sizeOf, tensor } from '../../runtime/tensor.js';
import { type DType, isFloat } from '../../runtime/dtype.js';
import { type CallNode, type ConstNode, type FuncNode, type GExpr, gconst, isFuncCall, rewrite } from '../expr.js';
import type { Attrs, OpSpec } from '../op.js';
import { type Dim, type TensorType, isStatic } from '../types.js';

export type Evaluator = (call: CallNode & { op: OpSpec }, args: readonly Tensor[]) => Tensor;

/** A small integer value whose elements are dims: numbers, or symbolic dims (relay-ir/sym-dim.ts). */
export interface SymbolicValue {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly values: readonly Dim[];
}
/** Evaluates a call on symbolic values: the result's elements, or undefined where they cannot be told. */
export type SymbolicEvaluator = (call: CallNode & { op: OpSpec }, args: readonly SymbolicValue[]) => Dim[] | undefined;

/** Symbolic values are shape arithmetic: vectors of a few dims. */
const MAX_SYMBOLIC_ELEMENTS = 64;

/** Don't materialize folded values larger than this many elements (they would bloat the artifact). */
const MAX_FOLD_ELEMENTS = 1 << 24;
/** Calls whose arguments hold at most this many bytes in all are remembered by value (shape arithmetic is). */
const MAX_VALUE_KEY_BYTES = 1024;

type OpCall = CallNode & { op: OpSpec };

export class ConstantFolder {
  /** What each node folds to: its constant, or null where it has none. */
  private readonly known = new WeakMap<GExpr, ConstNode | null>();
  /** Results by operator, attributes and argument values. */
  private readonly byValue = new Map<string, ConstNode>();

  /** What each node evaluates to symbolically, or null where it has no such value. */
  private readonly symbolicKnown = new WeakMap<GExpr, SymbolicValue | null>();

  constructor(
    private readonly evaluate: Evaluator,
    private readonly evaluateSymbolic?: SymbolicEvaluator,
  ) {}

  /**
   * The value of a small integer `e` whose elements may depend on the model's symbolic dims (a Shape of a tensor
   * with symbolic dims, and the arithmetic on it that a Reshape or Expand reads), or undefined.
   */
  symbolic(e: GExpr): SymbolicValue | undefined {
    const stack: GExpr[] = [e];
    while (stack.length) {
      const n = stack[stack.length - 1];
      if (this.symbolicKnown.has(n)) {
        stack.pop();
        continue;
      }
      const t = n.type;
      const small = t.kind === 'tensor' && isStatic(t) && sizeOf(t.shape as number[]) <= MAX_SYMBOLIC_ELEMENTS;
      if (
        !small ||
        isFloat(t.dtype) ||
        n.kind === 'var' ||
        n.kind === 'tuple' ||
        (n.kind === 'call' && isFuncCall(n))
      ) {
        this.symbolicKnown.set(n, null);
        stack.pop();
        continue;
      }
      const shape = t.shape as number[];
      const c = this.value(n);
      if (c) {
        this.symbolicKnown.set(n, { dtype: t.dtype, shape, values: Array.from(c.value.data, Number) });
        stack.pop();
        continue;
      }
      const op = n as OpCall;
      if (op.op.dimsFromType) {
        const values = op.op.dimsFromType(
          op.args.map((a) => a.type as TensorType),
          op.attrs,
        );
        this.symbolicKnown.set(n, { dtype: t.dtype, shape, values });
        stack.pop();
        continue;
      }
      const unknown = op.args.filter((a) => !this.symbolicKnown.has(a));
      if (unknown.length) {
        stack.push(...unknown);
        continue;
      }
      const args = op.args.map((a) => this.symbolicKnown.get(a));
      const values =
        this.evaluateSymbolic && args.every((a) => a) ? this.evaluateSymbolic(op, args as SymbolicValue[]) : undefined;
      this.symbolicKnown.set(n, values ? { dtype: t.dtype, shape, values } : null);
      stack.pop();
    }
    return this.symbolicKnown.get(e) ?? undefined;
  }

  /**
   * The value of `e` as a constant when it can be computed at compile time, else undefined. Only what the value
   * needs is evaluated: a Shape does not evaluate its argument, and a call with an argument that has no constant
   * value stops there.
   */
  value(e: GExpr): ConstNode | undefined {
    // an explicit stack: a value may depend on a chain as long as the model
    const stack: GExpr[] = [e];
    while (stack.length) {
      const n = stack[stack.length - 1];
      if (this.known.has(n)) {
        stack.pop();
        continue;
      }
      if (n.kind !== 'call' || isFuncCall(n) || (n.op as OpSpec).runTimeOnly) {
        this.known.set(n, n.kind === 'const' ? n : null);
        stack.pop();
        continue;
      }
      const fromType = this.fromType(n as OpCall);
      if (fromType) {
        this.known.set(n, fromType);
        stack.pop();
        continue;
      }
      const unknown: GExpr[] = [];
      let varying = false;
      for (const a of n.args) {
        const v = a.kind === 'const' ? a : this.known.get(a);
        if (v === null || a.kind === 'var' || a.kind === 'tuple') varying = true;
        else if (v === undefined) unknown.push(a);
      }
      if (varying) {
        this.known.set(n, null);
        stack.pop();
      } else if (unknown.length) {
        stack.push(...unknown);
      } else {
        this.known.set(
          n,
          this.fromArgs(
            n as OpCall,
            n.args.map((a) => (a.kind === 'const' ? a : (this.known.get(a) as ConstNode))),
          ) ?? null,
        );
        stack.pop();
      }
    }
    return this.known.get(e) ?? undefined;
  }

  /** `fn` with every call that folds replaced by its constant. */
  fold(fn: FuncNode): FuncNode {
    const body = rewrite(fn.body, (n, orig) => {
      if (n.kind !== 'call' || isFuncCall(n) || (n.op as OpSpec).runTimeOnly) return undefined;
      const known = this.known.get(orig);
      if (known) return known;
      // (a rebuilt call may type more precisely than the original, with constants for arguments)
      if (known === null && n === orig) return undefined;
      const op = n as OpCall;
      const c =
        this.fromType(op) ??
        (n.args.every((a) => a.kind === 'const') ? this.fromArgs(op, n.args as ConstNode[]) : undefined);
      if (n === orig) this.known.set(orig, c ?? null);
      return c;
    });
    return body === fn.body ? fn : { ...fn, body };
  }

  /** The value its argument types alone decide, if the operator has such a rule and the dims are numbers. */
  private fromType(n: OpCall): ConstNode | undefined {
    if (!n.op.dimsFromType || !isStatic(n.type)) return undefined;
    const dims = n.op.dimsFromType(
      n.args.map((a) => a.type as TensorType),
      n.attrs,
    );
    if (!dims.every((d) => typeof d === 'number')) return undefined;
    return gconst(tensor(n.type.dtype, n.type.shape as number[], dims as number[]));
  }

  /** The call evaluated on constant arguments (or remembered), if its result is small enough to keep. */
  private fromArgs(n: OpCall, args: readonly ConstNode[]): ConstNode | undefined {
    if (!isStatic(n.type) || sizeOf(n.type.shape as number[]) > MAX_FOLD_ELEMENTS) return undefined;
    const key = valueKey(n.op.name, n.attrs, args);
    const seen = key === undefined ? undefined : this.byValue.get(key);
    if (seen) return seen;
    const c = gconst(
      this.evaluate(
        n,
        args.map((a) => a.value),
      ),
    );
    if (key !== undefined) this.byValue.set(key, c);
    return c;
  }
}

/** A key naming the call by value, or undefined where its arguments are too large to be worth keying. */
function valueKey(op: string, attrs: Attrs, args: readonly ConstNode[]): string | undefined {
  let bytes = 0;
  for (const a of args) bytes += a.value.data.byteLength;
  if (bytes > MAX_VALUE_KEY_BYTES) return undefined;
  // numbers and strings tagged apart (JSON alone writes NaN as null and -0 as 0)
  const attrText = JSON.stringify(attrs, (_, v) =>
    typeof v === 'number' ? `n${Object.is(v, -0) ? '-0' : v}` : typeof v === 'string' ? `s${v}` : v,
  );
  const parts = args.map((a) => {
    const d = a.value.data;
    return `${a.value.dtype}[${a.value.shape}]${String.fromCharCode(...new Uint8Array(d.buffer, d.byteOffset, d.byteLength))}`;
  });
  return `${op}\u0000${attrText}\u0000${parts.join('\u0000')}`;
}

/** The graph pass with a folder of its own (a compile shares one folder between the frontend and its passes). */
export function foldConstants(fn: FuncNode, evaluate: Evaluator): FuncNode {
  return new ConstantFolder(evaluate).fold(fn);
}
