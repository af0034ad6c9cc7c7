// ONNX's reference evaluator (onnx.reference, in the local Python wheels) as the numerical reference for operators
// that ONNX Runtime does not implement yet (the opset-26/27 ones). It runs in the project's venv, one process per call.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DType } from '../../src/runtime/dtype.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { tempDir } from './temp.js';

const PYTHON = join(import.meta.dirname, '../../.venv/bin/python');

const SCRIPT = `
import base64, json, sys
import numpy as np
from onnx.reference import ReferenceEvaluator
feeds = {k: np.frombuffer(base64.b64decode(v['b64']), dtype=v['dtype']).reshape(v['shape'])
         for k, v in json.load(open(sys.argv[2])).items()}
ref = ReferenceEvaluator(sys.argv[1])
outs = ref.run(None, feeds)
json.dump({name: {'dtype': str(o.dtype), 'shape': list(o.shape), 'b64': base64.b64encode(np.ascontiguousarray(o).tobytes()).decode()}
           for name, o in zip(ref.output_names, outs)}, open(sys.argv[3], 'w'))
`;

export const haveReference = existsSync(PYTHON);

/** Runs `model` on `feeds` with onnx.reference.ReferenceEvaluator; outputs by name. */
export function runReference(model: Uint8Array, feeds: Record<string, Tensor>): Record<string, Tensor> {
  const dir = tempDir('kiln-ref-');
  const modelPath = join(dir, 'model.onnx'),
    feedsPath = join(dir, 'feeds.json'),
    outPath = join(dir, 'out.json');
  writeFileSync(modelPath, model);
  const json = Object.fromEntries(
    Object.entries(feeds).map(([k, t]) => [
      k,
      {
        dtype: t.dtype,
        shape: t.shape,
        b64: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('base64'),
      },
    ]),
  );
  writeFileSync(feedsPath, JSON.stringify(json));
  execFileSync(PYTHON, ['-c', SCRIPT, modelPath, feedsPath, outPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  const out = JSON.parse(readFileSync(outPath, 'utf8')) as Record<
    string,
    { dtype: DType; shape: number[]; b64: string }
  >;
  return Object.fromEntries(
    Object.entries(out).map(([k, v]) => {
      const bytes = Buffer.from(v.b64, 'base64');
      const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      return [k, { dtype: v.dtype, shape: v.shape, data: typedArray(v.dtype, buf) }];
    }),
  );
}

function typedArray(dtype: DType, buf: ArrayBuffer): Tensor['data'] {
  switch (dtype) {
    case 'float32':
      return new Float32Array(buf);
    case 'float64':
      return new Float64Array(buf);
    case 'int32':
      return new Int32Array(buf);
    case 'int64':
      return new BigInt64Array(buf);
    default:
      throw new Error(`runReference: outputs of type ${dtype} are not read back`);
  }
}
