// ONNX If, Loop and Scan -> control regions of the graph IR (src/relay-ir/control.ts). An If whose condition is
// known at compile time is its branch, inlined; everything else becomes a region whose bodies compile to kernels
// of their own and run under the artifact's control program.
import { KilnError } from '../../../runtime/errors.js';
import type { DType } from '../../../runtime/dtype.js';
import { type FuncNode, type GExpr, gfunc, gtuple, gvar } from '../../../relay-ir/expr.js';
import { type LoopRegion, controlCalls } from '../../../relay-ir/control.js';
import { type TensorType, printType, staticShape, tensorType, isStatic } from '../../../relay-ir/types.js';
import { type ConvertCtx, converter } from '../converter.js';

const outputsOf = (f: FuncNode): GExpr[] => (f.body.kind === 'tuple' ? [...f.body.fields] : [f.body]);
const tensorOf = (e: GExpr) => e.type as TensorType;
const sameType = (a: TensorType, b: TensorType) =>
  a.dtype === b.dtype && a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
const scalar = (dtype: DType) => tensorType([], dtype);

/** E_DYNAMIC for a value whose shape would change at run time. */
function runtimeShape(c: ConvertCtx, what: string): never {
  throw new KilnError(
    'E_DYNAMIC',
    `${c.opType}: ${what}; that needs run-time shapes, which Kiln does not compile yet`,
    {
      hint: 'export the model so that the shapes stay fixed (pad to the longest size), or unroll the loop before export',
    },
  );
}

/** A name for the node's region that no other node has (node names need not be unique; output names are). */
const regionName = (c: ConvertCtx) => c.outputNames.find(Boolean) ?? c.name;

function isTrue(t: { data: ArrayLike<number | bigint | boolean> }): boolean {
  return t.data.length > 0 && Boolean(Number(t.data[0]));
}

converter('If', 1, (c) => {
  const cond = c.input(0);
  const known = c.knownValue(cond);
  // a condition known at compile time (a constant, a shape test, a specialized input): the branch itself
  if (known) return c.subgraph(isTrue(known) ? 'then_branch' : 'else_branch', [])!;
  const then = c.subgraphFunction('then_branch', []);
  const otherwise = c.subgraphFunction('else_branch', []);
  const thenOut = outputsOf(then.func),
    elseOut = outputsOf(otherwise.func);
  if (thenOut.length !== elseOut.length || thenOut.length < c.numOutputs)
    throw new KilnError(
      'E_MODEL_INVALID',
      `If branches return ${thenOut.length} and ${elseOut.length} values for ${c.numOutputs} outputs`,
      { hint: 'both branches must return one value per output; check the model with onnx.checker.check_model' },
    );
  const outputs = thenOut.map((t, i) => {
    const a = tensorOf(t),
      b = tensorOf(elseOut[i]);
    if (!sameType(a, b))
      runtimeShape(c, `output ${i} is ${printType(a)} in the then branch and ${printType(b)} in the else branch`);
    if (!isStatic(a)) runtimeShape(c, `output ${i} has symbolic shape ${printType(a)}`);
    return a;
  });
  return controlCalls(
    { kind: 'if', then: then.func, else: otherwise.func, outputs },
    [cond, ...then.captures, ...otherwise.captures],
    regionName(c),
    [c.name],
  );
});

