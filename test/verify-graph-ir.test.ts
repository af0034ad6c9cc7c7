// The graph-IR verifier: it accepts the graph after every graph pass and after fusion (a small model, the model
// fixtures, the ONNX node suite) and rejects hand-broken graphs, naming the rule.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile, tensor } from '../src/index.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { KilnError } from '../src/runtime/errors.js';
import { type CallNode, type FuncNode, gcall, gcallFunc, gconst, gfunc, gtuple, gvar } from '../src/relay-ir/expr.js';
import { type OpSpec, getOp } from '../src/relay-ir/op.js';
import { printFunc } from '../src/relay-ir/printer.js';
import { tensorType } from '../src/relay-ir/types.js';
import { type GraphVerifyOptions, verifyFunc } from '../src/relay-ir/verify.js';
import '../src/tensor-expr/ops/index.js';
import { nodeCase, stageGraph } from './helpers/verify-ir.js';

function problem(fn: FuncNode, opts?: GraphVerifyOptions): string | undefined {
  try {
    verifyFunc(fn, opts);
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(KilnError);
    expect((e as KilnError).code).toBe('E_INTERNAL');
    return (e as KilnError).detail;
  }
}

/** Messages for each stage of a model's graph that the verifier rejects. */
function rejectedStages(bytes: Uint8Array, opts: Parameters<typeof stageGraph>[1] = {}): string[] {
  const { graphs, fused } = stageGraph(bytes, opts);
  const out: string[] = [];
  for (const g of graphs) {
    const m = problem(g.fn, { where: `after ${g.pass}` });
    if (m) out.push(m);
  }
  const m = problem(fused, { where: 'after fuse-ops', fused: true });
  if (m) out.push(m);
  return out;
}

describe('verifyFunc accepts the graphs Kiln builds', () => {
  const model = buildModel({
    inputs: [['x', 'float32', [1, 3, 8, 8]]],
    outputs: [
      ['y', 'float32', [1, 4, 8, 8]],
      ['z', 'float32', [1, 4, 8, 8]],
    ],
    initializers: {
      w: randomF32([4, 3, 3, 3], 1),
      b: randomF32([4], 2),
      scale: randomF32([4], 3),
      bias: randomF32([4], 4),
      mean: randomF32([4], 5),
      var: tensor('float32', [4], [1, 2, 3, 4]),
    },
    nodes: [
      { op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['c'], attrs: { pads: [1, 1, 1, 1] } },
      { op: 'BatchNormalization', inputs: ['c', 'scale', 'bias', 'mean', 'var'], outputs: ['n'] },
      { op: 'Relu', inputs: ['n'], outputs: ['y'] },
      { op: 'Sigmoid', inputs: ['y'], outputs: ['s'] },
      { op: 'Mul', inputs: ['s', 'y'], outputs: ['z'] },
    ],
  });

  it("a conv + batch-norm + activation model with two outputs: after each graph pass, after fusion, and compile()'s graphs", async () => {
    expect(rejectedStages(model)).toEqual([]);
    expect(rejectedStages(model, { target: 'webgpu' })).toEqual([]);
    const r = await compile(model);
    expect(problem(r.graph)).toBeUndefined();
    expect(problem(r.fused, { fused: true })).toBeUndefined();
    expect(problem(r.graph, { fused: true })).toMatch(/call of operator \w+ outside a fused function/);
  });

  const models = existsSync('.cache/models')
    ? readdirSync('.cache/models').filter(
        (m) => m.endsWith('_small') && existsSync(join('.cache/models', m, 'model.onnx')),
      )
    : [];
  it.skipIf(models.length === 0)(
    'the model fixtures (.cache/models/*_small): every graph pass and the fused graph',
    () => {
      for (const m of models) {
        const path = join('.cache/models', m, 'model.onnx');
        expect(rejectedStages(readFileSync(path), { modelPath: path }), m).toEqual([]);
      }
    },
    120_000,
  );

  const nodeRoot = '.cache/onnx-node';
  it.skipIf(!existsSync(nodeRoot))(
    'every ONNX node test case that imports: every graph pass and the fused graph',
    () => {
      let imported = 0;
      const bad: string[] = [];
      for (const d of readdirSync(nodeRoot)
        .filter((x) => !x.startsWith('.'))
        .sort()) {
        let msgs: string[];
        try {
          const c = nodeCase(join(nodeRoot, d));
          if (!c) continue;
          msgs = rejectedStages(c.bytes, c.opts);
        } catch {
          continue; // a case Kiln does not import
        }
        imported++;
        bad.push(...msgs.map((m) => `${d}: ${m}`));
      }
      console.log(
        `graph-IR verifier over the ONNX node suite: ${imported} cases import, ${imported - new Set(bad.map((b) => b.split(':')[0])).size} accepted at every pass`,
      );
      expect(imported).toBeGreaterThan(1000);
      expect(bad).toEqual([]);
    },
    300_000,
  );
});

