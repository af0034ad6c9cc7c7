// ONNX layout and resampling operators -> Kiln graph operators (pad, depth_to_space, space_to_depth, resize,
// grid_sample). Shape-like inputs (pads, scales, sizes, roi, axes) must be compile-time values.
import type { GExpr } from '../../../relay-ir/expr.js';
import { sizeOf, tensor } from '../../../runtime/tensor.js';
import { staticDims, normAxis } from '../../../tensor-expr/ops/common.js';
import { type ConvertCtx, constNumbers, converter } from '../converter.js';
import { KilnError } from '../../../runtime/errors.js';

/** A compile-time input as plain numbers (undefined when absent or empty). */
function values(c: ConvertCtx, i: number, what: string): number[] | undefined {
  const e = c.optInput(i);
  return e ? constNumbers(c, e, what) : undefined;
}

// ---- Pad ----

function pad(c: ConvertCtx, x: GExpr, rawPads: number[], mode: string, value: number, axesIn?: number[]): GExpr {
  const rank = c.type(x).shape.length;
  const axes = (axesIn ?? [...Array(rank).keys()]).map((a) => normAxis(a, rank, 'Pad axis'));
  if (rawPads.length !== 2 * axes.length) c.unsupported(`${rawPads.length} pads for ${axes.length} axes`);
  const pads = new Array(2 * rank).fill(0);
  axes.forEach((a, i) => {
    pads[a] = rawPads[i];
    pads[rank + a] = rawPads[axes.length + i];
  });
  if (!['constant', 'reflect', 'edge', 'wrap'].includes(mode)) c.unsupported(`mode '${mode}'`);
  if (pads.every((p) => p === 0)) return c.call('identity', [x]);
  return c.call('pad', [x], { pads, mode, value });
}
converter('Pad', 1, (c) => pad(c, c.input(0), c.ints('paddings'), c.string('mode', 'constant'), c.float('value', 0)));
converter('Pad', 2, (c) => pad(c, c.input(0), c.ints('pads'), c.string('mode', 'constant'), c.float('value', 0)));
converter('Pad', 11, (c) => {
  const pads = values(c, 1, 'Pad pads');
  if (!pads) return c.unsupported('missing pads');
  const v = values(c, 2, 'Pad constant_value');
  const axes = c.opset >= 18 ? values(c, 3, 'Pad axes') : undefined;
  return pad(c, c.input(0), pads, c.string('mode', 'constant'), v?.length ? v[0] : 0, axes);
});

/** CenterCropPad: crop or zero-pad each listed axis around its center (a pad with negative pads crops). */
converter('CenterCropPad', 18, (c) => {
  const x = c.input(0),
    shape = staticDims(c.type(x), 'CenterCropPad'),
    rank = shape.length;
  const target = values(c, 1, 'CenterCropPad shape')!;
  const axes = c.ints('axes', [...Array(rank).keys()]).map((a) => normAxis(a, rank));
  const pads = new Array(2 * rank).fill(0);
  axes.forEach((a, i) => {
    const dim = shape[a],
      sh = target[i];
    const begin = sh < dim ? -Math.floor((dim - sh) / 2) : Math.floor((sh - dim) / 2);
    pads[a] = begin;
    pads[rank + a] = sh - dim - begin;
  });
  return pads.every((p) => p === 0)
    ? c.call('identity', [x])
    : c.call('pad', [x], { pads, mode: 'constant', value: 0 });
});

// ---- DepthToSpace / SpaceToDepth ----

converter('DepthToSpace', 1, (c) =>
  c.call('depth_to_space', [c.input(0)], { blocksize: c.int('blocksize'), mode: c.string('mode', 'DCR') }),
);
converter('SpaceToDepth', 1, (c) =>
  c.call('space_to_depth', [c.input(0)], { blocksize: c.int('blocksize'), mode: c.string('mode', 'DCR') }),
);

// ---- Resize / Upsample ----

interface ResizeOpts {
  scales?: number[];
  sizes?: number[];
  axes?: number[];
  roi?: number[];
  roiF32?: boolean;
  mode: string;
  ctm: string;
  nearestMode: string;
  cubicA?: number;
  excludeOutside?: number;
  extrapolation?: number;
  antialias?: number;
  policy?: string;
}

