// ONNX signal-processing operators -> Kiln graph operators. Window functions are constants: their size must be
// known at compile time. DFT is a matmul by constant cos/sin matrices (O(n^2), fine for the short frames of audio
// front ends; not an FFT); STFT frames the signal with one gather and transforms each frame.
import { isFloat } from '../../../runtime/dtype.js';
import { tensor } from '../../../runtime/tensor.js';
import type { GExpr } from '../../../relay-ir/expr.js';
import { staticDims } from '../../../tensor-expr/ops/common.js';
import { onnxDType } from '../tensor-proto.js';
import { type ConvertCtx, constNumbers, converter } from '../converter.js';

/** A compile-time scalar input as a number. */
const scalarInput = (c: ConvertCtx, e: GExpr, what: string) => constNumbers(c, e, `${c.opType} ${what}`)[0];

// ---- window functions (opset 17) ----

/**
 * w[n] = a0 - a1 cos(2 pi n / N) + a2 cos(4 pi n / N), N the size (periodic) or the size - 1 (symmetric); the size
 * must be known at compile time, so the window is a constant.
 */
function windowOp(c: ConvertCtx, a0: number, a1: number, a2: number): GExpr {
  const size = scalarInput(c, c.input(0), 'size');
  if (!Number.isSafeInteger(size) || size < 0) c.unsupported(`size ${size}`);
  const N = c.int('periodic', 1) ? size : size - 1;
  const dtype = onnxDType(c.int('output_datatype', 1), `${c.opType} output_datatype`);
  const w = Array.from(
    { length: size },
    (_, n) => a0 - a1 * Math.cos((2 * Math.PI * n) / N) + a2 * Math.cos((4 * Math.PI * n) / N),
  );
  return c.constant(tensor(dtype, [size], isFloat(dtype) ? w : w.map(Math.trunc)));
}
converter('HannWindow', 17, (c) => windowOp(c, 0.5, 0.5, 0));
converter('HammingWindow', 17, (c) => windowOp(c, 25 / 46, 21 / 46, 0));
converter('BlackmanWindow', 17, (c) => windowOp(c, 0.42, 0.5, 0.08));

// ---- DFT (opsets 17, 20) ----

/**
 * The transform along `axis` as real matrices applied to the real and imaginary parts (a matmul each): forward
 * e^{-i 2 pi k n / L}; inverse e^{+i ...} / L; inverse onesided (irfft) takes the Hermitian half, weighting the
 * terms it stands in for twice, and gives a real signal. The input is cut or zero-padded to L = dft_length.
 */
function dft(
  c: ConvertCtx,
  x: GExpr,
  axisIn: number,
  length: number | undefined,
  inverse: boolean,
  onesided: boolean,
): GExpr {
  const dims = staticDims(c.type(x), `${c.opType} input`);
  const r = dims.length;
  const dtype = c.type(x).dtype;
  if (!isFloat(dtype)) c.unsupported(`input of type ${dtype}`);
  if (dims[r - 1] !== 1 && dims[r - 1] !== 2) c.unsupported(`a last dim of ${dims[r - 1]} (1: real, 2: complex)`);
  const axis = ((axisIn % r) + r) % r;
  if (axis === r - 1) c.unsupported('the transform along the real/imaginary dim');
  const n = dims[axis];
  const L = length ?? (inverse && onesided ? 2 * (n - 1) : n);
  if (!Number.isSafeInteger(L) || L < 1) c.unsupported(`dft_length ${L}`);
  const K = inverse ? L : onesided ? Math.floor(L / 2) + 1 : L;
  const complexOut = !(inverse && onesided);
  // weight[j][k] of input element j (< min(n, L)) in output element k, for the real and the imaginary input part
  const angle = (j: number, k: number) => (2 * Math.PI * ((j * k) % L)) / L;
  const w = (j: number) => (inverse && onesided ? (j === 0 || 2 * j === L ? 1 : 2) : 1) / (inverse ? L : 1);
  const used = (j: number) => j < L && (!(inverse && onesided) || 2 * j <= L);
  const matrix = (f: (j: number, k: number) => number) =>
    c.constant(
      tensor(
        dtype,
        [n, K],
        Array.from({ length: n * K }, (_, i) => {
          const j = Math.floor(i / K);
          return used(j) ? f(j, i % K) * w(j) : 0;
        }),
      ),
    );
  const sign = inverse ? 1 : -1;
  const part = (i: number) => {
    const p = c.call('squeeze', [c.call('slice', [x], { starts: [i], ends: [i + 1], axes: [r - 1], steps: [1] })], {
      axes: [r - 1],
    });
    // the transformed axis last, for the matmul
    return c.call('transpose', [p], {
      perm: [...Array.from({ length: r - 1 }, (_, d) => d).filter((d) => d !== axis), axis],
    });
  };
  const re = part(0),
    im = dims[r - 1] === 2 ? part(1) : undefined;
  const apply = (fRe: (j: number, k: number) => number, fIm: (j: number, k: number) => number) => {
    const a = c.call('matmul', [re, matrix(fRe)]);
    return im ? c.call('add', [a, c.call('matmul', [im, matrix(fIm)])]) : a;
  };
  // (re + i im)(cos + i sign sin) = re cos - sign im sin + i (sign re sin + im cos)
  const outs = [
    apply(
      (j, k) => Math.cos(angle(j, k)),
      (j, k) => -sign * Math.sin(angle(j, k)),
    ),
  ];
  if (complexOut)
    outs.push(
      apply(
        (j, k) => sign * Math.sin(angle(j, k)),
        (j, k) => Math.cos(angle(j, k)),
      ),
    );
  const back = Array.from({ length: r - 1 }, (_, d) => (d < axis ? d : d === axis ? r - 2 : d - 1));
  const parts = outs.map((o) => c.call('unsqueeze', [c.call('transpose', [o], { perm: back })], { axes: [r - 1] }));
  return parts.length === 1 ? parts[0] : c.call('concat', parts, { axis: r - 1 });
}
const dftNode = (c: ConvertCtx, axis: number) => {
  const len = c.optInput(1);
  return dft(
    c,
    c.input(0),
    axis,
    len ? scalarInput(c, len, 'dft_length') : undefined,
    c.int('inverse', 0) !== 0,
    c.int('onesided', 0) !== 0,
  );
};
converter('DFT', 17, (c) => dftNode(c, c.int('axis', 1)));
converter('DFT', 20, (c) => {
  const axis = c.optInput(2);
  return dftNode(c, axis ? scalarInput(c, axis, 'axis') : -2);
});