/** Loop (opset 1, 11, 13, 16: the same semantics for tensors). */
function loop(c: ConvertCtx): GExpr[] {
  const m = c.optInput(0),
    cond = c.optInput(1);
  const init: GExpr[] = [];
  for (let i = 2; i < c.numInputs; i++) init.push(c.input(i));
  let trip: number | 'arg' = -1;
  const args: GExpr[] = [];
  if (m) {
    const v = c.knownValue(m);
    // exporters write INT64_MAX for "no trip count" (a while loop)
    if (v) trip = Number(v.data[0]) > Number.MAX_SAFE_INTEGER ? -1 : Math.max(0, Number(v.data[0]));
    else {
      trip = 'arg';
      args.push(m);
    }
  }
  let condArg: LoopRegion['cond'] = 'none';
  if (cond) {
    const v = c.knownValue(cond);
    if (!v) {
      condArg = 'arg';
      args.push(cond);
    } else if (isTrue(v)) condArg = 'true';
    else trip = 0;
  }
  if (trip === -1 && condArg === 'none')
    throw new KilnError('E_MODEL_INVALID', 'Loop has neither a trip count nor a condition: it would never end', {
      hint: 'give the Loop a trip count M or a condition',
    });
  if (typeof trip === 'number' && trip >= 0 && condArg !== 'arg') {
    const unrolled = unroll(c, trip, condArg === 'true', init);
    if (unrolled) return unrolled;
  }
  for (const [i, v] of init.entries())
    if (!isStatic(tensorOf(v))) runtimeShape(c, `loop-carried value ${i} has symbolic shape ${printType(tensorOf(v))}`);
  const body = c.subgraphFunction('body', [scalar('int64'), scalar('bool'), ...init.map(tensorOf)]);
  const outs = outputsOf(body.func);
  if (outs.length < 1 + init.length)
    throw new KilnError('E_MODEL_INVALID', `Loop body returns ${outs.length} values for ${init.length} carried`, {
      hint: 'the body returns the condition, the carried values, then the scan outputs',
    });
  const condOut = tensorOf(outs[0]);
  if (condOut.dtype !== 'bool' || staticShape(condOut).reduce((a, b) => a * b, 1) !== 1)
    throw new KilnError('E_MODEL_INVALID', `Loop body's condition output is ${printType(condOut)}, not one bool`);
  init.forEach((v, i) => {
    const next = tensorOf(outs[1 + i]);
    if (!sameType(tensorOf(v), next))
      runtimeShape(c, `loop-carried value ${i} enters as ${printType(tensorOf(v))} and leaves as ${printType(next)}`);
  });
  const slices = outs.slice(1 + init.length).map(tensorOf);
  if (slices.length && typeof trip !== 'number')
    throw new KilnError(
      'E_DYNAMIC',
      `Loop: the trip count is known only at run time, and the loop has ${slices.length} scan output(s) whose length it sets`,
      {
        hint: 'Kiln sizes scan outputs at compile time: feed the trip count M from an initializer or a shape computation, or pass its value with --specialize',
      },
    );
  if (slices.length && trip === -1)
    throw new KilnError('E_DYNAMIC', 'Loop: scan outputs of a loop without a trip count have run-time length', {
      hint: 'give the Loop a trip count M known at compile time',
    });
  for (const s of slices) if (!isStatic(s)) runtimeShape(c, `a scan output has symbolic shape ${printType(s)}`);
  const n = trip as number;
  const region: LoopRegion = {
    kind: 'loop',
    body: body.func,
    trip,
    cond: condArg,
    iterParam: true,
    condParam: true,
    condOut: true,
    carried: init.length,
    scanIn: 0,
    scanOut: slices.length,
    reverseIn: [],
    reverseOut: slices.map(() => false),
    outputs: [...init.map(tensorOf), ...slices.map((s) => tensorType([n, ...s.shape], s.dtype))],
  };
  return controlCalls(region, [...args, ...init, ...body.captures], regionName(c), [c.name]);
}
converter('Loop', 1, loop);

/** Body nodes times iterations up to which a loop with a trip count known at compile time is unrolled. */
const MAX_UNROLLED_NODES = 256;

/**
 * The loop as its body inlined `trip` times (iteration numbers and conditions become constants, so what depends on
 * them folds: a Slice at the iteration number, say), or undefined where that is not simpler: a large body, or a
 * condition not known at compile time after some iteration (then the loop becomes a region).
 */
