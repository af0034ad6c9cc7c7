// ONNX neural-network operators (convolution, pooling, normalization) -> Kiln graph operators.
// Converters normalize ONNX's conveniences (auto_pad, default kernel_shape / strides / dilations) so the graph
// operators always carry explicit pads, strides and dilations.
import type { GExpr } from '../../../relay-ir/expr.js';
import { KilnError } from '../../../runtime/errors.js';
import { tensor } from '../../../runtime/tensor.js';
import { type ConvertCtx, constNumbers, converter } from '../converter.js';
import { staticDims } from '../../../tensor-expr/ops/common.js';

const ones = (n: number) => new Array<number>(n).fill(1);
const zeros = (n: number) => new Array<number>(n).fill(0);

function spatialDims(c: ConvertCtx, x: GExpr): number[] {
  const s = c.type(x).shape;
  if (s.length < 3) c.unsupported(`input of rank ${s.length} (need N, C and at least one spatial dim)`);
  const sp = s.slice(2);
  if (sp.some((d) => typeof d !== 'number')) c.unsupported('symbolic spatial dimensions');
  return sp as number[];
}

/** Explicit pads (begin..., end...) for a sliding window, resolving auto_pad. */
function resolvePads(c: ConvertCtx, inp: number[], kernel: number[], strides: number[], dilations: number[]): number[] {
  const n = inp.length;
  const autoPad = c.string('auto_pad', 'NOTSET');
  if (autoPad === 'NOTSET') {
    const pads = c.ints('pads', zeros(2 * n));
    if (pads.length !== 2 * n) c.unsupported(`pads of length ${pads.length} for ${n} spatial dims`);
    return pads;
  }
  if (autoPad === 'VALID') return zeros(2 * n);
  if (autoPad !== 'SAME_UPPER' && autoPad !== 'SAME_LOWER') c.unsupported(`auto_pad ${autoPad}`);
  const begin: number[] = [],
    end: number[] = [];
  for (let i = 0; i < n; i++) {
    const out = Math.ceil(inp[i] / strides[i]);
    const eff = (kernel[i] - 1) * dilations[i] + 1;
    const total = Math.max(0, (out - 1) * strides[i] + eff - inp[i]);
    const small = Math.floor(total / 2);
    if (autoPad === 'SAME_UPPER') {
      begin.push(small);
      end.push(total - small);
    } else {
      begin.push(total - small);
      end.push(small);
    }
  }
  return [...begin, ...end];
}

/** A convolution's kernel_shape, when given, must be the weight's spatial dims (the weight decides the window). */
function checkKernelShape(kernel: readonly number[], weightSpatial: readonly (number | string)[]): void {
  if (
    kernel.length !== weightSpatial.length ||
    kernel.some((k, i) => typeof weightSpatial[i] === 'number' && k !== weightSpatial[i])
  ) {
    throw new KilnError(
      'E_SHAPE',
      `kernel_shape [${kernel}] does not match the weight's spatial dims [${weightSpatial}]`,
      { hint: 'drop kernel_shape or make it agree with the weight' },
    );
  }
}

// ---- Conv -------------------------------------------------------------------------------------------------------

converter('Conv', 1, (c) => {
  const x = c.input(0),
    w = c.input(1),
    b = c.optInput(2);
  const sp = spatialDims(c, x),
    n = sp.length;
  const wShape = c.type(w).shape;
  const kernel = c.ints('kernel_shape', wShape.slice(2) as number[]);
  checkKernelShape(kernel, wShape.slice(2));
  const strides = c.ints('strides', ones(n)),
    dilations = c.ints('dilations', ones(n));
  const pads = resolvePads(c, sp, kernel, strides, dilations);
  const attrs = { strides, pads, dilations, group: c.int('group', 1) };
  return c.call('conv', b ? [x, w, b] : [x, w], attrs);
});

/**
 * DeformConv (opset 19): the sampled columns (deform_im2col) times the weights, one matmul per group, plus the
 * bias. 2-D only.
 */
