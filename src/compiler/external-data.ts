// Reads ONNX external tensor data (data_location = EXTERNAL) relative to the model file's folder.
import { closeSync, openSync, readSync, fstatSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { KilnError } from '../runtime/errors.js';
import type { ExternalDataReader } from '../frontend/onnx/tensor-proto.js';

export function externalDataReader(modelPath: string): ExternalDataReader {
  const dir = dirname(modelPath);
  return (location, offset, length) => {
    const rel = normalize(location);
    if (isAbsolute(rel) || rel.split(sep).includes('..')) {
      throw new KilnError('E_MODEL_INVALID', `external data location '${location}' leaves the model's folder`, {
        hint: 'external data must be stored next to the model file',
      });
    }
    const file = join(dir, rel);
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch {
      throw new KilnError('E_MODEL_INVALID', `external data file '${file}' cannot be opened`, {
        hint: 'copy the model together with its external data files',
      });
    }
    try {
      const size = fstatSync(fd).size;
      const n = length ?? size - offset;
      if (offset + n > size)
        throw new KilnError(
          'E_MODEL_INVALID',
          `external data '${location}' is shorter (${size} bytes) than the model says (${offset}+${n})`,
          { hint: 'the external data file is truncated' },
        );
      const buf = new Uint8Array(n);
      readSync(fd, buf, 0, n, offset);
      return buf;
    } finally {
      closeSync(fd);
    }
  };
}
