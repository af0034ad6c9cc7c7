// Which frontend reads a model file: torch.export archives are zip files ('PK'), ONNX models are protobuf
// (whose first byte can never be 'P': ModelProto has no field 10).
import { KilnError } from '../runtime/errors.js';
import { isZip } from './pytorch/archive.js';

export type ModelFormat = 'onnx' | 'pt2';
export const MODEL_FORMATS: readonly ModelFormat[] = ['onnx', 'pt2'];

export function detectFormat(bytes: Uint8Array, given?: string): ModelFormat {
  if (given !== undefined) {
    if (!(MODEL_FORMATS as readonly string[]).includes(given)) {
      throw new KilnError('E_INPUT', `unknown model format '${given}'`, {
        hint: `use one of ${MODEL_FORMATS.join(', ')}, or leave it out to detect it from the file`,
      });
    }
    return given as ModelFormat;
  }
  return isZip(bytes) ? 'pt2' : 'onnx';
}
