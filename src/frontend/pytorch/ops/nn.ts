// ATen convolution, pooling, normalization and dropout -> Kiln graph operators (explicit pads, strides and
// dilations, as the ONNX converters give them).
import type { GExpr } from '../../../relay-ir/expr.js';
import { sizeOf, tensor } from '../../../runtime/tensor.js';
import { type AtenCtx, aten, staticDim, staticShape } from '../converter.js';

const ones = (n: number) => new Array<number>(n).fill(1);
const zeros = (n: number) => new Array<number>(n).fill(0);

function spatial(c: AtenCtx, x: GExpr): number[] {
  const s = c.type(x).shape;
  if (s.length < 3) c.unsupported(`input of rank ${s.length} (batched N, C, spatial... inputs only)`);
  const sp = s.slice(2);
  if (sp.some((d) => typeof d !== 'number')) c.unsupported('symbolic spatial dimensions');
  return sp as number[];
}

/** PyTorch's symmetric padding -> Kiln's (begin..., end...). */
const symmetric = (p: readonly number[]) => [...p, ...p];

function conv(c: AtenCtx, transposed: boolean): GExpr {
  const x = c.tensor('input'),
    w = c.tensor('weight'),
    b = c.optTensor('bias');
  const n = spatial(c, x).length;
  const strides = c.ints('stride', ones(n), n),
    dilations = c.ints('dilation', ones(n), n),
    group = c.int('groups', 1);
  let pads: number[];
  const padArg = c.has('padding') && c.overload === 'padding' ? c.string('padding') : undefined;
  if (padArg === 'valid') pads = zeros(2 * n);
  else if (padArg === 'same') {
    // total padding (k-1)*d, the extra one at the end (as PyTorch does for even kernels)
    const k = (c.type(w).shape.slice(2) as number[]).map((kk, i) => (kk - 1) * dilations[i]);
    if (strides.some((s) => s !== 1)) c.unsupported("padding='same' with strides");
    pads = [...k.map((t) => Math.floor(t / 2)), ...k.map((t) => t - Math.floor(t / 2))];
  } else if (padArg !== undefined) return c.unsupported(`padding '${padArg}'`);
  else pads = symmetric(c.ints('padding', zeros(n), n));
  const args = b ? [x, w, b] : [x, w];
  if (!transposed) return c.call('conv', args, { strides, pads, dilations, group });
  const outputPadding = c.ints('output_padding', zeros(n), n);
  return c.call('conv_transpose', args, { strides, pads, dilations, group, output_padding: outputPadding });
}

aten(['conv1d', 'conv2d', 'conv3d'], (c) => conv(c, false));
aten(['conv_transpose1d', 'conv_transpose2d', 'conv_transpose3d'], (c) => conv(c, true));
aten(['convolution', '_convolution'], (c) => conv(c, c.bool('transposed', false)));

// ---- pooling ----------------------------------------------------------------------------------------------------

function poolAttrs(c: AtenCtx, x: GExpr) {
  const n = spatial(c, x).length;
  const kernel = c.ints('kernel_size', undefined, n);
  const stride = c.ints('stride', [], n);
  return {
    kernel_shape: kernel,
    strides: stride.length ? stride : kernel,
    pads: symmetric(c.ints('padding', zeros(n), n)),
    dilations: c.has('dilation') ? c.ints('dilation', ones(n), n) : ones(n),
    ceil_mode: c.bool('ceil_mode', false) ? 1 : 0,
  };
}

aten(['max_pool1d', 'max_pool2d', 'max_pool3d'], (c) => {
  const x = c.tensor('self');
  return c.call('max_pool', [x], poolAttrs(c, x));
});
// the indices (PyTorch's per-plane flat positions) are not computed: using them is reported by the importer
aten(['max_pool2d_with_indices', 'max_pool3d_with_indices'], (c) => {
  const x = c.tensor('self');
  return [c.call('max_pool', [x], poolAttrs(c, x)), undefined];
});

aten(['avg_pool1d', 'avg_pool2d', 'avg_pool3d'], (c) => {
  const x = c.tensor('self');
  if (c.has('divisor_override')) c.unsupported('divisor_override');
  return c.call('avg_pool', [x], {
    ...poolAttrs(c, x),
    count_include_pad: c.bool('count_include_pad', true) ? 1 : 0,
  });
});

