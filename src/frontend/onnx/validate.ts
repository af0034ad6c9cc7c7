// Checks an ONNX graph as a whole before any node is converted, so that a malformed or unsupported model fails at
// once with everything that is wrong in it, not at the first node that trips over it:
//  - the options: every `inputShapes` / `specialize` name is a graph input, and shapes are whole numbers >= 0
//  - the declared dims of inputs, outputs and value_info are whole numbers >= 0
//  - one producer per value (no two nodes writing one name, no node writing a graph input or initializer),
//    every node input defined, no cycles; nodes out of order are sorted (ONNX asks for topological order)
//  - every operator has a converter at the model's opset and every element type is one Kiln handles
import { KilnError } from '../../runtime/errors.js';
import { ONNX_DTYPE, ONNX_DTYPE_NAMES } from '../../runtime/dtype.js';
import type { Tensor } from '../../runtime/tensor.js';
import type { GraphProto, ModelProto, NodeProto, ValueInfoProto } from './proto/onnx_pb.js';
import { findConverter, lookupConverter } from './converter.js';
import type { DeclaredInput } from '../dims.js';

const CHECKER_HINT = 'the model is malformed; check it with onnx.checker.check_model';
/** How many node names an error lists per operator or element type. */
const LIST_NAMES = 3;

/** A node as errors name it: its name, else its first output, else its position; quoted. */
const nodeName = (n: NodeProto, i: number): string => `'${n.name || n.output.find(Boolean) || `#${i}`}'`;
export const nodeLabel = (n: NodeProto, i: number): string => `${nodeName(n, i)} (${n.opType})`;
const listNames = (names: readonly string[]) =>
  names.slice(0, LIST_NAMES).join(', ') + (names.length > LIST_NAMES ? `, ... ${names.length - LIST_NAMES} more` : '');

/** Graph inputs that are not initializers (IR < 4 lists initializers among the inputs too). */
export function runtimeInputs(graph: GraphProto): ValueInfoProto[] {
  const inits = new Set(graph.initializer.map((t) => t.name));
  return graph.input.filter((vi) => !inits.has(vi.name));
}