converter('DeformConv', 19, (c) => {
  const x = c.input(0),
    w = c.input(1),
    offset = c.input(2),
    bias = c.optInput(3),
    mask = c.optInput(4);
  const xs = staticDims(c.type(x), 'DeformConv X'),
    ws = staticDims(c.type(w), 'DeformConv W'),
    os = staticDims(c.type(offset), 'DeformConv offset');
  if (xs.length !== 4) c.unsupported(`X of rank ${xs.length} (2-D deformable convolution takes [N, C, H, W])`);
  const [N, C, H, W] = xs,
    [OC, Cg, kh, kw] = ws;
  const group = c.int('group', 1),
    offsetGroup = c.int('offset_group', 1);
  const kernel = c.ints('kernel_shape', [kh, kw]);
  checkKernelShape(kernel, [kh, kw]);
  const strides = c.ints('strides', ones(2)),
    dilations = c.ints('dilations', ones(2)),
    pads = c.ints('pads', zeros(4));
  const outDim = (d: number, i: number) =>
    Math.floor((d + pads[i] + pads[i + 2] - (dilations[i] * (kernel[i] - 1) + 1)) / strides[i]) + 1;
  const [oh, ow] = [outDim(H, 0), outDim(W, 1)];
  if (Cg * group !== C || OC % group !== 0 || C % offsetGroup !== 0 || os[2] !== oh || os[3] !== ow)
    throw new KilnError(
      'E_MODEL_INVALID',
      `DeformConv: X [${xs}], W [${ws}], offset [${os}] with group ${group} and offset_group ${offsetGroup}`,
      {
        hint: `W is [out channels, C / group, kH, kW] and offset [N, offset_group * kH * kW * 2, ${oh}, ${ow}] (the output size)`,
      },
    );
  const attrs = { kernel_shape: kernel, strides, dilations, pads, offset_group: offsetGroup };
  const cols = c.call('deform_im2col', mask ? [x, offset, mask] : [x, offset], attrs);
  const K = Cg * kernel[0] * kernel[1];
  const y = c.call('matmul', [
    c.call('reshape', [w], { shape: [group, OC / group, K] }),
    c.call('reshape', [cols], { shape: [N, group, K, oh * ow] }),
  ]);
  const out = c.call('reshape', [y], { shape: [N, OC, oh, ow] });
  return bias ? c.call('add', [out, c.call('reshape', [bias], { shape: [OC, 1, 1] })]) : out;
});

/**
 * RoiAlign (opset 10; 16 adds coordinate_transformation_mode, default half_pixel). With the adaptive sampling ratio
 * (0) the samples per bin depend on each roi's size: the rois must then be known at compile time, to bound them.
 */
function roiAlign(c: ConvertCtx, defaultMode: string) {
  const x = c.input(0),
    rois = c.input(1),
    batchIndices = c.input(2);
  const ctm = c.opset >= 16 ? c.string('coordinate_transformation_mode', defaultMode) : defaultMode;
  if (ctm !== 'half_pixel' && ctm !== 'output_half_pixel') c.unsupported(`coordinate_transformation_mode '${ctm}'`);
  const mode = c.string('mode', 'avg');
  if (mode !== 'avg' && mode !== 'max') c.unsupported(`mode '${mode}'`);
  const oh = c.int('output_height', 1),
    ow = c.int('output_width', 1),
    ratio = c.int('sampling_ratio', 0),
    scale = c.float('spatial_scale', 1);
  const halfPixel = ctm === 'half_pixel';
  let grid = [ratio, ratio];
  if (ratio <= 0) {
    let boxes: number[];
    try {
      boxes = constNumbers(c, rois, 'RoiAlign rois');
    } catch (e) {
      if (!(e instanceof KilnError && e.code === 'E_DYNAMIC')) throw e;
      throw new KilnError('E_DYNAMIC', 'RoiAlign with sampling_ratio 0 (adaptive) needs the rois at compile time', {
        hint: 'give the node a sampling_ratio > 0, or pass the rois with the specialize option (kiln compile --specialize rois=file.pb)',
      });
    }
    grid = [1, 1];
    for (let i = 0; i + 3 < boxes.length; i += 4) {
      const off = halfPixel ? 0.5 : 0;
      let rw = boxes[i + 2] * scale - off - (boxes[i] * scale - off),
        rh = boxes[i + 3] * scale - off - (boxes[i + 1] * scale - off);
      if (!halfPixel) [rw, rh] = [Math.max(rw, 1), Math.max(rh, 1)];
      grid = [Math.max(grid[0], Math.ceil(rh / oh)), Math.max(grid[1], Math.ceil(rw / ow))];
    }
  }
  return c.call('roi_align', [x, rois, batchIndices], {
    mode,
    output_height: oh,
    output_width: ow,
    sampling_ratio: ratio,
    spatial_scale: scale,
    half_pixel: halfPixel ? 1 : 0,
    grid,
  });
}
converter('RoiAlign', 10, (c) => roiAlign(c, 'output_half_pixel'));
converter('RoiAlign', 16, (c) => roiAlign(c, 'half_pixel'));