function adaptiveAvg(c: AtenCtx): GExpr {
  const x = c.tensor('self');
  const sp = spatial(c, x);
  const out = c.ints('output_size', undefined, sp.length);
  if (out.every((o) => o === 1)) return c.call('global_avg_pool', [x]);
  if (out.some((o, i) => o <= 0 || sp[i] % o !== 0)) {
    c.unsupported(`output_size [${out}] that does not divide the input's [${sp}]`);
  }
  const kernel = sp.map((d, i) => d / out[i]);
  return c.call('avg_pool', [x], {
    kernel_shape: kernel,
    strides: kernel,
    pads: zeros(2 * sp.length),
    dilations: ones(sp.length),
    ceil_mode: 0,
    count_include_pad: 0,
  });
}
aten(
  ['adaptive_avg_pool1d', 'adaptive_avg_pool2d', '_adaptive_avg_pool2d', 'adaptive_avg_pool3d', '_adaptive_avg_pool3d'],
  adaptiveAvg,
);

// ---- batch norm -------------------------------------------------------------------------------------------------

function batchNorm(c: AtenCtx, training: boolean, outputs: number): GExpr | (GExpr | undefined)[] {
  if (training) {
    c.unsupported('training-mode batch norm (batch statistics)');
  }
  const x = c.tensor('input');
  const xt = c.type(x);
  const ch = xt.shape[1];
  if (typeof ch !== 'number') c.unsupported('a symbolic channel dim');
  const fill = (v: number) => c.constant(tensor(xt.dtype, [ch as number], new Array(ch as number).fill(v)));
  const mean = c.optTensor('running_mean'),
    variance = c.optTensor('running_var');
  if (!mean || !variance) c.unsupported('batch norm without running statistics');
  const y = c.call(
    'batch_norm',
    [x, c.optTensor('weight') ?? fill(1), c.optTensor('bias') ?? fill(0), mean!, variance!],
    {
      epsilon: c.float('eps', 1e-5),
    },
  );
  return outputs === 1 ? y : [y, ...new Array<undefined>(outputs - 1).fill(undefined)];
}

aten('batch_norm', (c) => batchNorm(c, c.bool('training', false), 1));
aten('_native_batch_norm_legit_no_training', (c) => batchNorm(c, false, 3));
aten(['native_batch_norm', '_native_batch_norm_legit'], (c) => batchNorm(c, c.bool('training', false), 3));

// ---- dropout (inference: identity) --------------------------------------------------------------------------------

// dropout_ (in place, torchvision's EfficientNet classifier) names its tensor `self`
aten(['dropout', 'dropout_', 'feature_dropout', 'alpha_dropout'], (c) => {
  if (c.bool('train', false)) c.unsupported('dropout in training mode');
  return c.call('identity', [c.tensor(c.has('input') ? 'input' : 'self')]);
});

// ---- layer norm ----------------------------------------------------------------------------------------------------

/** layer_norm over the trailing `normalized_shape` dims; a missing weight is ones, a missing bias zeros. */
function layerNorm(c: AtenCtx, stats: boolean): GExpr | GExpr[] {
  const x = c.tensor('input');
  const rank = c.type(x).shape.length;
  const normalized = c.ints('normalized_shape');
  const axis = rank - normalized.length;
  const epsilon = c.float('eps', 1e-5);
  const w = c.optTensor('weight') ?? c.constant(tensor(c.type(x).dtype, normalized, ones(sizeOf(normalized))));
  const b = c.optTensor('bias');
  const y = c.call('layer_norm', b ? [x, w, b] : [x, w], { axis, epsilon });
  if (!stats) return y;
  // native_layer_norm also returns the mean and 1/sqrt(var + eps), kept as size-1 dims
  return [y, ...[0, 1].map((which) => c.call('layer_norm_stat', [x], { axis, epsilon, which }))];
}
aten('layer_norm', (c) => layerNorm(c, false));
aten('native_layer_norm', (c) => layerNorm(c, true));

// ---- attention -----------------------------------------------------------------------------------------------------

/**
 * softmax(q @ k^T * scale + mask) @ v. A causal mask keeps key j <= query i (top-left aligned, as PyTorch's
 * is_causal); a bool attn_mask keeps where true, a float one is added.
 */
