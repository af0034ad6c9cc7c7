// Col2Im, MaxUnpool, DeformConv and RoiAlign beyond the ONNX node suite's cases, against ONNX Runtime: strides,
// dilations and asymmetric pads, batches and channels, overlapping pooling windows undone with and without an
// output_shape, groups and offset groups with masks, adaptive sampling and both pooling modes.
import { describe, expect, it } from 'vitest';
import { compile, load, type Tensor } from '../src/index.js';
import { type Attr, type ModelSpec, buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { runOrt } from './helpers/ort.js';
import { runReference } from './helpers/onnx-reference.js';
import { kilnError } from './helpers/errors.js';

const i64 = (values: number[]): Tensor => ({
  dtype: 'int64',
  shape: [values.length],
  data: BigInt64Array.from(values.map(BigInt)),
});

async function matchesOrt(spec: ModelSpec, feeds: Record<string, Tensor>) {
  const bytes = buildModel(spec);
  const m = await load((await compile(bytes)).artifact);
  const got = m.runSync(feeds);
  m.dispose();
  const want = await runOrt(bytes, feeds);
  for (const [name, w] of Object.entries(want)) {
    expect(got[name].shape, name).toEqual(w.shape);
    expect(compareTensors(got[name], w)?.message, name).toBeUndefined();
  }
}

describe('Col2Im matches ONNX Runtime', () => {
  it('2-D with strides, dilations and asymmetric pads over a batch of channels; 3-D', async () => {
    // image 7x9, block 3x2, dilations [2, 1], strides [2, 3], pads [1, 0, 2, 2]:
    // blocks = floor((7 + 3 - 5) / 2) + 1 = 3 by floor((9 + 2 - 2) / 3) + 1 = 4
    await matchesOrt(
      {
        opset: 18,
        inputs: [['x', 'float32', [2, 3 * 6, 12]]],
        outputs: [['y', 'float32', [2, 3, 7, 9]]],
        initializers: { image: i64([7, 9]), block: i64([3, 2]) },
        nodes: [
          {
            op: 'Col2Im',
            inputs: ['x', 'image', 'block'],
            outputs: ['y'],
            attrs: { dilations: [2, 1], strides: [2, 3], pads: [1, 0, 2, 2] },
          },
        ],
      },
      { x: randomF32([2, 18, 12], 1) },
    );
    await matchesOrt(
      {
        opset: 18,
        inputs: [['x', 'float32', [1, 2 * 8, 36]]],
        outputs: [['y', 'float32', [1, 2, 4, 4, 4]]],
        initializers: { image: i64([4, 4, 4]), block: i64([2, 2, 2]) },
        nodes: [{ op: 'Col2Im', inputs: ['x', 'image', 'block'], outputs: ['y'], attrs: { pads: [1, 0, 0, 0, 0, 0] } }],
      },
      { x: randomF32([1, 16, 36], 2) },
    );
  });
});

describe('MaxUnpool matches ONNX Runtime', () => {
  it('undoes a MaxPool of overlapping, padded windows, with an output_shape of the unpooled size', async () => {
    const pool = { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] };
    // input 7x7 -> pooled 4x4 -> unpooled (4 - 1) * 2 - 2 + 3 = 7 by 7
    await matchesOrt(
      {
        opset: 11,
        inputs: [['x', 'float32', [2, 3, 7, 7]]],
        outputs: [
          ['y', 'float32', [2, 3, 7, 7]],
          ['z', 'float32', [2, 3, 7, 7]],
        ],
        initializers: { shape: i64([2, 3, 7, 7]) },
        nodes: [
          { op: 'MaxPool', inputs: ['x'], outputs: ['p', 'i'], attrs: pool },
          { op: 'MaxUnpool', inputs: ['p', 'i'], outputs: ['y'], attrs: pool },
          { op: 'MaxUnpool', inputs: ['p', 'i', 'shape'], outputs: ['z'], attrs: pool },
        ],
      },
      { x: randomF32([2, 3, 7, 7], 3) },
    );
  });

  it('a larger output_shape pads after the unpooled values (as the ONNX reference and node case do)', async () => {
    const pool = { kernel_shape: [2, 2], strides: [2, 2] };
    const spec: ModelSpec = {
      opset: 11,
      inputs: [['x', 'float32', [2, 2, 6, 6]]],
      outputs: [['z', 'float32', [2, 2, 8, 7]]],
      initializers: { shape: i64([2, 2, 8, 7]) },
      nodes: [
        { op: 'MaxPool', inputs: ['x'], outputs: ['p', 'i'], attrs: pool },
        { op: 'MaxUnpool', inputs: ['p', 'i', 'shape'], outputs: ['z'], attrs: pool },
      ],
    };
    const bytes = buildModel(spec);
    const feeds = { x: randomF32([2, 2, 6, 6], 5) };
    const m = await load((await compile(bytes)).artifact);
    const got = m.runSync(feeds).z;
    m.dispose();
    expect(compareTensors(got, runReference(bytes, feeds).z)?.message).toBeUndefined();
  });

  it('1-D, indices fed at run time', async () => {
    await matchesOrt(
      {
        opset: 11,
        inputs: [
          ['x', 'float32', [1, 2, 3]],
          ['i', 'int64', [1, 2, 3]],
        ],
        outputs: [['y', 'float32', [1, 2, 6]]],
        nodes: [{ op: 'MaxUnpool', inputs: ['x', 'i'], outputs: ['y'], attrs: { kernel_shape: [2], strides: [2] } }],
      },
      {
        x: randomF32([1, 2, 3], 4),
        i: { dtype: 'int64', shape: [1, 2, 3], data: BigInt64Array.of(1n, 2n, 5n, 6n, 9n, 10n) },
      },
    );
  });
});