// ---- STFT (opset 17) ----

/** Frames of frame_length every frame_step samples (one gather), times the window, then a DFT of each frame. */
converter('STFT', 17, (c) => {
  const signal = c.input(0);
  const [, length, parts] = staticDims(c.type(signal), 'STFT signal');
  const step = scalarInput(c, c.input(1), 'frame_step');
  const window = c.optInput(2);
  const lengthInput = c.optInput(3);
  const frameLength = lengthInput
    ? scalarInput(c, lengthInput, 'frame_length')
    : window
      ? staticDims(c.type(window), 'STFT window')[0]
      : c.unsupported('neither window nor frame_length');
  if (!(step >= 1) || !(frameLength >= 1) || frameLength > length)
    c.unsupported(`frame_step ${step} and frame_length ${frameLength} for a signal of ${length}`);
  const frames = Math.floor((length - frameLength) / step) + 1;
  const index = c.constant(
    tensor(
      'int64',
      [frames, frameLength],
      Array.from({ length: frames * frameLength }, (_, i) => Math.floor(i / frameLength) * step + (i % frameLength)),
    ),
  );
  let framed = c.call('gather', [signal, index], { axis: 1 });
  if (window) framed = c.call('mul', [framed, c.call('reshape', [window], { shape: [1, 1, frameLength, 1] })]);
  if (parts !== 1 && parts !== 2) c.unsupported(`a last dim of ${parts}`);
  return dft(c, framed, 2, frameLength, false, c.int('onesided', 1) !== 0);
});

// ---- MelWeightMatrix (opset 17) ----

/**
 * Triangular filters from spectrogram bins to mel bins, as ONNX's reference computes them: num_mel_bins + 2 points
 * evenly spaced in mel between the edges (step: the mel range over that count), mapped back to hertz and to bin
 * indices floor((dft_length + 1) * f / sample_rate); each filter rises from its left point to its center and falls
 * to its right one.
 */
converter('MelWeightMatrix', 17, (c) => {
  const [mels, dftLength, sampleRate, lower, upper] = [0, 1, 2, 3, 4].map((i) =>
    scalarInput(
      c,
      c.input(i),
      ['num_mel_bins', 'dft_length', 'sample_rate', 'lower_edge_hertz', 'upper_edge_hertz'][i],
    ),
  );
  if (!(mels >= 1) || !(dftLength >= 1) || !(sampleRate > 0)) c.unsupported('non-positive sizes or sample rate');
  const bins = Math.floor(dftLength / 2) + 1;
  const toMel = (hz: number) => (2595 * Math.log1p(hz / 700)) / Math.LN10;
  const low = toMel(lower),
    step = (toMel(upper) - low) / (mels + 2);
  const points = Array.from({ length: mels + 2 }, (_, i) => {
    const hz = 700 * Math.expm1(((i * step + low) / 2595) * Math.LN10);
    return Math.trunc(Math.floor(((dftLength + 1) * hz) / sampleRate));
  });
  const w = new Array<number>(bins * mels).fill(0);
  const set = (j: number, i: number, v: number) => {
    if (j < 0 || j >= bins) c.unsupported(`an edge frequency outside the ${bins} spectrogram bins`);
    w[j * mels + i] = v;
  };
  for (let i = 0; i < mels; i++) {
    const [left, center, right] = [points[i], points[i + 1], points[i + 2]];
    if (center === left) set(center, i, 1);
    else for (let j = left; j <= center; j++) set(j, i, (j - left) / (center - left));
    for (let j = center; j < right; j++) set(j, i, (right - j) / (right - center));
  }
  const dtype = onnxDType(c.int('output_datatype', 1), 'MelWeightMatrix output_datatype');
  return c.constant(tensor(dtype, [bins, mels], isFloat(dtype) ? w : w.map(Math.trunc)));
});