aten('scaled_dot_product_attention', (c) => {
  const q = c.tensor('query'),
    k = c.tensor('key'),
    v = c.tensor('value');
  if (c.float('dropout_p', 0) !== 0) c.unsupported('dropout_p other than 0 (inference only)');
  if (c.bool('enable_gqa', false)) c.unsupported('enable_gqa');
  const qs = c.type(q).shape,
    ks = c.type(k).shape;
  const [L, S] = [qs[qs.length - 2], ks[ks.length - 2]];
  const dtype = c.type(q).dtype;
  const scale = c.optFloat('scale') ?? 1 / Math.sqrt(staticDim(c, q, qs.length - 1));
  const r = ks.length;
  const kt = c.call('transpose', [k], { perm: [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2] });
  let scores = c.call('mul', [c.call('matmul', [q, kt]), c.constant(tensor(dtype, [], [scale]))]);
  const mask = c.optTensor('attn_mask');
  if (mask && c.type(mask).dtype === 'bool')
    scores = c.call('where', [mask, scores, c.constant(tensor(dtype, [], [-Infinity]))]);
  else if (mask) scores = c.call('add', [scores, mask]);
  if (c.bool('is_causal', false)) {
    if (typeof L === 'number' && typeof S === 'number') {
      const causal = Array.from({ length: L * S }, (_, i) => (i % S <= Math.floor(i / S) ? 0 : -Infinity));
      scores = c.call('add', [scores, c.constant(tensor(dtype, [L, S], causal))]);
    } else {
      // symbolic lengths: key j <= query i, from two ranges
      const positions = (n: typeof L) =>
        c.call('range', [c.constant(tensor('int64', [], [0])), c.constant(tensor('int64', [], [1]))], { count: [n] });
      const rows = c.call('unsqueeze', [positions(L)], { axes: [1] });
      const keep = c.call('less_equal', [positions(S), rows]);
      scores = c.call('where', [keep, scores, c.constant(tensor(dtype, [], [-Infinity]))]);
    }
  }
  return c.call('matmul', [c.call('softmax', [scores], { axis: -1 }), v]);
});

// ---- group norm, upsampling ------------------------------------------------------------------------------------------

/** group_norm(input, num_groups, weight, bias, eps); native_group_norm(input, weight, bias, N, C, HxW, group, eps). */
function groupNorm(c: AtenCtx, native: boolean): GExpr | (GExpr | undefined)[] {
  const x = c.tensor('input');
  const C = c.type(x).shape[1];
  if (typeof C !== 'number') c.unsupported('a symbolic channel dim');
  const dtype = c.type(x).dtype;
  const w = c.optTensor('weight') ?? c.constant(tensor(dtype, [C], ones(C)));
  const b = c.optTensor('bias') ?? c.constant(tensor(dtype, [C], zeros(C)));
  const y = c.call('group_norm', [x, w, b], {
    num_groups: c.int(native ? 'group' : 'num_groups'),
    epsilon: c.float('eps', 1e-5),
  });
  // the mean and rstd outputs of native_group_norm are for training; inference graphs read only the first
  return native ? [y, undefined, undefined] : y;
}
aten('group_norm', (c) => groupNorm(c, false));
aten('native_group_norm', (c) => groupNorm(c, true));

/** Output sizes from output_size, or from scale factors (floor(in * scale), as PyTorch). */
function upsampledSizes(c: AtenCtx, x: GExpr, n: number): { sizes: number[]; scales: number[] } {
  const s = staticShape(c, x);
  const spatial = s.slice(s.length - n);
  const given = c.optInts('output_size');
  const factors = c.optFloats('scale_factors');
  const out = given?.length
    ? given
    : factors?.length
      ? spatial.map((d, i) => Math.floor(d * factors[i]))
      : c.unsupported('neither output_size nor scale_factors');
  const sizes = [...s.slice(0, s.length - n), ...out];
  // with explicit scale factors PyTorch maps coordinates by 1/scale, else by in/out
  const scales = sizes.map((d, i) => (i < s.length - n || !factors?.length ? d / s[i] : factors[i - (s.length - n)]));
  return { sizes, scales };
}

/** resize with PyTorch's coordinate mapping for the mode. */
function upsample(c: AtenCtx, n: number, mode: 'nearest' | 'linear', transform: string): GExpr {
  const x = c.tensor('input');
  return c.call('resize', [x], {
    ...upsampledSizes(c, x, n),
    roi: null,
    mode,
    coordinate_transformation_mode: transform,
    nearest_mode: mode === 'nearest' ? 'floor' : 'round_prefer_floor',
    cubic_coeff_a: -0.75,
    exclude_outside: 0,
    extrapolation_value: 0,
    antialias: 0,
    roi_float32: false,
  });
}
for (const n of [1, 2, 3]) aten(`upsample_nearest${n}d`, (c) => upsample(c, n, 'nearest', 'asymmetric'));
for (const [op, n] of [
  ['upsample_linear1d', 1],
  ['upsample_bilinear2d', 2],
  ['upsample_trilinear3d', 3],
] as const)
  aten(op, (c) => upsample(c, n, 'linear', c.bool('align_corners') ? 'align_corners' : 'pytorch_half_pixel'));
