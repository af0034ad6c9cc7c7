// Which frontend reads a model file: torch.export and TorchScript archives are zip files ('PK'), told apart by
// their entries (a TorchScript archive has data.pkl and code/); ONNX models are protobuf (whose first byte can
// never be 'P': ModelProto has no field 10).
import { unzipSync } from 'fflate';
import { KilnError } from '../runtime/errors.js';
import { isZip } from './pytorch/archive.js';
import { looksLikeTorchScript } from './pytorch/torchscript/archive.js';

export type ModelFormat = 'onnx' | 'pt2' | 'torchscript';
export const MODEL_FORMATS: readonly ModelFormat[] = ['onnx', 'pt2', 'torchscript'];

export function detectFormat(bytes: Uint8Array, given?: string): ModelFormat {
  if (given !== undefined) {
    if (!(MODEL_FORMATS as readonly string[]).includes(given)) {
      throw new KilnError('E_INPUT', `unknown model format '${given}'`, {
        hint: `use one of ${MODEL_FORMATS.join(', ')}, or leave it out to detect it from the file`,
      });
    }
    return given as ModelFormat;
  }
  if (!isZip(bytes)) return 'onnx';
  return looksLikeTorchScript(zipEntryNames(bytes)) ? 'torchscript' : 'pt2';
}

/** The entry names of a zip, read from its directory without inflating anything; [] when it cannot be read. */
function zipEntryNames(bytes: Uint8Array): string[] {
  const names: string[] = [];
  try {
    unzipSync(bytes, {
      filter: (f) => {
        names.push(f.name);
        return false;
      },
    });
  } catch {
    // an unreadable archive goes to the .pt2 reader, which reports it
  }
  return names;
}
