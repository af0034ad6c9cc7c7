// The runtime never answers bad input or a damaged artifact with a raw exception, wrong outputs or a hang: feeds are
// checked field by field (E_INPUT naming the input), headers that pass a recomputed checksum are checked field by
// field (E_ARTIFACT naming the field), a memory plan past 4 GiB is E_SHAPE, traps are E_ARTIFACT, and a model loaded
// with timeoutMs runs in a worker whose endless kernel is stopped with E_TIMEOUT.
import { beforeAll, describe, expect, it } from 'vitest';
import { compile } from '../src/compiler/compile.js';
import { load, KilnError, type LoadedModel } from '../src/node/runtime.js';
import { readArtifact } from '../src/runtime/artifact.js';
import type { ArtifactHeader } from '../src/runtime/artifact-format.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import type { Tensor } from '../src/runtime/tensor.js';
import { assemble, endlessKernels, trappingKernels, withKernelBodies } from './helpers/artifact-surgery.js';

// z = relu(x + w) * y, w a weight: weights section, two inputs, one output
const model = () =>
  buildModel({
    inputs: [
      ['x', 'float32', [2, 3]],
      ['y', 'float32', [2, 3]],
    ],
    outputs: [['z', 'float32', [2, 3]]],
    initializers: { w: randomF32([2, 3], 7) },
    nodes: [
      { op: 'Add', inputs: ['x', 'w'], outputs: ['s'], name: 'add0' },
      { op: 'Relu', inputs: ['s'], outputs: ['r'], name: 'relu0' },
      { op: 'Mul', inputs: ['r', 'y'], outputs: ['z'], name: 'mul0' },
    ],
  });

