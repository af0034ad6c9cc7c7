// ImageNet preprocessing as torchvision's eval transforms on a PIL image: Resize(256) (shorter side, bilinear with
// PIL's antialiasing triangle filter, uint8 after each pass), CenterCrop(224), ToTensor, Normalize. Pure code, no
// DOM: the browser demo runs it on canvas pixels and the end-to-end test runs it in Node.

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** PIL's resampling coefficients for the bilinear (triangle) filter, antialiased when downscaling. */
function coefficients(inSize: number, outSize: number): { start: number; weights: Float64Array }[] {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const out = [];
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const start = Math.max(Math.trunc(center - support + 0.5), 0);
    const end = Math.min(Math.trunc(center + support + 0.5), inSize);
    const weights = new Float64Array(end - start);
    let sum = 0;
    for (let i = start; i < end; i++) {
      const t = Math.abs((i - center + 0.5) / filterScale);
      const w = t < 1 ? 1 - t : 0;
      weights[i - start] = w;
      sum += w;
    }
    if (sum !== 0) for (let k = 0; k < weights.length; k++) weights[k] /= sum;
    out.push({ start, weights });
  }
  return out;
}

const toByte = (v: number) => (v <= 0 ? 0 : v >= 255 ? 255 : Math.floor(v + 0.5));

/** Resizes RGB(A) pixels (`channels` per pixel) to RGB, horizontal pass then vertical, as PIL does. */
export function resizeBilinear(
  src: ArrayLike<number>,
  w: number,
  h: number,
  channels: number,
  ow: number,
  oh: number,
): Uint8Array {
  const cx = coefficients(w, ow);
  const tmp = new Uint8Array(ow * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < ow; x++) {
      const { start, weights } = cx[x];
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (let k = 0; k < weights.length; k++) acc += weights[k] * src[(y * w + start + k) * channels + c];
        tmp[(y * ow + x) * 3 + c] = toByte(acc);
      }
    }
  }
  const cy = coefficients(h, oh);
  const out = new Uint8Array(ow * oh * 3);
  for (let y = 0; y < oh; y++) {
    const { start, weights } = cy[y];
    for (let x = 0; x < ow; x++) {
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (let k = 0; k < weights.length; k++) acc += weights[k] * tmp[((start + k) * ow + x) * 3 + c];
        out[(y * ow + x) * 3 + c] = toByte(acc);
      }
    }
  }
  return out;
}

/** Python's round(): halves to even. */
const roundHalfEven = (v: number) => {
  const f = Math.floor(v);
  const d = v - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
};

/**
 * RGBA (or RGB, `channels` 3) pixels of a `width` x `height` image to a normalized NCHW float32 tensor of
 * 3 x crop x crop: Resize(resize) of the shorter side, CenterCrop(crop), ToTensor, Normalize(mean, std).
 */
export function preprocessImageNet(
  pixels: ArrayLike<number>,
  width: number,
  height: number,
  opts: { channels?: number; resize?: number; crop?: number } = {},
): Float32Array {
  const channels = opts.channels ?? 4;
  const resize = opts.resize ?? 256;
  const crop = opts.crop ?? 224;
  // torchvision: the shorter side becomes `resize`, the longer int(resize * long / short).
  const [ow, oh] =
    width <= height ? [resize, Math.trunc((resize * height) / width)] : [Math.trunc((resize * width) / height), resize];
  const rgb = resizeBilinear(pixels, width, height, channels, ow, oh);
  const top = roundHalfEven((oh - crop) / 2);
  const left = roundHalfEven((ow - crop) / 2);
  const plane = crop * crop;
  const out = new Float32Array(3 * plane);
  for (let y = 0; y < crop; y++) {
    for (let x = 0; x < crop; x++) {
      const p = ((top + y) * ow + left + x) * 3;
      for (let c = 0; c < 3; c++)
        out[c * plane + y * crop + x] = (rgb[p + c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
    }
  }
  return out;
}

/** Softmax (in float64) and the `k` most probable classes, best first. */
export function topK(logits: ArrayLike<number>, k = 5): { index: number; prob: number }[] {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const e = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += e[i] = Math.exp(logits[i] - max);
  const idx = Array.from(e.keys()).sort((a, b) => e[b] - e[a] || a - b);
  return idx.slice(0, k).map((index) => ({ index, prob: e[index] / sum }));
}
