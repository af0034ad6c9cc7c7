// ONNX Runtime (onnxruntime-node, CPU) as the numerical reference.
import * as ort from 'onnxruntime-node';
import type { Tensor } from '../../src/runtime/tensor.js';

export async function runOrt(
  model: Uint8Array | string,
  feeds: Record<string, Tensor>,
): Promise<Record<string, Tensor>> {
  const session = await ort.InferenceSession.create(model as Uint8Array, { intraOpNumThreads: 1 });
  const out = await session.run(
    Object.fromEntries(
      Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.shape)]),
    ),
  );
  return Object.fromEntries(
    Object.entries(out).map(([k, v]) => [
      k,
      { dtype: v.type as Tensor['dtype'], shape: [...v.dims], data: v.data as Float32Array },
    ]),
  );
}
