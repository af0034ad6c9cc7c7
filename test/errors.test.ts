// Bad input gives a clear KilnError with a stable code and context, and writes nothing partial.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers/temp.js';
import { compile, load, KilnError } from '../src/index.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';

const addModel = () =>
  buildModel({
    inputs: [
      ['x', 'float32', [2, 3]],
      ['y', 'float32', [2, 3]],
    ],
    outputs: [['z', 'float32', [2, 3]]],
    nodes: [
      { op: 'Add', inputs: ['x', 'y'], outputs: ['s'], name: 'add0' },
      { op: 'Relu', inputs: ['s'], outputs: ['z'], name: 'relu0' },
    ],
  });

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<KilnError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(KilnError);
    return e as KilnError;
  }
  throw new Error('expected a KilnError');
}

describe('bad models', () => {
  it('rejects a truncated model', async () => {
    const bytes = addModel();
    const e = await codeOf(compile(bytes.subarray(0, Math.floor(bytes.length * 0.6))));
    expect(e.code).toBe('E_MODEL_DECODE');
    expect(e.message).toMatch(/truncated or corrupt/);
  });

  it('rejects bytes that are not a model', async () => {
    const e = await codeOf(compile(new TextEncoder().encode('definitely not protobuf \u0000\u0001 bytes')));
    expect(['E_MODEL_DECODE']).toContain(e.code);
  });

  it('names the node, op and opset of an unsupported op', async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [4]]],
      outputs: [['y', 'float32', [4]]],
      nodes: [{ op: 'FancyUnknownOp', inputs: ['x'], outputs: ['y'], name: 'weird_node' }],
    });
    const e = await codeOf(compile(bytes));
    expect(e.code).toBe('E_UNSUPPORTED_OP');
    expect(e.node).toBe('weird_node');
    expect(e.op).toBe('FancyUnknownOp');
    expect(e.opset).toBe(17);
    expect(e.hint).toBeTruthy();
  });

  it('rejects an opset newer than Kiln knows', async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [4]]],
      outputs: [['y', 'float32', [4]]],
      nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['y'] }],
      opset: 99,
    });
    const e = await codeOf(compile(bytes));
    expect(e.code).toBe('E_UNSUPPORTED_OPSET');
    expect(e.message).toMatch(/99/);
  });

  it('reports a shape mismatch at the node that makes it', async () => {
    const bytes = buildModel({
      inputs: [
        ['x', 'float32', [2, 3]],
        ['y', 'float32', [4, 5]],
      ],
      outputs: [['z', 'float32', [2, 3]]],
      nodes: [{ op: 'Add', inputs: ['x', 'y'], outputs: ['z'], name: 'bad_add' }],
    });
    const e = await codeOf(compile(bytes));
    expect(e.code).toBe('E_SHAPE');
    expect(e.node).toBe('bad_add');
  });

  it('reports a dangling input name', async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [4]]],
      outputs: [['y', 'float32', [4]]],
      nodes: [{ op: 'Relu', inputs: ['nope'], outputs: ['y'], name: 'r' }],
    });
    const e = await codeOf(compile(bytes));
    expect(e.code).toBe('E_MODEL_INVALID');
    expect(e.message).toMatch(/nope/);
  });
});

describe('bad run-time input', () => {
  it('names wrong input names, shapes and dtypes', async () => {
    const m = await load((await compile(addModel())).artifact);
    const x = randomF32([2, 3]),
      y = randomF32([2, 3], 2);
    expect((await codeOf(() => m.runSync({ x, why: y }))).code).toBe('E_INPUT');
    const missing = await codeOf(() => m.runSync({ x }));
    expect(missing.message).toMatch(/missing input 'y'/);
    const shape = await codeOf(() => m.runSync({ x, y: randomF32([3, 2]) }));
    expect(shape.message).toMatch(/shape \[3,2\].*\[2,3\]/);
    const dtype = await codeOf(() =>
      m.runSync({ x, y: { dtype: 'float64', shape: [2, 3], data: new Float64Array(6) } }),
    );
    expect(dtype.message).toMatch(/dtype float64/);
    // still works after the errors
    const z = m.runSync({ x, y }).z.data as Float32Array;
    expect(z[0]).toBe(Math.max(0, Math.fround((x.data[0] as number) + (y.data[0] as number))));
  });
});

describe('damaged artifacts', () => {
  it('rejects truncated, altered and foreign artifacts', async () => {
    const art = (await compile(addModel())).artifact;
    expect((await codeOf(load(art.subarray(0, art.length - 10)))).code).toBe('E_ARTIFACT');
    for (const at of [60, Math.floor(art.length / 2), art.length - 1]) {
      const bad = art.slice();
      bad[at] ^= 0x5a;
      const e = await codeOf(load(bad));
      expect(e.code).toBe('E_ARTIFACT');
      expect(e.message).toMatch(/damaged|checksum/);
    }
    expect((await codeOf(load(new Uint8Array(100)))).message).toMatch(/magic/);
    const future = art.slice();
    new DataView(future.buffer).setUint32(4, 999, true);
    expect((await codeOf(load(future))).message).toMatch(/version 999/);
  });
});

describe('kiln CLI on bad input', () => {
  const cli = join(process.cwd(), 'dist/cli/kiln.js');
  it('fails with a clear message and writes no file', () => {
    const dir = tempDir('kiln-bad-');
    const model = join(dir, 'broken.onnx');
    writeFileSync(model, addModel().subarray(0, 40));
    let stderr = '';
    try {
      execFileSync('node', [cli, 'compile', model, '-o', join(dir, 'out.kiln')], { stdio: 'pipe' });
    } catch (e) {
      stderr = String((e as { stderr: Buffer }).stderr);
      expect((e as { status: number }).status).toBe(1);
    }
    expect(stderr).toMatch(/E_MODEL_DECODE/);
    expect(stderr).not.toMatch(/at .*\.js:\d+/); // no stack trace
    expect(existsSync(join(dir, 'out.kiln'))).toBe(false);
    expect(readdirSync(dir)).toEqual(['broken.onnx']);
  });
});