converter('ConvTranspose', 1, (c) => {
  const x = c.input(0),
    w = c.input(1),
    b = c.optInput(2);
  const sp = spatialDims(c, x),
    n = sp.length;
  const kernel = c.ints('kernel_shape', c.type(w).shape.slice(2) as number[]);
  checkKernelShape(kernel, c.type(w).shape.slice(2));
  const strides = c.ints('strides', ones(n)),
    dilations = c.ints('dilations', ones(n));
  const outputPadding = c.ints('output_padding', zeros(n));
  const autoPad = c.string('auto_pad', 'NOTSET');
  const outputShape = c.attr('output_shape') ? c.ints('output_shape') : undefined;
  let pads: number[];
  const full = (i: number) => strides[i] * (sp[i] - 1) + outputPadding[i] + (kernel[i] - 1) * dilations[i] + 1;
  if (outputShape || autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    // output_shape may list only spatial dims or the full shape
    const target = outputShape
      ? outputShape.length === n + 2
        ? outputShape.slice(2)
        : outputShape
      : sp.map((d, i) => d * strides[i]);
    if (target.length !== n) c.unsupported(`output_shape [${outputShape}] for ${n} spatial dims`);
    const begin: number[] = [],
      end: number[] = [];
    for (let i = 0; i < n; i++) {
      const total = full(i) - target[i];
      let b0: number;
      if (autoPad === 'SAME_UPPER') b0 = Math.floor(total / 2);
      else if (autoPad === 'SAME_LOWER') b0 = total - Math.floor(total / 2);
      else b0 = c.attr('pads') ? c.ints('pads')[i] : 0;
      begin.push(b0);
      end.push(total - b0);
    }
    pads = [...begin, ...end];
  } else if (autoPad === 'VALID') {
    pads = zeros(2 * n);
  } else {
    pads = c.ints('pads', zeros(2 * n));
  }
  const attrs = { strides, pads, dilations, group: c.int('group', 1), output_padding: outputPadding };
  return c.call('conv_transpose', b ? [x, w, b] : [x, w], attrs);
});

// ---- Pooling ----------------------------------------------------------------------------------------------------

function poolAttrs(c: ConvertCtx, x: GExpr): Record<string, number | number[]> {
  const sp = spatialDims(c, x),
    n = sp.length;
  const kernel = c.ints('kernel_shape');
  if (kernel.length !== n) c.unsupported(`kernel_shape of length ${kernel.length} for ${n} spatial dims`);
  const strides = c.ints('strides', ones(n));
  const dilations = c.ints('dilations', ones(n));
  const pads = resolvePads(c, sp, kernel, strides, dilations);
  return { kernel_shape: kernel, strides, pads, dilations, ceil_mode: c.int('ceil_mode', 0) };
}

converter('MaxPool', 1, (c) => {
  const x = c.input(0);
  const attrs = poolAttrs(c, x);
  const y = c.call('max_pool', [x], attrs);
  if (c.numOutputs < 2) return y;
  return [y, c.call('max_pool_indices', [x], { ...attrs, storage_order: c.int('storage_order', 0) })];
});

/**
 * MaxUnpool: each input value written where its index (as MaxPool's Indices: flat over [N, C, ...output]) points,
 * zeros elsewhere. Exact for any index within its own (n, c) plane: a scatter along the flattened plane. With
 * output_shape the result is padded at the end of each spatial dim to it.
 */