function unroll(c: ConvertCtx, trip: number, checkCond: boolean, init: readonly GExpr[]): GExpr[] | undefined {
  const g = c.attr('body');
  const nodes = g?.type === 'graph' ? g.value.node.length : Number.POSITIVE_INFINITY;
  if (trip === 0 || trip * Math.max(nodes, 1) > MAX_UNROLLED_NODES) return undefined;
  let carried = [...init];
  const scans: GExpr[][] = [];
  for (let i = 0; i < trip; i++) {
    const iter = c.constant({ dtype: 'int64', shape: [], data: new BigInt64Array([BigInt(i)]) });
    const yes = c.constant({ dtype: 'bool', shape: [], data: new Uint8Array([1]) });
    const outs = c.subgraph('body', [iter, yes, ...carried])!;
    if (outs.length < 1 + carried.length) return undefined;
    carried = outs.slice(1, 1 + init.length);
    scans.push(outs.slice(1 + init.length));
    if (checkCond) {
      const cond = c.knownValue(outs[0]);
      if (!cond) return undefined;
      // scan outputs are as long as the iterations that ran, known here too
      if (!isTrue(cond)) break;
    }
  }
  const nScan = scans[0].length;
  const stacked = [...Array(nScan).keys()].map((k) => {
    const parts = scans.map((outs) => c.call('unsqueeze', [outs[k]], { axes: [0] }));
    return parts.length === 1 ? parts[0] : c.call('concat', parts, { axis: 0 });
  });
  return [...carried, ...stacked];
}

const normAxis = (a: number, rank: number, c: ConvertCtx, what: string) => {
  if (a < -rank || a >= rank)
    throw new KilnError('E_MODEL_INVALID', `${c.opType}: ${what} ${a} is out of range for rank ${rank}`);
  return a < 0 ? a + rank : a;
};
/** Moves axis `a` of `x` to the front (identity for 0). */
function axisFirst(c: ConvertCtx, x: GExpr, a: number): GExpr {
  if (a === 0) return x;
  const r = tensorOf(x).shape.length;
  const perm = [a, ...[...Array(r).keys()].filter((i) => i !== a)];
  return c.call('transpose', [x], { perm });
}
/** Moves axis 0 of `x` to position `a`. */
function axisFrom0(c: ConvertCtx, x: GExpr, a: number): GExpr {
  if (a === 0) return x;
  const r = tensorOf(x).shape.length;
  const rest = [...Array(r).keys()].slice(1);
  const perm = [...rest.slice(0, a), 0, ...rest.slice(a)];
  return c.call('transpose', [x], { perm });
}

/** The region of a Scan over axis 0 of every scan input (of equal static length). */
function scanRegion(
  c: ConvertCtx,
  states: readonly GExpr[],
  inputs: readonly GExpr[],
  body: FuncNode,
  reverseIn: readonly boolean[],
  reverseOut: (k: number) => boolean,
): LoopRegion {
  const lengths = new Set(inputs.map((x) => tensorOf(x).shape[0]));
  if (lengths.size !== 1)
    throw new KilnError('E_SHAPE', `${c.opType}: the scan inputs have different lengths (${[...lengths]})`, {
      hint: 'every scan input must have the same size along its scan axis',
    });
  const trip = [...lengths][0];
  if (typeof trip !== 'number') runtimeShape(c, `the scan length is the symbolic dim ${trip}`);
  const outs = outputsOf(body);
  if (outs.length < states.length)
    throw new KilnError('E_MODEL_INVALID', `Scan body returns ${outs.length} values for ${states.length} states`);
  states.forEach((s, i) => {
    const next = tensorOf(outs[i]);
    if (!sameType(tensorOf(s), next))
      runtimeShape(c, `state ${i} enters as ${printType(tensorOf(s))} and leaves as ${printType(next)}`);
  });
  const slices = outs.slice(states.length).map(tensorOf);
  for (const s of slices) if (!isStatic(s)) runtimeShape(c, `a scan output has symbolic shape ${printType(s)}`);
  return {
    kind: 'loop',
    body,
    trip: trip as number,
    cond: 'none',
    iterParam: false,
    condParam: false,
    condOut: false,
    carried: states.length,
    scanIn: inputs.length,
    scanOut: slices.length,
    reverseIn,
    reverseOut: slices.map((_, k) => reverseOut(k)),
    outputs: [...states.map(tensorOf), ...slices.map((s) => tensorType([trip, ...s.shape], s.dtype))],
  };
}