/** The options that name graph inputs: unknown names and malformed shapes are E_INPUT. */
export function checkInputOptions(
  graph: GraphProto,
  inputShapes?: Record<string, number[]>,
  specialize?: Record<string, Tensor>,
): void {
  const inputs = runtimeInputs(graph);
  const names = new Set(inputs.map((vi) => vi.name));
  const listing = inputs.length
    ? `the model's inputs are ${inputs.map((vi) => `'${vi.name}'${declaredShape(vi) ? ` [${declaredShape(vi)}]` : ''}`).join(', ')}`
    : 'the model has no run-time inputs';
  const unknown = (option: string, given: string[]) => {
    const bad = given.filter((n) => !names.has(n));
    if (!bad.length) return;
    throw new KilnError(
      'E_INPUT',
      `${option} name${bad.length > 1 ? 's' : ''} ${bad.map((n) => `'${n}'`).join(', ')} ${bad.length > 1 ? 'are' : 'is'} not ${bad.length > 1 ? 'inputs' : 'an input'} of the model; ${listing}`,
      {
        hint: `check the spelling (names are case-sensitive); on the command line this is ${option === 'inputShapes' ? '--input-shape' : '--specialize'} name=...`,
      },
    );
  };
  if (inputShapes !== undefined && (typeof inputShapes !== 'object' || inputShapes === null)) {
    throw new KilnError('E_INPUT', 'inputShapes must map input names to arrays of dims', {
      hint: 'e.g. { input: [1, 3, 224, 224] }',
    });
  }
  unknown('inputShapes', Object.keys(inputShapes ?? {}));
  unknown('specialize', Object.keys(specialize ?? {}));
  for (const [name, shape] of Object.entries(inputShapes ?? {})) {
    if (!Array.isArray(shape))
      throw new KilnError('E_INPUT', `inputShapes['${name}'] is not an array of dims`, {
        hint: `e.g. ${name}: [1, 3, 224, 224]`,
      });
    const bad = shape.findIndex((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0);
    if (bad >= 0) {
      throw new KilnError(
        'E_INPUT',
        `inputShapes['${name}'] = [${shape.join(',')}]: dim ${bad} (${String(shape[bad])}) is not a whole number >= 0`,
        { hint: `give every dim as a non-negative integer, e.g. --input-shape ${name}=1,3,224,224` },
      );
    }
    const vi = inputs.find((v) => v.name === name)!;
    const declared = declaredDims(vi);
    if (declared && declared.length !== shape.length) {
      throw new KilnError(
        'E_INPUT',
        `inputShapes['${name}'] = [${shape.join(',')}] has rank ${shape.length}, the model declares rank ${declared.length} [${declaredShape(vi)}]`,
        { hint: `give ${declared.length} dims for '${name}'` },
      );
    }
  }
}

type DimProto = { value: { case?: string; value?: unknown } };
const dimsOf = (vi: ValueInfoProto): DimProto[] | undefined => {
  const t = vi.type?.value;
  if (t?.case !== 'tensorType') return undefined;
  return (t.value as { shape?: { dim: DimProto[] } }).shape?.dim;
};
function declaredDims(vi: ValueInfoProto): (number | string | undefined)[] | undefined {
  return dimsOf(vi)?.map((d) =>
    d.value.case === 'dimValue'
      ? Number(d.value.value)
      : d.value.case === 'dimParam'
        ? String(d.value.value)
        : undefined,
  );
}
/** An input's declared dims for the `dims` option (src/frontend/dims.ts): unnamed unknown dims are `<input>_d<i>`. */
export const declaredInput = (vi: ValueInfoProto): DeclaredInput => ({
  name: vi.name,
  dims: (declaredDims(vi) ?? []).map((d, i) => d ?? `${vi.name}_d${i}`),
});
const declaredShape = (vi: ValueInfoProto) =>
  declaredDims(vi)
    ?.map((d) => d ?? '?')
    .join(',');

/** Negative dims in the model's declared shapes (inputs that `inputShapes` overrides are not checked). */
export function checkDeclaredDims(graph: GraphProto, inputShapes?: Record<string, number[]>): void {
  const bad: string[] = [];
  const check = (vi: ValueInfoProto, what: string) => {
    const dims = declaredDims(vi);
    if (!dims) return;
    const i = dims.findIndex((d) => typeof d === 'number' && !(Number.isSafeInteger(d) && d >= 0));
    if (i >= 0) bad.push(`${what} '${vi.name}' [${dims.map((d) => d ?? '?').join(',')}] (dim ${i} is ${dims[i]})`);
  };
  for (const vi of runtimeInputs(graph)) if (!inputShapes?.[vi.name]) check(vi, 'input');
  for (const vi of graph.output) check(vi, 'output');
  for (const vi of graph.valueInfo) check(vi, 'value');
  if (bad.length) {
    throw new KilnError('E_MODEL_INVALID', `the model declares negative dims: ${listNames(bad)}`, {
      hint: 'a dim must be >= 0; mark an unknown dim with a dim_param (a name) rather than -1, and give concrete input shapes with inputShapes (kiln compile --input-shape name=1,3,224,224)',
    });
  }
}

/**
 * One producer per value, every input defined, no cycles. Returns the nodes in an order where each node comes
 * after the producers of its inputs: the model's own order when it already is one.
 */
export function checkStructure(graph: GraphProto): NodeProto[] {
  const nodes = graph.node;
  const inits = new Set(graph.initializer.map((t) => t.name));
  const inputs = new Set(runtimeInputs(graph).map((vi) => vi.name));
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => {
    for (const out of n.output) {
      if (!out) continue;
      const what = inputs.has(out) ? 'a graph input' : inits.has(out) ? 'an initializer' : undefined;
      if (what)
        throw new KilnError('E_MODEL_INVALID', `node ${nodeLabel(n, i)} writes '${out}', which is ${what}`, {
          node: n.name || out,
          op: n.opType,
          hint: CHECKER_HINT,
        });
      const prev = producer.get(out);
      if (prev !== undefined) {
        const same = prev === i;
        throw new KilnError(
          'E_MODEL_INVALID',
          same
            ? `node ${nodeLabel(n, i)} lists output '${out}' twice`
            : `value '${out}' is written by two nodes: ${nodeLabel(nodes[prev], prev)} and ${nodeLabel(n, i)}`,
          { node: n.name || out, op: n.opType, hint: CHECKER_HINT },
        );
      }
      producer.set(out, i);
    }
  });

  // the artifact binds outputs by name, so one listed twice would be one binding under two entries
  const outputNames = new Set<string>();
  for (const o of graph.output) {
    if (outputNames.has(o.name))
      throw new KilnError('E_MODEL_INVALID', `graph output '${o.name}' is listed twice`, { hint: CHECKER_HINT });
    outputNames.add(o.name);
  }

  const dangling: string[] = [];
  nodes.forEach((n, i) => {
    for (const name of n.input)
      if (name && !inputs.has(name) && !inits.has(name) && !producer.has(name))
        dangling.push(`'${name}' (read by node ${nodeLabel(n, i)})`);
  });
  for (const o of graph.output)
    if (!inputs.has(o.name) && !inits.has(o.name) && !producer.has(o.name)) dangling.push(`graph output '${o.name}'`);
  if (dangling.length) {
    throw new KilnError(
      'E_MODEL_INVALID',
      `${dangling.length === 1 ? 'a value is' : `${dangling.length} values are`} not defined by any node, graph input or initializer: ${listNames(dangling)}`,
      { hint: CHECKER_HINT },
    );
  }

  // producers of each node's inputs (node indices)
  const deps = nodes.map((n) => [
    ...new Set(n.input.map((x) => producer.get(x)).filter((p): p is number => p !== undefined)),
  ]);
  if (deps.every((ds, i) => ds.every((d) => d < i))) return nodes; // already in topological order

  // Kahn's algorithm, taking ready nodes in model order
  const consumers: number[][] = nodes.map(() => []);
  const pending = deps.map((ds) => ds.length);
  deps.forEach((ds, i) => {
    for (const d of ds) consumers[d].push(i);
  });
  const ready = new MinHeap();
  pending.forEach((p, i) => {
    if (p === 0) ready.push(i);
  });
  const order: NodeProto[] = [];
  while (ready.size) {
    const i = ready.pop();
    order.push(nodes[i]);
    for (const c of consumers[i]) if (--pending[c] === 0) ready.push(c);
  }
  if (order.length === nodes.length) return order;

  // a cycle: every node left waits for another node left; walk back along those until a node repeats
  let at = pending.findIndex((p) => p > 0);
  const seenAt = new Map<number, number>();
  const path: number[] = [];
  while (!seenAt.has(at)) {
    seenAt.set(at, path.length);
    path.push(at);
    at = deps[at].find((d) => pending[d] > 0)!;
  }
  const loop = path.slice(seenAt.get(at)!).reverse(); // producers first
  const first = loop.indexOf(Math.min(...loop));
  const cycle = [...loop.slice(first), ...loop.slice(0, first)]; // from the node that comes first in the model
  const text = [...cycle, cycle[0]].map((i) => nodeLabel(nodes[i], i)).join(' -> ');
  throw new KilnError('E_MODEL_INVALID', `the graph has a cycle: ${text}`, {
    node: nodes[cycle[0]].name || nodes[cycle[0]].output[0],
    op: nodes[cycle[0]].opType,
    hint: 'ONNX graphs must be acyclic (loops are written with the Loop operator); the model is malformed, check it with onnx.checker.check_model',
  });
}

