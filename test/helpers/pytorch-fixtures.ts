// Running a PyTorch fixture (scripts/gen_pytorch_models.py: input_N.npy, output_N.npy next to the model) through a
// compiled artifact and comparing every output with PyTorch's.
import { expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from '../../src/index.js';
import { DEFAULT_TOLERANCE, type Tolerance, compareTensors } from '../../src/conformance/compare.js';
import { readNpy } from '../../src/cli/tensor-files.js';
import { elementValue } from '../../src/runtime/half.js';

/**
 * Tolerances for models with half-float weights: PyTorch computes a float16 model in float16 (rounding after every
 * operator) and Kiln in float32 between its kernels' half loads and stores, so they agree to a few half ulps.
 */
export const HALF_TOLERANCE = {
  float16: { rtol: 1e-2, atol: 1e-3 },
  bfloat16: { rtol: 1e-2, atol: 1e-2 },
} as const;

/** Runs `artifact` on the fixture's inputs and checks each output; returns each output's largest absolute error. */
export async function matchesPyTorch(
  artifact: Uint8Array,
  dir: string,
  info: { inputs: readonly (readonly [string, ...unknown[]])[]; outputs: number },
  tolerance: Tolerance = DEFAULT_TOLERANCE,
): Promise<number[]> {
  const m = await load(artifact);
  try {
    const inputs = Object.fromEntries(
      info.inputs.map(([n], i) => [n, readNpy(readFileSync(join(dir, `input_${i}.npy`)), n)]),
    );
    const out = m.runSync(inputs);
    expect(m.outputs).toHaveLength(info.outputs);
    return m.outputs.map((o, i) => {
      const want = readNpy(readFileSync(join(dir, `output_${i}.npy`)), `output_${i}`);
      const got = out[o.name];
      expect(got.shape).toEqual(want.shape);
      expect(compareTensors(got, want, tolerance)?.message).toBeUndefined();
      let max = 0;
      for (let k = 0; k < want.data.length; k++) {
        const err = Number(elementValue(got.dtype, got.data, k)) - Number(elementValue(want.dtype, want.data, k));
        max = Math.max(max, Math.abs(err));
      }
      return max;
    });
  } finally {
    m.dispose();
  }
}
