// Image uploads for /predict: decoded with sharp (libvips, prebuilt for each platform, so it installs from npm
// without a compiler; it decodes on libuv's thread pool, off the event loop), then the ImageNet preprocessing the
// browser demo uses (src/demo/preprocess.ts: torchvision's Resize, CenterCrop, Normalize).
import type Sharp from 'sharp';
import { KilnError } from '../runtime/errors.js';
import { preprocessImageNet } from '../demo/preprocess.js';

/** Images beyond this many pixels are refused before decoding (a small file can declare a huge image). */
export const MAX_IMAGE_PIXELS = 50_000_000;

export interface DecodedImage {
  rgb: Uint8Array;
  width: number;
  height: number;
}

/** JPEG, PNG (and what else libvips reads) to 8-bit RGB pixels. */
export async function decodeImage(sharp: typeof Sharp, bytes: Buffer): Promise<DecodedImage> {
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: MAX_IMAGE_PIXELS, failOn: 'error' })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`${info.channels} channels after conversion to RGB`);
    return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (e) {
    throw new KilnError('E_INPUT', `the uploaded file is not an image that can be decoded: ${(e as Error).message}`, {
      hint: `upload a JPEG or PNG (at most ${MAX_IMAGE_PIXELS / 1e6} megapixels) as the multipart field 'file'`,
    });
  }
}

/** An image as the float32 [3, crop, crop] tensor an ImageNet classifier takes (resize: the shorter side first). */
export function imageNetTensor(img: DecodedImage, crop: number): Float32Array {
  return preprocessImageNet(img.rgb, img.width, img.height, {
    channels: 3,
    crop,
    resize: Math.round((crop * 256) / 224),
  });
}