function resize(c: ConvertCtx, x: GExpr, o: ResizeOpts): GExpr {
  // symbolic dims (a batch) are sized 1 for the arithmetic and must come out unscaled
  const dims = c.type(x).shape;
  const shape = dims.map((d) => (typeof d === 'number' ? d : 1)),
    r = shape.length;
  const axes = (o.axes ?? [...Array(r).keys()]).map((a) => normAxis(a, r, `${c.opType} axis`));
  const resizedSymbolic = (i: number) => {
    throw new KilnError('E_DYNAMIC', `${c.opType}: axis ${i} of symbolic size ${dims[i]} is resized`, {
      hint: `only dims that stay as they are may be symbolic; fix ${dims[i]} with --dim ${dims[i]}=N`,
    });
  };
  // sizes name the output size of every listed axis: a symbolic one among them cannot stay as it is
  if (o.sizes?.length) for (const a of axes) if (typeof dims[a] === 'string') resizedSymbolic(a);
  if (!['nearest', 'linear', 'cubic'].includes(o.mode)) c.unsupported(`mode '${o.mode}'`);
  let scales: number[], sizes: number[];
  if (o.sizes?.length) {
    if (o.sizes.length !== axes.length) c.unsupported(`${o.sizes.length} sizes for ${axes.length} axes`);
    sizes = [...shape];
    axes.forEach((a, i) => {
      sizes[a] = o.sizes![i];
    });
    scales = sizes.map((s, d) => s / shape[d]);
    const policy = o.policy ?? 'stretch';
    if (policy !== 'stretch') {
      const sel = axes.map((a) => scales[a]);
      const s =
        policy === 'not_larger'
          ? Math.min(...sel)
          : policy === 'not_smaller'
            ? Math.max(...sel)
            : c.unsupported(`keep_aspect_ratio_policy '${policy}'`);
      scales = shape.map((_, d) => (axes.includes(d) ? s : 1));
      sizes = shape.map((n, d) => (axes.includes(d) ? Math.trunc(s * n + 0.5) : n));
    }
  } else if (o.scales?.length) {
    if (o.scales.length !== axes.length) c.unsupported(`${o.scales.length} scales for ${axes.length} axes`);
    scales = new Array(r).fill(1);
    axes.forEach((a, i) => {
      scales[a] = o.scales![i];
    });
    if (scales.some((s) => !(s > 0)))
      throw new KilnError('E_MODEL_INVALID', `Resize: scales [${scales}] must all be positive`, {
        hint: 'fix the exporter or the model: a scale is the output size over the input size',
      });
    sizes = shape.map((n, d) => Math.floor(scales[d] * n));
  } else {
    return c.unsupported('neither scales nor sizes given');
  }
  let roi: number[] | null = null;
  if (o.ctm === 'tf_crop_and_resize') {
    if (!o.roi?.length) c.unsupported('tf_crop_and_resize without roi');
    roi = [...new Array(r).fill(0), ...new Array(r).fill(1)];
    if (o.roi.length === 2 * r && axes.length === r) roi = [...o.roi];
    else if (o.roi.length === 2 * axes.length)
      axes.forEach((a, i) => {
        roi![a] = o.roi![i];
        roi![r + a] = o.roi![axes.length + i];
      });
    else c.unsupported(`roi of length ${o.roi.length}`);
  }
  dims.forEach((d, i) => {
    if (typeof d === 'string' && (scales[i] !== 1 || sizes[i] !== 1 || roi)) resizedSymbolic(i);
  });
  if (sizes.every((s, d) => s === shape[d]) && scales.every((s) => s === 1) && o.ctm !== 'tf_crop_and_resize')
    return c.call('identity', [x]);
  return c.call('resize', [x], {
    sizes: sizes.map((n, i) => (typeof dims[i] === 'string' ? dims[i] : n)),
    scales,
    roi,
    mode: o.mode,
    coordinate_transformation_mode: o.ctm,
    nearest_mode: o.nearestMode,
    cubic_coeff_a: o.cubicA ?? -0.75,
    exclude_outside: o.excludeOutside ?? 0,
    extrapolation_value: o.extrapolation ?? 0,
    antialias: o.antialias ?? 0,
    roi_float32: roi !== null && o.roiF32 === true,
  });
}