async function kilnError(p: Promise<unknown> | (() => unknown)): Promise<KilnError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (!(e instanceof KilnError))
      throw new Error(`expected a KilnError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    return e;
  }
  throw new Error('expected a KilnError, got a result');
}

let artifact: Uint8Array;
let header: ArtifactHeader;
let parts: Awaited<ReturnType<typeof readArtifact>>;
let m: LoadedModel;
const x = randomF32([2, 3], 1),
  y = randomF32([2, 3], 2);
let expected: Tensor;

beforeAll(async () => {
  artifact = (await compile(model())).artifact;
  parts = await readArtifact(artifact);
  header = parts.header;
  m = await load(artifact, { threads: 1 });
  expected = m.runSync({ x, y }).z;
  // the reference is real: relu(x + w) * y is not all zeros
  expect(Array.from(expected.data as Float32Array).some((v) => v !== 0)).toBe(true);
  return () => m.dispose();
});

describe('run() feed validation', () => {
  const f32 = (shape: number[], data: unknown) => ({ dtype: 'float32', shape, data });
  const cases: [string, unknown, RegExp][] = [
    ['feeds undefined', undefined, /feeds are undefined/],
    ['feeds null', null, /feeds are null/],
    ['feeds a number', 5, /feeds are a number/],
    ['feeds an array', [x, y], /feeds are a plain array/],
    ['feeds a typed array', new Float32Array(6), /feeds are a Float32Array/],
    ['a feed that is a typed array', { x: new Float32Array(6), y }, /input 'x' is a Float32Array, not a tensor/],
    ['a feed that is null', { x: null, y }, /input 'x' is null/],
    ['a feed that is a string', { x: 'hello', y }, /input 'x' is a string/],
    ['dtype missing', { x: { shape: [2, 3], data: new Float32Array(6) }, y }, /input 'x': dtype is undefined/],
    [
      'dtype a number',
      { x: { dtype: 1, shape: [2, 3], data: new Float32Array(6) }, y },
      /input 'x': dtype is a number/,
    ],
    [
      'dtype unknown',
      { x: { dtype: 'int4', shape: [2, 3], data: new Float32Array(6) }, y },
      /input 'x' has unknown dtype 'int4'/,
    ],
    [
      'dtype other',
      { x: { dtype: 'int32', shape: [2, 3], data: new Int32Array(6) }, y },
      /input 'x' has dtype int32, the model expects float32/,
    ],
    ['shape missing', { x: { dtype: 'float32', data: new Float32Array(6) }, y }, /input 'x': shape is undefined/],
    ['shape not an array', { x: f32(6 as never, new Float32Array(6)), y }, /input 'x': shape is a number/],
    [
      'shape with a string',
      { x: f32(['2', 3], new Float32Array(6)), y },
      /input 'x': dimension 0 of the shape is a string/,
    ],
    [
      'shape with a fraction',
      { x: f32([2.5, 3], new Float32Array(6)), y },
      /input 'x': dimension 0 .* non-negative integers/,
    ],
    [
      'shape with a negative',
      { x: f32([-2, -3], new Float32Array(6)), y },
      /input 'x': dimension 0 .* non-negative integers/,
    ],
    ['shape with NaN', { x: f32([2, NaN], new Float32Array(6)), y }, /input 'x': dimension 1/],
    [
      'shape other',
      { x: f32([3, 2], new Float32Array(6)), y },
      /input 'x' has shape \[3,2\], the model was compiled for \[2,3\]/,
    ],
    ['data null', { x: f32([2, 3], null), y }, /input 'x' \(float32\): data is null/],
    ['data missing', { x: f32([2, 3], undefined), y }, /input 'x' \(float32\): data is undefined/],
    ['data a string', { x: f32([2, 3], 'abcdef'), y }, /input 'x' \(float32\): data is a string/],
    ['data an ArrayBuffer', { x: f32([2, 3], new ArrayBuffer(24)), y }, /input 'x' \(float32\): data is an object/],
    [
      'data a DataView',
      { x: f32([2, 3], new DataView(new ArrayBuffer(24))), y },
      /input 'x' \(float32\): data is a DataView/,
    ],
    [
      'data a BigInt64Array',
      { x: f32([2, 3], new BigInt64Array(6)), y },
      /input 'x' \(float32\): data is a BigInt64Array; float32 data is a Float32Array/,
    ],
    [
      'data a Float64Array',
      { x: f32([2, 3], new Float64Array(6)), y },
      /input 'x' \(float32\): data is a Float64Array/,
    ],
    ['data an Int32Array', { x: f32([2, 3], new Int32Array(6)), y }, /input 'x' \(float32\): data is a Int32Array/],
    [
      'data plain strings',
      { x: f32([2, 3], ['1', '2', '3', '4', '5', '6']), y },
      /input 'x' \(float32\): element 0 is a string/,
    ],
    [
      'data plain with a bigint',
      { x: f32([2, 3], [1, 2, 3n, 4, 5, 6]), y },
      /input 'x' \(float32\): element 2 is a bigint/,
    ],
    ['data plain with null', { x: f32([2, 3], [1, 2, 3, null, 5, 6]), y }, /input 'x' \(float32\): element 3 is null/],
    ['data too short', { x: f32([2, 3], new Float32Array(5)), y }, /input 'x' holds 5 values; shape \[2,3\] has 6/],
    ['data too long (plain)', { x: f32([2, 3], [1, 2, 3, 4, 5, 6, 7]), y }, /input 'x' holds 7 values/],
    ['unknown input', { x, y, q: x }, /unknown input 'q'/],
    ['missing input', { x }, /missing input 'y'/],
  ];
  it.each(cases)('%s: E_INPUT naming the input, in run and runSync', async (_what, feeds, message) => {
    for (const e of [await kilnError(m.run(feeds as never)), await kilnError(() => m.runSync(feeds as never))]) {
      expect(e.code).toBe('E_INPUT');
      expect(e.message).toMatch(message);
      expect(e.hint).toBeTruthy();
    }
  });

  it("accepts plain number arrays, and they give the typed array's outputs", async () => {
    const plain = { x: { dtype: 'float32', shape: [2, 3], data: Array.from(x.data as Float32Array) }, y } as never;
    expect((await m.run(plain)).z).toEqual(expected);
    // a Node Buffer-backed view, a subarray and an array from another realm-like path all work as typed arrays
    const big = new Float32Array(16);
    big.set(x.data as Float32Array, 5);
    expect(m.runSync({ x: { dtype: 'float32', shape: [2, 3], data: big.subarray(5, 11) }, y }).z).toEqual(expected);
  });

  it('still runs correctly after every error', () => {
    expect(m.runSync({ x, y }).z).toEqual(expected);
  });
});

/** A CUDA section of one kernel with one launch, `fields` over a valid launch's. */
function withCudaLaunch(h: ArtifactHeader, fields: Record<string, unknown>): void {
  const launch = { entry: 'k', grid: [1, 1, 1], block: [1, 1, 1], sharedBytes: 0, ...fields };
  h.cuda = {
    memoryBytes: h.memoryBytes,
    scratchAt: 0,
    sm: 80,
    ptxVersion: '8.0',
    ptx: '',
    kernels: [{ name: 'k', params: [], launches: [launch as never] }],
  };
}

describe('damaged artifact headers (checksum recomputed)', () => {
  it('the test helper reassembles a loadable artifact', async () => {
    const re = await load(await assemble(header, parts), { threads: 1 });
    expect(re.runSync({ x, y }).z).toEqual(expected);
    re.dispose();
  });

  const edits: [string, (h: ArtifactHeader) => void, RegExp][] = [
    [
      'negative weights section offset',
      (h) => {
        h.sections.weights.offset = -16;
      },
      /sections\.weights\.offset is -16/,
    ],
    [
      'weights section past the end',
      (h) => {
        h.sections.weights.length += 64;
      },
      /sections\.weights .* lies outside the file/,
    ],
    [
      'wasm section inside the header',
      (h) => {
        h.sections.wasm.offset = 8;
      },
      /sections\.wasm\.offset 8 lies inside the header/,
    ],
    [
      'wasm section length a string',
      (h) => {
        (h.sections.wasm as { length: unknown }).length = '100';
      },
      /sections\.wasm\.length is '100'/,
    ],
    [
      'sections missing',
      (h) => {
        delete (h as Partial<ArtifactHeader>).sections;
      },
      /sections is undefined/,
    ],
    [
      'negative weightsAt',
      (h) => {
        h.weightsAt = -64;
      },
      /weightsAt is -64/,
    ],
    [
      'weightsAt past memory',
      (h) => {
        h.weightsAt = h.memoryBytes;
      },
      /weights .* do not fit in memoryBytes/,
    ],
    [
      'memoryBytes fractional',
      (h) => {
        h.memoryBytes = 1000.5;
      },
      /memoryBytes is 1000.5/,
    ],
    [
      'memoryBytes negative',
      (h) => {
        h.memoryBytes = -1;
      },
      /memoryBytes is -1/,
    ],
    [
      'kernel index out of range',
      (h) => {
        h.calls[0].kernel = h.kernels.length + 3;
      },
      /calls\[0\]\.kernel is \d+, past the last of \d+ kernels/,
    ],
    [
      'kernel index negative',
      (h) => {
        h.calls[0].kernel = -1;
      },
      /calls\[0\]\.kernel is -1/,
    ],
    [
      'call argument negative',
      (h) => {
        h.calls[0].args[0] = -8;
      },
      /calls\[0\]\.args\[0\] is -8/,
    ],
    [
      'call argument past memory',
      (h) => {
        h.calls[0].args[0] = h.memoryBytes + 4096;
      },
      /calls\[0\]\.args\[0\] is \d+, past memoryBytes/,
    ],
    [
      'call with a missing argument',
      (h) => {
        h.calls[0].args.pop();
      },
      /calls\[0\] passes \d+ arguments to kernel .*, which takes \d+/,
    ],
    [
      'kernel phases not an array',
      (h) => {
        (h.kernels[0] as { phases: unknown }).phases = 'yes';
      },
      /kernels\[0\]\.phases is 'yes'/,
    ],
    [
      'kernel name missing',
      (h) => {
        (h.kernels[0] as { name: unknown }).name = 7;
      },
      /kernels\[0\]\.name is 7/,
    ],
    [
      'kernel name not in the module',
      (h) => {
        h.kernels[0].name = 'nope';
      },
      /kernel nope missing from the module/,
    ],
    [
      'input dtype unknown',
      (h) => {
        (h.inputs[0] as { dtype: string }).dtype = 'int4';
      },
      /inputs\[0\]\.dtype is 'int4'/,
    ],
    [
      'output dtype missing',
      (h) => {
        delete (h.outputs[0] as Partial<ArtifactHeader['outputs'][0]>).dtype;
      },
      /outputs\[0\]\.dtype is undefined/,
    ],
    [
      'input shape negative',
      (h) => {
        h.inputs[0].shape = [2, -3];
      },
      /inputs\[0\]\.shape\[1\] is -3/,
    ],
    [
      'input shape with a string',
      (h) => {
        (h.inputs[0].shape as unknown[])[0] = 'N';
      },
      /inputs\[0\]\.shape\[0\] is 'N'/,
    ],
    [
      'output shape huge',
      (h) => {
        h.outputs[0].shape = [1e6, 1e6];
      },
      /outputs\[0\] .* lies outside memoryBytes/,
    ],
    [
      'input offset negative',
      (h) => {
        h.inputs[1].offset = -4;
      },
      /inputs\[1\]\.offset is -4/,
    ],
    [
      'input offset not a multiple of its element size',
      (h) => {
        h.inputs[0].offset += 3;
      },
      /inputs\[0\]\.offset \d+ is not a multiple of 4/,
    ],
    [
      'output offset past memory',
      (h) => {
        h.outputs[0].offset = h.memoryBytes - 4;
      },
      /outputs\[0\] .* lies outside memoryBytes/,
    ],
    [
      'input name duplicated',
      (h) => {
        h.inputs[1].name = h.inputs[0].name;
      },
      /inputs\[1\]\.name 'x' appears twice/,
    ],
    [
      'inputs not an array',
      (h) => {
        (h as { inputs: unknown }).inputs = {};
      },
      /inputs is an object, not an array/,
    ],
    [
      'webgpu section with a bad value',
      (h) => {
        h.webgpu = {
          values: [{ dtype: 'float32', size: 4, kind: 'weight', weight: { offset: -4, length: 16 } }],
          inputs: [],
          outputs: [],
          kernels: [],
          calls: [],
        };
      },
      /webgpu\.values\[0\]\.weight\.offset is -4/,
    ],
    [
      'cuda section with a bad launch',
      (h) => withCudaLaunch(h, { grid: [1, 1] }),
      /cuda\.kernels\[0\]\.launches\[0\]\.grid has 2 entries/,
    ],
    ...(
      [
        [['batch', 1, 1], /runIds\[0\] names 'batch', which is no symbol/],
        [[['*', 4], 1, 1], /runIds\[0\] has 2 entries, not 3/],
        [[1, 1], /runIds has 2 entries, not 3/],
      ] as const
    ).map(([runIds, message]): (typeof edits)[number] => [
      `cuda launch with run ids ${JSON.stringify(runIds)}`,
      (h) => withCudaLaunch(h, { runIds }),
      message,
    ]),
  ];
  it.each(edits)('%s: E_ARTIFACT naming the field', async (_what, edit, message) => {
    const bad = await assemble(header, parts, edit);
    const e = await kilnError(load(bad, { threads: 1 }));
    expect(e.code).toBe('E_ARTIFACT');
    expect(e.message).toMatch(/artifact is damaged|missing from the module/);
    expect(e.message).toMatch(message);
    expect(e.hint).toMatch(/recompile/);
  });

  it('a memory plan past 4 GiB is E_SHAPE naming the size and the limit, not a RangeError', async () => {
    for (const memoryBytes of [2 ** 32 + 65536, 2 ** 40]) {
      const e = await kilnError(
        load(
          await assemble(header, parts, (h) => {
            h.memoryBytes = memoryBytes;
          }),
          { threads: 1 },
        ),
      );
      expect(e.code).toBe('E_SHAPE');
      expect(e.message).toContain(`${memoryBytes} bytes`);
      expect(e.message).toContain(`${2 ** 32} bytes`);
    }
  });

  it('a kernel that traps gives E_ARTIFACT naming the kernel, and the model stays usable', async () => {
    const bad = await withKernelBodies(parts, trappingKernels);
    for (const threads of [1, 2]) {
      const t = await load(bad, { threads, minParallelWork: 0 });
      for (let i = 0; i < 2; i++) {
        const e = await kilnError(t.run({ x, y }));
        expect(e.code).toBe('E_ARTIFACT');
        expect(e.message).toMatch(/code trapped in kernel .*unreachable/);
      }
      t.dispose();
    }
  });

  it('a load option or artifact of the wrong type is a KilnError', async () => {
    expect((await kilnError(load('model.kiln' as never))).code).toBe('E_INPUT');
    expect((await kilnError(load(new Float32Array(64) as never))).code).toBe('E_INPUT');
    for (const bad of [null, undefined, 'model.kiln', new Float32Array(64)]) {
      expect((await kilnError(load(bad as never, { timeoutMs: 5000 }))).code).toBe('E_INPUT');
    }
    expect((await kilnError(load(artifact, { threads: 1, timeoutMs: 5000, target: 'webgpu' }))).code).toBe(
      'E_UNSUPPORTED',
    );
    expect((await kilnError(load(artifact, { timeoutMs: -5 }))).message).toMatch(/timeoutMs is -5/);
    expect((await kilnError(load(artifact, { timeoutMs: 'soon' as never }))).message).toMatch(/timeoutMs is string/);
  });
});

describe('watchdog: load and run with timeoutMs', () => {
  it('a supervised run gives outputs identical to the in-thread run', async () => {
    const s = await load(artifact, { timeoutMs: 20_000 });
    try {
      expect(s.threads).toBeGreaterThanOrEqual(1);
      const out = await s.run({ x, y });
      expect(out.z).toEqual(expected);
      expect(out.z.data).toBeInstanceOf(Float32Array);
      // feeds are not detached, the caller can reuse them; concurrent runs queue
      expect((x.data as Float32Array).length).toBe(6);
      const [a, b] = await Promise.all([s.run({ x, y }), s.run({ x, y }, { timeoutMs: 10_000 })]);
      expect(a.z).toEqual(expected);
      expect(b.z).toEqual(expected);
      // input errors come back as the same KilnError
      const e = await kilnError(
        s.run({ x, y: { dtype: 'float32', shape: [2, 3], data: new Float64Array(6) } } as never),
      );
      expect(e.code).toBe('E_INPUT');
      expect(e.message).toMatch(/input 'y'/);
      const sync = await kilnError(() => s.runSync({ x, y }));
      expect(sync.code).toBe('E_UNSUPPORTED');
      expect(sync.message).toMatch(/runSync is not available .* timeoutMs/);
      expect((await s.run({ x, y })).z).toEqual(expected);
      // transferInputs: a feed that is its whole buffer moves (detached here), a view into a larger one is copied
      const own = { ...x, data: (x.data as Float32Array).slice() };
      const big = new Float32Array(12);
      big.set(y.data as Float32Array, 3);
      const view = { ...y, data: big.subarray(3, 9) };
      expect((await s.run({ x: own, y: view }, { transferInputs: true })).z).toEqual(expected);
      expect([own.data.byteLength, big.byteLength]).toEqual([0, 48]);
    } finally {
      s.dispose();
    }
    const after = await kilnError(s.run({ x, y }));
    expect(after.message).toMatch(/disposed/);
  });

  it('errors while loading in the worker come back as KilnErrors', async () => {
    const e = await kilnError(
      load(
        await assemble(header, parts, (h) => {
          h.memoryBytes = 2 ** 33;
        }),
        { timeoutMs: 20_000 },
      ),
    );
    expect(e.code).toBe('E_SHAPE');
    const d = await kilnError(load(artifact.subarray(0, artifact.length - 3), { timeoutMs: 20_000 }));
    expect(d.code).toBe('E_ARTIFACT');
  });

  it('run(feeds, { timeoutMs }) on an in-thread model says how to get a watchdog', async () => {
    const e = await kilnError(m.run({ x, y }, { timeoutMs: 100 }));
    expect(e.code).toBe('E_UNSUPPORTED');
    expect(e.message).toMatch(/load\(artifact, \{ timeoutMs \}\)/);
  });

  it('a kernel that loops forever is stopped: E_TIMEOUT within seconds, the model disposed, the process healthy', async () => {
    const endless = await withKernelBodies(parts, endlessKernels);
    for (const threads of [1, 2]) {
      const s = await load(endless, { timeoutMs: 20_000, threads, minParallelWork: 0 });
      const t0 = performance.now();
      const e = await kilnError(s.run({ x, y }, { timeoutMs: 500 }));
      const ms = performance.now() - t0;
      expect(e.code).toBe('E_TIMEOUT');
      expect(e.message).toMatch(/run took longer than 500 ms; the worker was stopped; the model must be loaded again/);
      expect(ms).toBeGreaterThanOrEqual(450);
      expect(ms).toBeLessThan(5000);
      const again = await kilnError(s.run({ x, y }));
      expect(again.message).toMatch(/disposed: a run took longer than 500 ms/);
      s.dispose();
    }
    // a load-time default applies to every run
    const s = await load(endless, { timeoutMs: 3000, threads: 1 });
    const e = await kilnError(s.run({ x, y }));
    expect(e.code).toBe('E_TIMEOUT');
    expect(e.message).toMatch(/3000 ms/);
    // the process is fine: a fresh model still runs, in the thread and supervised
    expect(m.runSync({ x, y }).z).toEqual(expected);
    const fresh = await load(artifact, { timeoutMs: 10_000 });
    expect((await fresh.run({ x, y })).z).toEqual(expected);
    fresh.dispose();
  });

  it('a load that takes too long is stopped with E_TIMEOUT', async () => {
    const e = await kilnError(load(artifact, { timeoutMs: 1 }));
    expect(e.code).toBe('E_TIMEOUT');
    expect(e.message).toMatch(/load took longer than 1 ms/);
  });
});