/**
 * Every operator and element type of the model at once: one E_UNSUPPORTED_OP error (E_UNSUPPORTED when only element
 * types are the problem, E_UNSUPPORTED_OPSET when only opsets are) that lists each with its count and first nodes.
 */
export function checkSupport(model: ModelProto, opset: number): void {
  const graph = model.graph!;
  const domainVersion = new Map(
    model.opsetImport.map((o) => [o.domain === 'ai.onnx' ? '' : o.domain, Number(o.version)]),
  );
  const ops = new Map<string, { op: string; domain: string; since?: number; nodes: string[]; first: NodeProto }>();
  graph.node.forEach((n, i) => {
    const found = lookupConverter(n.domain, n.opType, opset);
    if (found.fn) return;
    const key = `${n.domain}::${n.opType}`;
    const e = ops.get(key) ?? { op: n.opType, domain: n.domain, since: found.since, nodes: [], first: n };
    e.nodes.push(nodeName(n, i));
    ops.set(key, e);
  });

  const dtypes = new Map<number, string[]>();
  const noteType = (code: number, where: string) => {
    if (code === 0 || ONNX_DTYPE[code]) return; // 0: not given
    const l = dtypes.get(code) ?? [];
    l.push(where);
    dtypes.set(code, l);
  };
  const elemType = (vi: ValueInfoProto) =>
    vi.type?.value.case === 'tensorType' ? (vi.type.value.value as { elemType: number }).elemType : 0;
  for (const vi of runtimeInputs(graph)) noteType(elemType(vi), `input '${vi.name}'`);
  for (const t of graph.initializer) noteType(t.dataType, `initializer '${t.name}'`);
  for (const vi of graph.output) noteType(elemType(vi), `output '${vi.name}'`);
  for (const vi of graph.valueInfo) noteType(elemType(vi), `value '${vi.name}'`);
  graph.node.forEach((n, i) => {
    for (const a of n.attribute) {
      if (a.t && (n.opType === 'Constant' || n.opType === 'ConstantOfShape'))
        noteType(a.t.dataType, `${n.opType} node ${nodeName(n, i)}`);
      if (a.name === 'to' && n.opType === 'Cast') noteType(Number(a.i), `Cast node ${nodeName(n, i)}`);
    }
  });

  if (!ops.size && !dtypes.size) return;
  const opList = [...ops.values()];
  if (opList.length === 1 && opList[0].nodes.length === 1 && !dtypes.size) {
    const n = opList[0].first;
    findConverter(n.domain, n.opType, opset, n.name || n.output[0] || n.opType); // throws its own, single-node error
  }
  const parts: string[] = [];
  const unknown = opList.filter((o) => o.since === undefined),
    early = opList.filter((o) => o.since !== undefined);
  const describe = (o: (typeof opList)[number]) => {
    const domain = o.domain && o.domain !== 'ai.onnx' ? o.domain : 'ai.onnx';
    const v = domainVersion.get(o.domain === 'ai.onnx' ? '' : o.domain);
    const count = o.nodes.length;
    return `${o.op} (domain ${domain}${v !== undefined ? `, opset ${v}` : ''}${o.since !== undefined ? `, supported from opset ${o.since}` : ''}): ${count} node${count > 1 ? 's' : ''} ${listNames(o.nodes)}`;
  };
  if (unknown.length)
    parts.push(
      `${unknown.length} operator${unknown.length > 1 ? 's are' : ' is'} not supported: ${unknown.map(describe).join('; ')}`,
    );
  if (early.length)
    parts.push(
      `${early.length} operator${early.length > 1 ? 's are' : ' is'} not supported at opset ${opset}: ${early.map(describe).join('; ')}`,
    );
  if (dtypes.size) {
    parts.push(
      `element type${dtypes.size > 1 ? 's' : ''} not supported: ${[...dtypes]
        .map(
          ([code, where]) =>
            `${ONNX_DTYPE_NAMES[code] ?? `#${code}`} (${where.length} tensor${where.length > 1 ? 's' : ''}: ${listNames(where)})`,
        )
        .join('; ')}`,
    );
  }
  const hints = [
    unknown.length ? 'see README "Operator coverage"; rewrite the model without these operators or open an issue' : '',
    early.length ? 'upgrade the model with onnx.version_converter.convert_version' : '',
    dtypes.size
      ? 'Kiln handles float32, float64, int8-64, uint8-64 and bool: cast the model (e.g. float16 -> float32) before compiling'
      : '',
  ].filter(Boolean);
  const code = unknown.length ? 'E_UNSUPPORTED_OP' : early.length ? 'E_UNSUPPORTED_OPSET' : 'E_UNSUPPORTED';
  const single = opList.length === 1 && !dtypes.size ? opList[0] : undefined;
  throw new KilnError(code, `the model cannot be compiled: ${parts.join('. ')}`, {
    opset,
    op: single?.op,
    node: single ? single.first.name || single.first.output[0] : undefined,
    hint: hints.join('; '),
  });
}

/** A binary min-heap of node indices (Kahn's algorithm takes the earliest ready node). */
class MinHeap {
  private readonly a: number[] = [];
  get size() {
    return this.a.length;
  }
  push(x: number) {
    const a = this.a;
    a.push(x);
    for (let i = a.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (a[p] <= a[i]) break;
      [a[p], a[i]] = [a[i], a[p]];
      i = p;
    }
  }
  pop(): number {
    const a = this.a,
      top = a[0],
      last = a.pop()!;
    if (a.length) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1,
          r = l + 1;
        let m = i;
        if (l < a.length && a[l] < a[m]) m = l;
        if (r < a.length && a[r] < a[m]) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i], a[m]];
        i = m;
      }
    }
    return top;
  }
}