converter('MaxUnpool', 9, (c) => {
  const x = c.input(0),
    ind = c.input(1),
    shapeIn = c.optInput(2);
  const sp = spatialDims(c, x),
    n = sp.length;
  const [N, C] = staticDims(c.type(x), 'MaxUnpool X');
  if (staticDims(c.type(ind), 'MaxUnpool I').join() !== [N, C, ...sp].join())
    throw new KilnError('E_MODEL_INVALID', `MaxUnpool: indices [${c.type(ind).shape}] and X [${[N, C, ...sp]}]`, {
      hint: 'I holds one index per element of X (the Indices output of the MaxPool it undoes)',
    });
  const kernel = c.ints('kernel_shape');
  if (kernel.length !== n) c.unsupported(`kernel_shape of length ${kernel.length} for ${n} spatial dims`);
  const strides = c.ints('strides', ones(n)),
    pads = c.ints('pads', zeros(2 * n));
  const inferred = sp.map((d, i) => (d - 1) * strides[i] - (pads[i] + pads[n + i]) + kernel[i]);
  const plane = inferred.reduce((a, b) => a * b, 1),
    inPlane = sp.reduce((a, b) => a * b, 1);
  const base = c.constant(
    tensor(
      'int64',
      [N, C, 1],
      Array.from({ length: N * C }, (_, i) => i * plane),
    ),
  );
  const local = c.call('sub', [
    c.call('reshape', [c.call('cast', [ind], { to: 'int64' })], { shape: [N, C, inPlane] }),
    base,
  ]);
  const dtype = c.type(x).dtype;
  const empty = c.call('expand', [c.constant(tensor(dtype, [], [0]))], { shape: [N, C, plane] });
  const flat = c.call('scatter_elements', [empty, local, c.call('reshape', [x], { shape: [N, C, inPlane] })], {
    axis: 2,
  });
  const y = c.call('reshape', [flat], { shape: [N, C, ...inferred] });
  if (!shapeIn) return y;
  const out = constNumbers(c, shapeIn, 'MaxUnpool output_shape');
  if (out.length !== n + 2 || out[0] !== N || out[1] !== C || inferred.some((d, i) => out[i + 2] < d))
    throw new KilnError(
      'E_MODEL_INVALID',
      `MaxUnpool output_shape [${out}] for an unpooled shape [${[N, C, ...inferred]}]`,
      {
        hint: 'output_shape keeps N and C and is at least the unpooled size in every spatial dim',
      },
    );
  if (out.every((d, i) => i < 2 || d === inferred[i - 2])) return y;
  const padding = [...zeros(n + 2), 0, 0, ...inferred.map((d, i) => out[i + 2] - d)];
  return c.call('pad', [y], { pads: padding, mode: 'constant', value: 0 });
});

/** Col2Im (opset 18): the image and block shapes are compile-time inputs. */
converter('Col2Im', 18, (c) => {
  const image = constNumbers(c, c.input(1), 'Col2Im image_shape'),
    block = constNumbers(c, c.input(2), 'Col2Im block_shape');
  const nd = image.length;
  if (block.length !== nd)
    throw new KilnError('E_MODEL_INVALID', `Col2Im: block_shape [${block}] for image_shape [${image}]`, {
      hint: 'block_shape has one size per image dimension',
    });
  return c.call('col2im', [c.input(0)], {
    image_shape: image,
    block_shape: block,
    strides: c.ints('strides', ones(nd)),
    dilations: c.ints('dilations', ones(nd)),
    pads: c.ints('pads', zeros(2 * nd)),
  });
});

converter('AveragePool', 1, (c) => {
  const x = c.input(0);
  return c.call('avg_pool', [x], { ...poolAttrs(c, x), count_include_pad: c.int('count_include_pad', 0) });
});

converter('LpPool', 1, (c) => {
  const x = c.input(0);
  return c.call('lp_pool', [x], { ...poolAttrs(c, x), p: c.opset < 2 ? c.float('p', 2) : c.int('p', 2) });
});

converter('GlobalAveragePool', 1, (c) => c.call('global_avg_pool', [c.input(0)]));
converter('GlobalMaxPool', 1, (c) => c.call('global_max_pool', [c.input(0)]));
converter('GlobalLpPool', 1, (c) =>
  c.call('global_lp_pool', [c.input(0)], { p: c.opset < 2 ? c.float('p', 2) : c.int('p', 2) }),
);

// ---- Normalization ----------------------------------------------------------------------------------------------

