// Running a PyTorch fixture (scripts/gen_pytorch_models.py: input_N.npy, output_N.npy next to the model) through a
// compiled artifact and comparing every output with PyTorch's.
import { expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from '../../src/index.js';
import { compareTensors } from '../../src/conformance/compare.js';
import { readNpy } from '../../src/cli/tensor-files.js';

/** Runs `artifact` on the fixture's inputs and checks each output; returns each output's largest absolute error. */
export async function matchesPyTorch(
  artifact: Uint8Array,
  dir: string,
  info: { inputs: readonly (readonly [string, ...unknown[]])[]; outputs: number },
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
      expect(compareTensors(got, want)?.message).toBeUndefined();
      let max = 0;
      want.data.forEach((v, k) => {
        max = Math.max(max, Math.abs(Number(got.data[k]) - Number(v)));
      });
      return max;
    });
  } finally {
    m.dispose();
  }
}
