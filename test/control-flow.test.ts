// If, Loop and Scan compiled: regions of the graph IR whose bodies have kernels of their own, run by the artifact's
// control program. Each model is built with the ONNX model builder and compared with ONNX Runtime, on feeds that
// take every branch and stop loops at different iterations (trip counts and conditions fed at run time).
import { describe, expect, it } from 'vitest';
import { compile, KilnError, load, type Tensor } from '../src/index.js';
import { type GraphSpec, type ModelSpec, buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { printFunc } from '../src/relay-ir/printer.js';
import { runOrt } from './helpers/ort.js';
import { readFileSync } from 'node:fs';
import { assemble } from './helpers/artifact-surgery.js';
import { readArtifact } from '../src/runtime/artifact.js';
import type { ControlStep } from '../src/runtime/artifact-format.js';

const i64 = (v: number): Tensor => ({ dtype: 'int64', shape: [], data: new BigInt64Array([BigInt(v)]) });
const bool = (v: boolean): Tensor => ({ dtype: 'bool', shape: [], data: new Uint8Array([v ? 1 : 0]) });
const f32 = (v: number): Tensor => ({ dtype: 'float32', shape: [], data: new Float32Array([v]) });
const scalarF = (name: string, v: number) => ({ [name]: f32(v) });

/** Compiles once, then runs every feed set on Kiln and ONNX Runtime and compares all outputs. */
async function matchesOrt(spec: ModelSpec, feedSets: Record<string, Tensor>[]) {
  const bytes = buildModel(spec);
  const compiled = await compile(bytes);
  const model = await load(compiled.artifact);
  for (const feeds of feedSets) {
    const got = await model.run(feeds);
    const want = await runOrt(bytes, feeds);
    for (const [name, w] of Object.entries(want)) {
      expect(compareTensors(got[name], w, { rtol: 1e-4, atol: 1e-5 })?.message, name).toBeUndefined();
    }
  }
  return compiled;
}

/** A loop body (iteration number, condition, carried values) -> (condition, next values, scan slices). */
const body = (
  carried: [string, 'float32', number[]][],
  outputs: [string, 'float32' | 'bool', number[]][],
  nodes: GraphSpec['nodes'],
): { graph: GraphSpec } => ({
  graph: {
    inputs: [['i', 'int64', []], ['c', 'bool', []], ...carried],
    outputs: [['c_out', 'bool', []], ...outputs],
    nodes,
  },
});

describe('control flow against ONNX Runtime', () => {
  it('a Loop with a run-time trip count and a computed condition, carried state and outer-scope values', async () => {
    const spec: ModelSpec = {
      opset: 17,
      inputs: [
        ['M', 'int64', []],
        ['cond', 'bool', []],
        ['x', 'float32', [2, 3]],
        ['y', 'float32', [2, 3]],
        ['limit', 'float32', []],
      ],
      outputs: [['x_final', 'float32', [2, 3]]],
      initializers: { b: { dtype: 'float32', shape: [3], data: new Float32Array([0.5, -0.25, 1]) } },
      nodes: [
        { op: 'Relu', inputs: ['y'], outputs: ['a'] },
        {
          op: 'Loop',
          inputs: ['M', 'cond', 'x'],
          outputs: ['x_final'],
          attrs: {
            body: body(
              [['xc', 'float32', [2, 3]]],
              [['xn', 'float32', [2, 3]]],
              [
                { op: 'Cast', inputs: ['i'], outputs: ['fi'], attrs: { to: 1 } },
                { op: 'Mul', inputs: ['xc', 'a'], outputs: ['xa'] },
                { op: 'Add', inputs: ['xa', 'b'], outputs: ['xb'] },
                { op: 'Add', inputs: ['xb', 'fi'], outputs: ['xn'] },
                { op: 'ReduceSum', inputs: ['xn'], outputs: ['s'], attrs: { keepdims: 0 } },
                { op: 'Less', inputs: ['s', 'limit'], outputs: ['c_out'] },
              ],
            ),
          },
        },
      ],
    };
    const x = randomF32([2, 3], 1),
      y = randomF32([2, 3], 2);
    const compiled = await matchesOrt(spec, [
      { M: i64(10), cond: bool(true), x, y, ...scalarF('limit', 1e9) }, // all 10 iterations
      { M: i64(10), cond: bool(true), x, y, ...scalarF('limit', 8) }, // stops on the condition
      { M: i64(0), cond: bool(true), x, y, ...scalarF('limit', 1e9) }, // no iteration
      { M: i64(5), cond: bool(false), x, y, ...scalarF('limit', 1e9) }, // condition false before the first
    ]);
    expect(compiled.header.control?.some((s) => s.op === 'loop')).toBe(true);
    // the body is a function of the graph IR, with the outer-scope values it reads as params
    const text = printFunc(compiled.graph);
    expect(text).toMatch(
      /fn x_final_body\(%i: int64\[\], %c: bool\[\], %xc: float32\[2,3\], %a: float32\[2,3\], %limit/,
    );
    expect(text).toMatch(/= loop\(%M, %cond, %x, /);
  });

  it('a Loop with a compile-time trip count too long to unroll: scan outputs and the iteration number', async () => {
    const spec: ModelSpec = {
      opset: 17,
      inputs: [['h0', 'float32', [4]]],
      outputs: [
        ['h', 'float32', [4]],
        ['hs', 'float32', [40, 4]],
      ],
      initializers: {
        M: i64(40),
        w: { dtype: 'float32', shape: [4, 4], data: randomF32([4, 4], 3).data },
      },
      nodes: [
        {
          op: 'Loop',
          inputs: ['M', '', 'h0'],
          outputs: ['h', 'hs'],
          attrs: {
            body: body(
              [['hc', 'float32', [4]]],
              [
                ['hn', 'float32', [4]],
                ['scan', 'float32', [4]],
              ],
              [
                { op: 'Identity', inputs: ['c'], outputs: ['c_out'] },
                { op: 'Cast', inputs: ['i'], outputs: ['fi'], attrs: { to: 1 } },
                { op: 'Mul', inputs: ['fi', 'fi'], outputs: ['fi2'] },
                { op: 'MatMul', inputs: ['hc', 'w'], outputs: ['hw'] },
                { op: 'Add', inputs: ['hw', 'fi'], outputs: ['ha'] },
                { op: 'Tanh', inputs: ['ha'], outputs: ['hn'] },
                { op: 'Mul', inputs: ['hn', 'fi2'], outputs: ['scan'] },
              ],
            ),
          },
        },
      ],
    };
    await matchesOrt(spec, [{ h0: randomF32([4], 4) }, { h0: randomF32([4], 5) }]);
  });

  it('an If on a computed condition whose branches read outer-scope values', async () => {
    const branch = (nodes: GraphSpec['nodes']): { graph: GraphSpec } => ({
      graph: { inputs: [], outputs: [['r', 'float32', [3, 4]]], nodes },
    });
    const spec: ModelSpec = {
      opset: 17,
      inputs: [
        ['x', 'float32', [3, 4]],
        ['w', 'float32', [3, 4]],
      ],
      outputs: [['out', 'float32', [3, 4]]],
      nodes: [
        { op: 'ReduceSum', inputs: ['x'], outputs: ['s'], attrs: { keepdims: 0 } },
        { op: 'Constant', inputs: [], outputs: ['zero'], attrs: { value: f32(0) } },
        { op: 'Greater', inputs: ['s', 'zero'], outputs: ['cond'] },
        {
          op: 'If',
          inputs: ['cond'],
          outputs: ['out'],
          attrs: {
            then_branch: branch([
              { op: 'Constant', inputs: [], outputs: ['two'], attrs: { value: f32(2) } },
              { op: 'Mul', inputs: ['x', 'two'], outputs: ['x2'] },
              { op: 'Add', inputs: ['x2', 'w'], outputs: ['r'] },
            ]),
            else_branch: branch([
              { op: 'Sub', inputs: ['x', 'w'], outputs: ['d'] },
              { op: 'Sigmoid', inputs: ['d'], outputs: ['r'] },
            ]),
          },
        },
      ],
    };
    const pos = { ...randomF32([3, 4], 6), data: randomF32([3, 4], 6).data.map((v) => Math.abs(v) + 0.1) };
    const neg = { ...pos, data: pos.data.map((v) => -v) };
    const compiled = await matchesOrt(spec, [
      { x: pos, w: randomF32([3, 4], 7) },
      { x: neg, w: randomF32([3, 4], 8) },
    ]);
    expect(compiled.header.control?.some((s) => s.op === 'if')).toBe(true);
  });

  it('nested: a Loop inside an If, an If inside the Loop on the iteration number', async () => {
    const inner = (nodes: GraphSpec['nodes']): { graph: GraphSpec } => ({
      graph: { inputs: [], outputs: [['r', 'float32', [2, 2]]], nodes },
    });
    const loopBody = body(
      [['xc', 'float32', [2, 2]]],
      [['xn', 'float32', [2, 2]]],
      [
        { op: 'Identity', inputs: ['c'], outputs: ['c_out'] },
        { op: 'Constant', inputs: [], outputs: ['two'], attrs: { value: i64(2) } },
        { op: 'Mod', inputs: ['i', 'two'], outputs: ['odd'] },
        { op: 'Constant', inputs: [], outputs: ['zero'], attrs: { value: i64(0) } },
        { op: 'Equal', inputs: ['odd', 'zero'], outputs: ['even'] },
        {
          op: 'If',
          inputs: ['even'],
          outputs: ['xn'],
          attrs: {
            then_branch: inner([{ op: 'Mul', inputs: ['xc', 'scale'], outputs: ['r'] }]),
            else_branch: inner([{ op: 'Sub', inputs: ['xc', 'x'], outputs: ['r'] }]),
          },
        },
      ],
    );
    const spec: ModelSpec = {
      opset: 17,
      inputs: [
        ['x', 'float32', [2, 2]],
        ['scale', 'float32', [2, 2]],
        ['M', 'int64', []],
        ['flag', 'bool', []],
      ],
      outputs: [['out', 'float32', [2, 2]]],
      nodes: [
        {
          op: 'If',
          inputs: ['flag'],
          outputs: ['out'],
          attrs: {
            then_branch: {
              graph: {
                inputs: [],
                outputs: [['looped', 'float32', [2, 2]]],
                nodes: [{ op: 'Loop', inputs: ['M', '', 'x'], outputs: ['looped'], attrs: { body: loopBody } }],
              },
            },
            else_branch: inner([{ op: 'Neg', inputs: ['x'], outputs: ['r'] }]),
          },
        },
      ],
    };
    const x = randomF32([2, 2], 9),
      scale = randomF32([2, 2], 10);
    await matchesOrt(spec, [
      { x, scale, M: i64(5), flag: bool(true) },
      { x, scale, M: i64(2), flag: bool(true) },
      { x, scale, M: i64(5), flag: bool(false) },
    ]);
  });

  it('Scan along axis 1 in reverse, with a state and a scan output on axis 1', async () => {
    const spec: ModelSpec = {
      opset: 16,
      inputs: [
        ['s0', 'float32', [3, 2]],
        ['x', 'float32', [3, 5, 2]],
      ],
      outputs: [
        ['s', 'float32', [3, 2]],
        ['ys', 'float32', [3, 5, 2]],
      ],
      nodes: [
        {
          op: 'Scan',
          inputs: ['s0', 'x'],
          outputs: ['s', 'ys'],
          attrs: {
            num_scan_inputs: 1,
            scan_input_axes: [1],
            scan_input_directions: [1],
            scan_output_axes: [1],
            body: {
              graph: {
                inputs: [
                  ['sc', 'float32', [3, 2]],
                  ['xs', 'float32', [3, 2]],
                ],
                outputs: [
                  ['sn', 'float32', [3, 2]],
                  ['y', 'float32', [3, 2]],
                ],
                nodes: [
                  { op: 'Add', inputs: ['sc', 'xs'], outputs: ['sn'] },
                  { op: 'Mul', inputs: ['sn', 'xs'], outputs: ['y'] },
                ],
              },
            },
          },
        },
      ],
    };
    await matchesOrt(spec, [{ s0: randomF32([3, 2], 11), x: randomF32([3, 5, 2], 12) }]);
  });
});

// scripts/gen_control_flow_models.py: torch.jit.script-ed modules exported with torch.onnx.export
describe('torch.jit.script control flow exported to ONNX, against ONNX Runtime', () => {
  const fixture = (name: string) => readFileSync(`.cache/control-flow/${name}/model.onnx`);
  async function matchesOrtOnFile(bytes: Uint8Array, feedSets: Record<string, Tensor>[]) {
    const model = await load((await compile(bytes)).artifact);
    for (const feeds of feedSets) {
      const got = await model.run(feeds);
      const want = await runOrt(bytes, feeds);
      for (const [name, w] of Object.entries(want)) expect(compareTensors(got[name], w)?.message, name).toBeUndefined();
    }
  }

  it('a for loop over an input trip count, then a branch on the result (Loop, If)', async () => {
    const x = randomF32([2, 4], 13);
    await matchesOrtOnFile(
      fixture('for_then_if'),
      [0, 1, 3, 7].map((n) => ({ x, n: i64(n) })),
    );
  });

  it('a while loop on a data-dependent condition with an `and` (Loop whose body holds an If)', async () => {
    const x = randomF32([3, 2], 14);
    await matchesOrtOnFile(
      fixture('while_below'),
      [0.5, 10, 100, 1e6].map((limit) => ({ x, limit: f32(limit) })),
    );
  });
});

describe('control flow errors', () => {
  const runtimeTripWithScan: ModelSpec = {
    opset: 17,
    inputs: [
      ['M', 'int64', []],
      ['x', 'float32', [2]],
    ],
    outputs: [['ys', 'float32', ['n', 2]]],
    nodes: [
      {
        op: 'Loop',
        inputs: ['M', '', 'x'],
        outputs: ['xf', 'ys'],
        attrs: {
          body: body(
            [['xc', 'float32', [2]]],
            [
              ['xn', 'float32', [2]],
              ['y', 'float32', [2]],
            ],
            [
              { op: 'Identity', inputs: ['c'], outputs: ['c_out'] },
              { op: 'Neg', inputs: ['xc'], outputs: ['xn'] },
              { op: 'Identity', inputs: ['xc'], outputs: ['y'] },
            ],
          ),
        },
      },
    ],
  };

  it('scan outputs of a Loop whose trip count is known only at run time: E_DYNAMIC naming the trip count', async () => {
    const err = await compile(buildModel(runtimeTripWithScan)).catch((e) => e);
    expect(err).toBeInstanceOf(KilnError);
    expect(err.code).toBe('E_DYNAMIC');
    expect(err.message).toMatch(/trip count/);
    expect(err.hint).toMatch(/specialize/);
  });

  it('control flow for WebGPU: E_UNSUPPORTED naming control flow and the target (CUDA runs it: cuda-runtime.test.ts)', async () => {
    const spec: ModelSpec = {
      ...runtimeTripWithScan,
      outputs: [['xf', 'float32', [2]]],
      nodes: [
        {
          op: 'Loop',
          inputs: ['M', '', 'x'],
          outputs: ['xf'],
          attrs: {
            body: body(
              [['xc', 'float32', [2]]],
              [['xn', 'float32', [2]]],
              [
                { op: 'Identity', inputs: ['c'], outputs: ['c_out'] },
                { op: 'Neg', inputs: ['xc'], outputs: ['xn'] },
              ],
            ),
          },
        },
      ],
    };
    for (const target of ['webgpu'] as const) {
      const err = await compile(buildModel(spec), { target }).catch((e) => e);
      expect(err).toBeInstanceOf(KilnError);
      expect(err.code).toBe('E_UNSUPPORTED');
      expect(err.message).toMatch(/control flow.*not WebGPU/);
    }
  });

  it('a loop-carried value that grows (a Concat in the body): E_DYNAMIC naming the shapes', async () => {
    const spec: ModelSpec = {
      opset: 17,
      inputs: [['x', 'float32', [2]]],
      outputs: [['xf', 'float32', ['n']]],
      initializers: { M: i64(50) },
      nodes: [
        {
          op: 'Loop',
          inputs: ['M', '', 'x'],
          outputs: ['xf'],
          attrs: {
            body: body(
              [['xc', 'float32', [2]]],
              [['xn', 'float32', [4]]],
              [
                { op: 'Identity', inputs: ['c'], outputs: ['c_out'] },
                ...[0, 1, 2, 3, 4, 5].map((k) => ({ op: 'Identity', inputs: ['c'], outputs: [`pad${k}`] })),
                { op: 'Concat', inputs: ['xc', 'xc'], outputs: ['xn'], attrs: { axis: 0 } },
              ],
            ),
          },
        },
      ],
    };
    const err = await compile(buildModel(spec)).catch((e) => e);
    expect(err).toBeInstanceOf(KilnError);
    expect(err.code).toBe('E_DYNAMIC');
    expect(err.message).toMatch(/loop-carried value 0 enters as float32\[2\] and leaves as float32\[4\]/);
  });

  it('a region whose arguments are all constants folds at compile time (its bodies run on the compiler)', async () => {
    const spec: ModelSpec = {
      opset: 17,
      inputs: [['x', 'float32', [3]]],
      outputs: [['y', 'float32', [3]]],
      initializers: {
        M: i64(60),
        h0: { dtype: 'float32', shape: [3], data: new Float32Array([0.1, 0.2, 0.3]) },
      },
      nodes: [
        {
          op: 'Loop',
          inputs: ['M', '', 'h0'],
          outputs: ['h'],
          attrs: {
            body: body(
              [['hc', 'float32', [3]]],
              [['hn', 'float32', [3]]],
              [
                { op: 'Identity', inputs: ['c'], outputs: ['c_out'] },
                { op: 'Cast', inputs: ['i'], outputs: ['fi'], attrs: { to: 1 } },
                { op: 'Sin', inputs: ['fi'], outputs: ['s'] },
                { op: 'Mul', inputs: ['hc', 's'], outputs: ['hs'] },
                { op: 'Add', inputs: ['hc', 'hs'], outputs: ['ha'] },
                { op: 'Tanh', inputs: ['ha'], outputs: ['hn'] },
              ],
            ),
          },
        },
        { op: 'Add', inputs: ['x', 'h'], outputs: ['y'] },
      ],
    };
    const compiled = await matchesOrt(spec, [{ x: randomF32([3], 21) }]);
    expect(compiled.header.control).toBeUndefined();
  });

  it('a damaged control program is E_ARTIFACT naming the field, at load', async () => {
    const spec: ModelSpec = {
      opset: 17,
      inputs: [
        ['x', 'float32', [2]],
        ['flag', 'bool', []],
      ],
      outputs: [['y', 'float32', [2]]],
      nodes: [
        {
          op: 'If',
          inputs: ['flag'],
          outputs: ['y'],
          attrs: {
            then_branch: {
              graph: {
                inputs: [],
                outputs: [['r', 'float32', [2]]],
                nodes: [{ op: 'Neg', inputs: ['x'], outputs: ['r'] }],
              },
            },
            else_branch: {
              graph: {
                inputs: [],
                outputs: [['r', 'float32', [2]]],
                nodes: [{ op: 'Exp', inputs: ['x'], outputs: ['r'] }],
              },
            },
          },
        },
      ],
    };
    const parts = await readArtifact((await compile(buildModel(spec))).artifact);
    const edits: [string, (c: ControlStep[]) => void, RegExp][] = [
      [
        'call index',
        (c) => ((c[0] as { then: ControlStep[] }).then[0] = { op: 'call', call: 99 }),
        /control\[0\]\.then\[0\]\.call is 99/,
      ],
      ['address', (c) => ((c[0] as { cond: number }).cond = 1e12), /control\[0\]\.cond/],
      ['op', (c) => ((c[0] as { op: string }).op = 'jump'), /control\[0\]\.op is 'jump'/],
    ];
    for (const [what, edit, message] of edits) {
      const bytes = await assemble(parts.header, parts, (h) => edit(h.control!));
      const err = await load(bytes).catch((e) => e);
      expect(err, what).toBeInstanceOf(KilnError);
      expect(err.code, what).toBe('E_ARTIFACT');
      expect(err.message, what).toMatch(message);
    }
  });
});
