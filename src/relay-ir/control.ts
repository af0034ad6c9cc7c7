// Control flow in the graph IR: If, Loop and Scan as calls of a control operator that holds its bodies as functions
// of the graph IR. A body's params are its formal inputs, then the outer-scope values it uses (captures), which the
// call passes as explicit arguments. The call's value is one of the region's outputs (attribute `output`), as for
// every multi-output operator; all calls of one region share its OpSpec object and its `region` attribute.
import { KilnError } from '../runtime/errors.js';
import { type CallNode, type FuncNode, type GExpr, gcall, isFuncCall, rewrite } from './expr.js';
import { type Attrs, OpPattern, type OpSpec } from './op.js';
import type { TensorType } from './types.js';

/**
 * If: args [cond, ...then captures, ...else captures]; both branches take only their captures and return the
 * outputs.
 */
export interface IfRegion {
  readonly kind: 'if';
  readonly then: FuncNode;
  readonly else: FuncNode;
  readonly outputs: readonly TensorType[];
}

/**
 * Loop and Scan, one form: args [trip count if `trip` is 'arg', cond if `cond` is 'arg', ...carried initial values,
 * ...scan inputs (scanned along axis 0), ...captures]. The body's params: [iteration number (int64 scalar) if
 * `iterParam`, cond (bool scalar) if `condParam`, ...carried, ...scan input slices, ...captures]; its outputs:
 * [cond if `condOut`, ...next carried, ...scan output slices]. The region's outputs: final carried values, then
 * scan outputs stacked along axis 0 (`trip` slices). `reverse` lists the scan inputs / outputs walked from the end.
 */
export interface LoopRegion {
  readonly kind: 'loop';
  readonly body: FuncNode;
  /** The number of iterations: known at compile time, or read from the first argument (int64 scalar) at run time. */
  readonly trip: number | 'arg';
  /**
   * The condition: 'arg', an argument read before the first iteration; 'true', true at first; in both the body's
   * condition output decides whether the next iteration runs. 'none': no condition (the body's is ignored).
   */
  readonly cond: 'arg' | 'true' | 'none';
  readonly iterParam: boolean;
  readonly condParam: boolean;
  readonly condOut: boolean;
  readonly carried: number;
  readonly scanIn: number;
  readonly scanOut: number;
  readonly reverseIn: readonly boolean[];
  readonly reverseOut: readonly boolean[];
  readonly outputs: readonly TensorType[];
}

export type ControlRegion = IfRegion | LoopRegion;

export interface ControlOpSpec extends OpSpec {
  readonly control: ControlRegion;
}

export const isControlOp = (op: OpSpec | FuncNode): op is ControlOpSpec => 'control' in op;

export const isControlCall = (e: GExpr): e is CallNode & { op: ControlOpSpec } =>
  e.kind === 'call' && !isFuncCall(e) && isControlOp(e.op);

/** The bodies of a region, in order (If: then, else). */
export const bodiesOf = (r: ControlRegion): FuncNode[] => (r.kind === 'if' ? [r.then, r.else] : [r.body]);

/** The region with its bodies replaced, in the order bodiesOf gives them. */
export function withBodies(r: ControlRegion, bodies: readonly FuncNode[]): ControlRegion {
  return r.kind === 'if' ? { ...r, then: bodies[0], else: bodies[1] } : { ...r, body: bodies[0] };
}

/** The operator of one region: its calls' types are the region's outputs by index. */
export function controlOp(region: ControlRegion): ControlOpSpec {
  return {
    name: region.kind,
    pattern: OpPattern.Opaque,
    control: region,
    inferType(_args: readonly TensorType[], attrs: Attrs): TensorType {
      const t = region.outputs[Number(attrs.output)];
      if (!t) throw new KilnError('E_INTERNAL', `${region.kind}: no output ${attrs.output}`);
      return t;
    },
  };
}

/** Calls for every output of a region: `name` (unique in the model) keeps apart regions that CSE would merge. */
export function controlCalls(
  region: ControlRegion,
  args: readonly GExpr[],
  name: string,
  origin: readonly string[],
): CallNode[] {
  const op = controlOp(region);
  const bodyNames = Object.fromEntries(bodiesOf(region).map((b, i) => [`body${i}`, b.name]));
  return region.outputs.map((_, k) => gcall(op, args, { region: name, output: k, ...bodyNames }, origin));
}

/** Every control call reachable from `fn`'s body (not inside its regions). */
export function controlCallsIn(fn: FuncNode): (CallNode & { op: ControlOpSpec })[] {
  const out: (CallNode & { op: ControlOpSpec })[] = [];
  rewrite(fn.body, (n) => {
    if (isControlCall(n)) out.push(n);
    return undefined;
  });
  return out;
}

/** Whether `fn` holds control flow, directly or inside a fused kernel's function. */
export function hasControlFlow(fn: FuncNode): boolean {
  let found = false;
  rewrite(fn.body, (n) => {
    if (n.kind === 'call' && (isControlCall(n) || (isFuncCall(n) && hasControlFlow(n.op)))) found = true;
    return undefined;
  });
  return found;
}

/**
 * `fn` with every region's bodies mapped by `f` (bodies of the regions inside them first: `f` sees a body whose
 * own regions are already mapped; with `nested` false only the regions of `fn` itself, `f` handling the rest).
 * Calls of one region keep sharing one (new) OpSpec.
 */
export function mapBodies(fn: FuncNode, f: (body: FuncNode) => FuncNode, nested = true): FuncNode {
  const specs = new Map<ControlOpSpec, ControlOpSpec>();
  const body = rewrite(fn.body, (n) => {
    if (!isControlCall(n)) return undefined;
    let spec = specs.get(n.op);
    if (!spec) {
      const bodies = bodiesOf(n.op.control).map((b) => f(nested ? mapBodies(b, f) : b));
      spec = controlOp(withBodies(n.op.control, bodies));
      specs.set(n.op, spec);
    }
    return gcall(spec, n.args, n.attrs, n.origin);
  });
  return body === fn.body ? fn : { ...fn, body };
}