describe('DeformConv matches ONNX Runtime', () => {
  it('groups, offset groups, a mask and bias, strides, dilations, pads, offsets reaching outside the image', async () => {
    // X [2, 4, 9, 8], W [6, 2, 3, 2]: kernel 3x2, dilations [2, 1], strides [2, 1], pads [2, 1, 1, 0]
    // -> oh = floor((9 + 3 - 5) / 2) + 1 = 4, ow = floor((8 + 1 - 2) / 1) + 1 = 8
    const offset = randomF32([2, 2 * 6 * 2, 4, 8], 12);
    await matchesOrt(
      {
        opset: 22,
        inputs: [
          ['x', 'float32', [2, 4, 9, 8]],
          ['offset', 'float32', offset.shape],
          ['mask', 'float32', [2, 2 * 6, 4, 8]],
        ],
        outputs: [['y', 'float32', [2, 6, 4, 8]]],
        initializers: { w: randomF32([6, 2, 3, 2], 10), b: randomF32([6], 11) },
        nodes: [
          {
            op: 'DeformConv',
            inputs: ['x', 'w', 'offset', 'b', 'mask'],
            outputs: ['y'],
            attrs: { group: 2, offset_group: 2, dilations: [2, 1], strides: [2, 1], pads: [2, 1, 1, 0] },
          },
        ],
      },
      {
        x: randomF32([2, 4, 9, 8], 9),
        offset: { ...offset, data: (offset.data as Float32Array).map((v) => v * 2.5) },
        mask: randomF32([2, 12, 4, 8], 13),
      },
    );
  });

  it('no mask, no bias, one group', async () => {
    await matchesOrt(
      {
        opset: 19,
        inputs: [
          ['x', 'float32', [1, 3, 6, 6]],
          ['offset', 'float32', [1, 18, 4, 4]],
        ],
        outputs: [['y', 'float32', [1, 5, 4, 4]]],
        initializers: { w: randomF32([5, 3, 3, 3], 14) },
        nodes: [{ op: 'DeformConv', inputs: ['x', 'w', 'offset'], outputs: ['y'], attrs: { kernel_shape: [3, 3] } }],
      },
      { x: randomF32([1, 3, 6, 6], 15), offset: randomF32([1, 18, 4, 4], 16) },
    );
  });
});

describe('RoiAlign matches ONNX Runtime', () => {
  const rois: Tensor = {
    dtype: 'float32',
    shape: [5, 4],
    // x1, y1, x2, y2: inside, across the border, a thin one, one past the image, a degenerate one
    data: Float32Array.of(1, 1.5, 9, 7, -3, 2, 6.5, 14, 2, 3, 2.6, 12, 14, 13, 20, 19, 4, 4, 4, 4),
  };
  const batch: Tensor = { dtype: 'int64', shape: [5], data: BigInt64Array.of(0n, 1n, 1n, 0n, 1n) };
  const spec = (attrs: Record<string, Attr>, roisConst: boolean): ModelSpec => ({
    opset: 16,
    inputs: [
      ['x', 'float32', [2, 3, 12, 10]],
      ...(roisConst ? [] : ([['rois', 'float32', [5, 4]]] as ModelSpec['inputs'])),
      ['b', 'int64', [5]],
    ],
    outputs: [['y', 'float32', [5, 3, 3, 4]]],
    initializers: roisConst ? { rois } : {},
    nodes: [
      {
        op: 'RoiAlign',
        inputs: ['x', 'rois', 'b'],
        outputs: ['y'],
        attrs: { output_height: 3, output_width: 4, ...attrs },
      },
    ],
  });
  const x = randomF32([2, 3, 12, 10], 17);

  it('half_pixel, adaptive sampling over compile-time rois, avg', async () => {
    await matchesOrt(spec({ spatial_scale: { float: 0.75 } }, true), { x, b: batch });
  });

  it('output_half_pixel, sampling_ratio 3, rois at run time, avg and max', async () => {
    for (const mode of ['avg', 'max'])
      await matchesOrt(spec({ coordinate_transformation_mode: 'output_half_pixel', sampling_ratio: 3, mode }, false), {
        x,
        rois,
        b: batch,
      });
  });

  it('adaptive sampling with rois fed at run time is a KilnError (E_DYNAMIC)', async () => {
    const e = await kilnError(() => compile(buildModel(spec({}, false))));
    expect(e.code).toBe('E_DYNAMIC');
    expect(e.hint).toMatch(/sampling_ratio/);
  });
});