const sliceType = (t: TensorType) => tensorType(t.shape.slice(1), t.dtype);

// Scan 9+: scan axes and directions per input and output, no batch axis
converter('Scan', 9, (c) => {
  const nScan = c.int('num_scan_inputs');
  const all: GExpr[] = [];
  for (let i = 0; i < c.numInputs; i++) all.push(c.input(i));
  const nState = all.length - nScan;
  if (nScan < 1 || nState < 0)
    throw new KilnError('E_MODEL_INVALID', `Scan: num_scan_inputs ${nScan} with ${all.length} inputs`);
  const states = all.slice(0, nState);
  const inAxes = c.ints('scan_input_axes', new Array(nScan).fill(0));
  const inDirs = c.ints('scan_input_directions', new Array(nScan).fill(0));
  const inputs = all
    .slice(nState)
    .map((x, k) => axisFirst(c, x, normAxis(inAxes[k], tensorOf(x).shape.length, c, 'scan_input_axes entry')));
  const body = c.subgraphFunction('body', [...states.map(tensorOf), ...inputs.map((x) => sliceType(tensorOf(x)))]);
  const nOut = outputsOf(body.func).length - nState;
  const outAxes = c.ints('scan_output_axes', new Array(nOut).fill(0));
  const outDirs = c.ints('scan_output_directions', new Array(nOut).fill(0));
  const region = scanRegion(
    c,
    states,
    inputs,
    body.func,
    inDirs.map((d) => d === 1),
    (k) => outDirs[k] === 1,
  );
  const outs = controlCalls(region, [...states, ...inputs, ...body.captures], regionName(c), [c.name]);
  return outs.map((o, i) =>
    i < nState
      ? o
      : axisFrom0(c, o, normAxis(outAxes[i - nState], tensorOf(o).shape.length, c, 'scan_output_axes entry')),
  );
});

// Scan 8: axis 0 of every input and output is a batch, axis 1 the scan axis; each batch entry scans on its own (an
// outer loop over the batch whose body is the scan)
converter('Scan', 8, (c) => {
  if (c.optInput(0)) c.unsupported('sequence_lens (scan lengths per batch entry)');
  const nScan = c.int('num_scan_inputs');
  const all: GExpr[] = [];
  for (let i = 1; i < c.numInputs; i++) all.push(c.input(i));
  const nState = all.length - nScan;
  if (nScan < 1 || nState < 0)
    throw new KilnError('E_MODEL_INVALID', `Scan: num_scan_inputs ${nScan} with ${all.length} inputs`);
  const dirs = c.ints('directions', new Array(nScan).fill(0));
  const perBatch = all.map((x) => sliceType(tensorOf(x)));
  const states = perBatch.slice(0, nState),
    inputs = perBatch.slice(nState);
  const body = c.subgraphFunction('body', [...states, ...inputs.map(sliceType)]);
  const stateVars = states.map((t, i) => gvar(`state${i}`, t)),
    inputVars = inputs.map((t, i) => gvar(`scan${i}`, t)),
    captureVars = body.captures.map((x, i) => gvar(`capture${i}`, tensorOf(x)));
  const inner = scanRegion(
    c,
    stateVars,
    inputVars,
    body.func,
    dirs.map((d) => d === 1),
    () => false,
  );
  const innerOuts = controlCalls(inner, [...stateVars, ...inputVars, ...captureVars], `${regionName(c)}_scan`, [
    c.name,
  ]);
  const batchBody = gfunc([...stateVars, ...inputVars, ...captureVars], gtuple(innerOuts), `${c.name}_batch`);
  const batch = all.map((x) => tensorOf(x).shape[0]);
  const outer = scanRegion(
    c,
    [],
    all,
    batchBody,
    all.map(() => false),
    () => false,
  );
  return controlCalls(outer, [...all, ...body.captures], regionName(c), [c.name]).map((o) => {
    if (tensorOf(o).shape[0] !== batch[0]) runtimeShape(c, 'the batch sizes differ');
    return o;
  });
});