/** Resize-10 and Upsample: scales only, asymmetric coordinates, nearest rounds down. */
const legacy = (c: ConvertCtx, scales: number[] | undefined): GExpr => {
  const mode = c.string('mode', 'nearest');
  return resize(c, c.input(0), {
    scales,
    mode: mode === 'bilinear' ? 'linear' : mode,
    ctm: 'asymmetric',
    nearestMode: 'floor',
  });
};
converter('Upsample', 7, (c) => legacy(c, c.floats('scales')));
converter('Upsample', 9, (c) => legacy(c, values(c, 1, 'Upsample scales')));
converter('Resize', 10, (c) => legacy(c, values(c, 1, 'Resize scales')));
converter('Resize', 11, (c) => {
  const ctm = c.string('coordinate_transformation_mode', 'half_pixel');
  return resize(c, c.input(0), {
    roi: ctm === 'tf_crop_and_resize' ? values(c, 1, 'Resize roi') : undefined,
    roiF32: c.optInput(1) ? c.type(c.input(1)).dtype === 'float32' : false,
    scales: values(c, 2, 'Resize scales'),
    sizes: values(c, 3, 'Resize sizes'),
    axes: c.attr('axes') ? c.ints('axes') : undefined,
    mode: c.string('mode', 'nearest'),
    ctm,
    nearestMode: c.string('nearest_mode', 'round_prefer_floor'),
    cubicA: c.float('cubic_coeff_a', -0.75),
    excludeOutside: c.int('exclude_outside', 0),
    extrapolation: c.float('extrapolation_value', 0),
    antialias: c.opset >= 18 ? c.int('antialias', 0) : 0,
    policy: c.opset >= 18 ? c.string('keep_aspect_ratio_policy', 'stretch') : 'stretch',
  });
});

// ---- GridSample ----

const GS_MODES: Record<string, string> = {
  bilinear: 'linear',
  bicubic: 'cubic',
  linear: 'linear',
  cubic: 'cubic',
  nearest: 'nearest',
};
converter('GridSample', 16, (c) => {
  const m = c.string('mode', c.opset >= 20 ? 'linear' : 'bilinear');
  const mode = GS_MODES[m] ?? c.unsupported(`mode '${m}'`);
  const pm = c.string('padding_mode', 'zeros');
  if (!['zeros', 'border', 'reflection'].includes(pm)) c.unsupported(`padding_mode '${pm}'`);
  return c.call('grid_sample', [c.input(0), c.input(1)], {
    mode,
    padding_mode: pm,
    align_corners: c.int('align_corners', 0),
  });
});

// ---- AffineGrid (opset 20) ----

/**
 * theta [N, d, d + 1] applied to the homogeneous normalized coordinates (x, y[, z], 1) of every output point:
 * one matmul by a constant [d + 1, points] matrix. Coordinates run over [-1, 1], at the pixel edges' centers unless
 * align_corners puts them on the corners.
 */
converter('AffineGrid', 20, (c) => {
  const theta = c.input(0);
  const size = values(c, 1, 'AffineGrid size') ?? c.unsupported('no size');
  const spatial = size.slice(2);
  const d = spatial.length;
  if (d !== 2 && d !== 3) c.unsupported(`size [${size}] (2-D or 3-D grids only)`);
  const [n, rows, cols] = staticDims(c.type(theta), 'AffineGrid theta');
  if (rows !== d || cols !== d + 1) c.unsupported(`theta [${n}, ${rows}, ${cols}] for a ${d}-D grid`);
  const align = c.int('align_corners', 0) !== 0;
  const coord = (i: number, len: number) =>
    align ? (len > 1 ? -1 + (2 * i) / (len - 1) : -1) : -1 + (2 * i + 1) / len;
  const points = sizeOf(spatial);
  // row k of the base: coordinate k of every point, the fastest-varying spatial dim first (x, then y, then z)
  const base = new Array<number>((d + 1) * points);
  for (let p = 0; p < points; p++) {
    let rest = p;
    for (let k = 0; k < d; k++) {
      const len = spatial[d - 1 - k];
      base[k * points + p] = coord(rest % len, len);
      rest = Math.floor(rest / len);
    }
    base[d * points + p] = 1;
  }
  const grid = c.call('matmul', [theta, c.constant(tensor(c.type(theta).dtype, [d + 1, points], base))]);
  return c.call('reshape', [c.call('transpose', [grid], { perm: [0, 2, 1] })], { shape: [n, ...spatial, d] });
});