// ---- hand-built graphs
const add = getOp('add'),
  relu = getOp('relu');
const t4 = tensorType([2, 2], 'float32');

function check(fn: FuncNode, before: string, expected: string | RegExp | undefined, opts?: GraphVerifyOptions): void {
  expect(printFunc(fn)).toBe(before);
  const got = problem(fn, opts);
  if (expected === undefined) expect(got).toBeUndefined();
  else if (typeof expected === 'string') expect(got).toBe(expected);
  else expect(got).toMatch(expected);
}

describe('verifyFunc rejects broken graphs', () => {
  const x = gvar('x', t4),
    y = gvar('y', t4);

  it('accepts a well-formed graph', () => {
    check(
      gfunc([x, y], gtuple([gcall(add, [x, y], {}, ['n0']), gcall(relu, [x])])),
      `fn main(%x: float32[2,2], %y: float32[2,2]) -> (float32[2,2], float32[2,2]) {
  %0 = add(%x, %y) : float32[2,2]  # n0
  %1 = relu(%x) : float32[2,2]
  %2 = (%0, %1)
  %2
}
`,
      undefined,
    );
  });

  it('a node whose stored type is not what its operator infers (a pass spread a node and kept its old type)', () => {
    const wide = gvar('w', tensorType([3, 2], 'float32'));
    const stale: CallNode = { ...gcall(add, [x, y]), args: [wide, y] };
    check(
      gfunc([wide, y], stale),
      `fn main(%w: float32[3,2], %y: float32[2,2]) -> float32[2,2] {
  %0 = add(%w, %y) : float32[2,2]
  %0
}
`,
      /^graph IR of function main: the type rule of add rejects the arguments: .*\n {2}node: add\(float32\[3,2\], float32\[2,2\]\) : float32\[2,2\]$/,
    );
    const retyped: CallNode = { ...gcall(relu, [x]), type: tensorType([2, 2], 'int32') };
    expect(problem(gfunc([x], retyped))).toBe(
      "graph IR of function main: call has type int32[2,2] but relu's type rule gives float32[2,2]\n  node: relu(float32[2,2]) : int32[2,2]",
    );
  });

  it("a variable that is not a parameter: another function's, or a copy of a parameter", () => {
    const z = gvar('z', t4);
    expect(problem(gfunc([x], gcall(add, [x, z])))).toBe(
      'graph IR of function main: variable %z is not a parameter of the function\n  node: %z: float32[2,2]',
    );
    expect(problem(gfunc([x], gcall(relu, [gvar('x', t4)])))).toMatch(
      /variable %x is not this function's parameter of that name \(a node of another graph\)/,
    );
    expect(problem(gfunc([x, gvar('x', t4)], gcall(relu, [x])))).toMatch(/two parameters are named %x/);
  });

  it("constants whose type is not their value's; bad dims", () => {
    const k = gconst(tensor('float32', [2, 2], [1, 2, 3, 4]));
    const call: CallNode = { ...gcall(add, [x, k]), args: [x, { ...k, type: tensorType([2, 2], 'int32') }] };
    expect(problem(gfunc([x], call))).toMatch(/constant's type int32\[2,2\] is not its value's float32\[2,2\]/);
    expect(problem(gfunc([x], { ...k, type: tensorType([4], 'float32') }))).toMatch(
      /constant's type float32\[4\] is not its value's float32\[2,2\]/,
    );
    const neg = gvar('n', tensorType([-1, 2], 'float32'));
    expect(problem(gfunc([neg], neg))).toMatch(/parameter %n has dim -1; dims are whole numbers >= 0 or names/);
  });

  it('tuples anywhere but the result', () => {
    const inner = gtuple([x, y]);
    expect(problem(gfunc([x, y], gtuple([inner, x])))).toMatch(/a tuple that is not the function's result/);
    const call: CallNode = { ...gcall(relu, [x]), args: [inner] };
    // the tuple is reached first (producers before consumers)
    expect(problem(gfunc([x, y], call))).toMatch(
      /a tuple that is not the function's result\n {2}node: \(float32\[2,2\], float32\[2,2\]\)/,
    );
  });

  it('an operator that is not the registered one of its name', () => {
    const fake: OpSpec = { ...relu };
    expect(problem(gfunc([x], gcall(fake, [x])))).toMatch(/operator relu is not the registered operator of that name/);
  });

  describe('fused functions', () => {
    const p0 = gvar('p0', t4),
      p1 = gvar('p1', t4);
    const prim = gfunc([p0, p1], gcall(relu, [gcall(add, [p0, p1])]), 'fused_add_relu_0', true);

    it('a well-formed kernel call; arguments that do not match the parameters; a non-primitive callee', () => {
      const main = gfunc([x, y], gcallFunc(prim, [x, y], []));
      check(
        main,
        `fn (primitive) fused_add_relu_0(%p0: float32[2,2], %p1: float32[2,2]) -> float32[2,2] {
  %0 = add(%p0, %p1) : float32[2,2]
  %1 = relu(%0) : float32[2,2]
  %1
}

fn main(%x: float32[2,2], %y: float32[2,2]) -> float32[2,2] {
  %0 = fused_add_relu_0(%x, %y) : float32[2,2]
  %0
}
`,
        undefined,
        { fused: true },
      );
      const w = gvar('w', tensorType([4], 'float32'));
      expect(problem(gfunc([x, w], gcallFunc(prim, [x, w], [])))).toBe(
        'graph IR of function main: argument 1 of the call of fused_add_relu_0 is float32[4], its parameter %p1 is float32[2,2]\n  node: fused_add_relu_0(float32[2,2], float32[4]) : float32[2,2]',
      );
      expect(problem(gfunc([x], gcallFunc(prim, [x], [])))).toMatch(
        /call of fused_add_relu_0 passes 1 arguments for 2 parameters/,
      );
      expect(problem(gfunc([x, y], gcallFunc({ ...prim, primitive: false }, [x, y], [])))).toMatch(
        /call of function fused_add_relu_0, which is not primitive/,
      );
    });

    it('a fused body that reaches outside its parameters, leaves a parameter unused, or has a stale type', () => {
      const leak = gfunc([p0, p1], gcall(add, [p0, x]), 'fused_leak', true);
      expect(problem(gfunc([x, y], gcallFunc(leak, [x, y], [])))).toBe(
        'graph IR of function fused_leak, called from main: variable %x is not a parameter of the function\n  node: %x: float32[2,2]',
      );
      const unused = gfunc([p0, p1], gcall(relu, [p0]), 'fused_unused', true);
      expect(problem(gfunc([x, y], gcallFunc(unused, [x, y], [])))).toMatch(
        /^graph IR of function fused_unused, called from main: parameter %p1 of the primitive function is never used/,
      );
      const stale: CallNode = { ...gcall(relu, [p0]), type: tensorType([2], 'float32') };
      const bad = gfunc([p0], stale, 'fused_stale', true);
      expect(problem(gfunc([x], gcallFunc(bad, [x], [])))).toMatch(
        /function fused_stale, called from main: call has type float32\[2\] but relu's type rule gives float32\[2,2\]/,
      );
    });

    it('names where the graph comes from', () => {
      expect(problem(gfunc([x], gcall(relu, [y])), { where: 'after fold-constants' })).toMatch(
        /^graph IR of function main \(after fold-constants\): variable %y is not a parameter/,
      );
    });
  });
});
