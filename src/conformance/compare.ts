// Comparing outputs with reference values: exact for integers and bools, rtol/atol for floats, NaN == NaN.
import type { Tensor } from '../runtime/tensor.js';
import { isFloat, isHalf } from '../runtime/dtype.js';
import { NARROW_FORMAT, halfValues } from '../runtime/half.js';

export interface Tolerance {
  rtol: number;
  atol: number;
}
export const DEFAULT_TOLERANCE: Tolerance = { rtol: 1e-3, atol: 1e-4 };

export interface Mismatch {
  message: string;
  maxAbsErr: number;
}

export function compareTensors(got: Tensor, want: Tensor, tol: Tolerance = DEFAULT_TOLERANCE): Mismatch | undefined {
  if (got.dtype !== want.dtype) return { message: `dtype ${got.dtype}, expected ${want.dtype}`, maxAbsErr: Infinity };
  if (got.shape.length !== want.shape.length || got.shape.some((d, i) => d !== want.shape[i])) {
    return { message: `shape [${got.shape}], expected [${want.shape}]`, maxAbsErr: Infinity };
  }
  let bad = 0,
    first = -1,
    maxErr = 0;
  const float = isFloat(want.dtype);
  // narrow floats compared as numbers; a result may also be one unit in the last place of the type away: Kiln
  // computes them in float32 and rounds once where numpy rounds after every operation
  const half = isHalf(want.dtype);
  const gotData = half ? halfValues(got.dtype, got.data) : got.data,
    wantData = half ? halfValues(want.dtype, want.data) : want.data;
  const f = NARROW_FORMAT[want.dtype];
  // (below float16's smallest normal, 2^-14, both 16-bit formats count float16's subnormal quantum)
  const smallest = f && f.m <= 3 ? 2 ** (1 - f.bias) : 2 ** -14;
  const ulp = (w: number) => 2 ** (Math.floor(Math.log2(Math.max(Math.abs(w), smallest))) - (f?.m ?? 7));
  for (let i = 0; i < want.data.length; i++) {
    const g = gotData[i],
      w = wantData[i];
    if (!float) {
      if (g !== w) {
        bad++;
        if (first < 0) first = i;
        maxErr = Math.max(maxErr, Math.abs(Number(g) - Number(w)));
      }
      continue;
    }
    const gn = g as number,
      wn = w as number;
    if (Number.isNaN(wn) && Number.isNaN(gn)) continue;
    if (gn === wn) continue; // also equal infinities
    const err = Math.abs(gn - wn);
    if (!(err <= tol.atol + tol.rtol * Math.abs(wn)) && !(half && err <= ulp(wn))) {
      bad++;
      if (first < 0) first = i;
    }
    if (Number.isFinite(err)) maxErr = Math.max(maxErr, err);
    else maxErr = Infinity;
  }
  if (!bad) return undefined;
  return {
    message: `${bad}/${want.data.length} values differ, first at ${first}: got ${gotData[first]}, expected ${wantData[first]}; max abs err ${maxErr.toExponential(2)}`,
    maxAbsErr: maxErr,
  };
}
