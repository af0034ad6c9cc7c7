// Comparing outputs with reference values: exact for integers and bools, rtol/atol for floats, NaN == NaN.
import type { Tensor } from '../runtime/tensor.js';
import { isFloat } from '../runtime/dtype.js';

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
  for (let i = 0; i < want.data.length; i++) {
    const g = got.data[i],
      w = want.data[i];
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
    if (!(err <= tol.atol + tol.rtol * Math.abs(wn))) {
      bad++;
      if (first < 0) first = i;
    }
    if (Number.isFinite(err)) maxErr = Math.max(maxErr, err);
    else maxErr = Infinity;
  }
  if (!bad) return undefined;
  return {
    message: `${bad}/${want.data.length} values differ, first at ${first}: got ${got.data[first]}, expected ${want.data[first]}; max abs err ${maxErr.toExponential(2)}`,
    maxAbsErr: maxErr,
  };
}