converter('BatchNormalization', 1, (c) => {
  const x = c.input(0),
    scale = c.input(1),
    bias = c.input(2),
    mean = c.input(3),
    variance = c.input(4);
  const epsilon = c.float('epsilon', 1e-5);
  // opset < 7 has is_test; opset 7..13 infer when only Y is requested; opset 14+ has training_mode
  const training =
    c.opset >= 14
      ? c.int('training_mode', 0) === 1
      : c.opset < 7
        ? c.int('is_test', 0) === 0 && c.numOutputs > 1
        : c.numOutputs > 1;
  if (!training) return c.call('batch_norm', [x, scale, bias, mean, variance], { epsilon });
  if (c.opset < 14) c.unsupported('training-mode outputs before opset 14');
  const momentum = c.float('momentum', 0.9);
  const outs: GExpr[] = [c.call('batch_norm_train', [x, scale, bias], { epsilon })];
  if (c.numOutputs > 1) outs.push(c.call('batch_norm_running', [x, mean], { momentum, which: 0 }));
  if (c.numOutputs > 2) outs.push(c.call('batch_norm_running', [x, variance], { momentum, which: 1 }));
  return outs;
});

converter('InstanceNormalization', 1, (c) =>
  c.call('instance_norm', [c.input(0), c.input(1), c.input(2)], { epsilon: c.float('epsilon', 1e-5) }),
);

converter('GroupNormalization', 18, (c) =>
  c.call('group_norm', [c.input(0), c.input(1), c.input(2)], {
    num_groups: c.int('num_groups'),
    epsilon: c.float('epsilon', 1e-5),
  }),
);

converter('LayerNormalization', 17, (c) => {
  const x = c.input(0),
    scale = c.input(1),
    bias = c.optInput(2);
  const axis = c.int('axis', -1),
    epsilon = c.float('epsilon', 1e-5);
  const outs: GExpr[] = [c.call('layer_norm', bias ? [x, scale, bias] : [x, scale], { axis, epsilon })];
  if (c.numOutputs > 1) outs.push(c.call('layer_norm_stat', [x], { axis, epsilon, which: 0 }));
  if (c.numOutputs > 2) outs.push(c.call('layer_norm_stat', [x], { axis, epsilon, which: 1 }));
  return outs;
});

converter('RMSNormalization', 23, (c) =>
  c.call('rms_norm', [c.input(0), c.input(1)], { axis: c.int('axis', -1), epsilon: c.float('epsilon', 1e-5) }),
);

converter('MeanVarianceNormalization', 9, (c) =>
  c.call('mean_variance_norm', [c.input(0)], { axes: c.ints('axes', [0, 2, 3]) }),
);

converter('LpNormalization', 1, (c) => c.call('lp_norm', [c.input(0)], { axis: c.int('axis', -1), p: c.int('p', 2) }));

converter('LRN', 1, (c) =>
  c.call('lrn', [c.input(0)], {
    size: c.int('size'),
    alpha: c.float('alpha', 1e-4),
    beta: c.float('beta', 0.75),
    bias: c.float('bias', 1),
  }),
);

converter('ConvInteger', 10, (c) => convInteger(c, c.input(0), c.input(1), c.optInput(2), c.optInput(3)));

/** conv_integer of x and w with the node's convolution attributes (ConvInteger's, QLinearConv's); zero points default to 0. */
export function convInteger(c: ConvertCtx, x: GExpr, w: GExpr, zx: GExpr | undefined, zw: GExpr | undefined): GExpr {
  const zp = (z: GExpr | undefined, like: GExpr) => z ?? c.constant(tensor(c.type(like).dtype, [], [0]));
  return c.call('conv_integer', [x, w, zp(zx, x), zp(zw, w)], convIntegerAttrs(c, x, w));
}

/** The node's convolution attributes as the integer convolutions take them (auto_pad resolved). */
export function convIntegerAttrs(c: ConvertCtx, x: GExpr, w: GExpr) {
  const sp = spatialDims(c, x),
    n = sp.length;
  const kernel = c.ints('kernel_shape', c.type(w).shape.slice(2) as number[]);
  const strides = c.ints('strides', ones(n)),
    dilations = c.ints('dilations', ones(n));
  const pads = resolvePads(c, sp, kernel, strides, dilations);
  return { strides, pads, dilations, group: c.int('group', 1) };
}
