// The .pt2 archive torch.export.save writes: a zip (fflate reads it) whose entries sit under one root folder:
//   <root>/archive_format              'pt2'
//   <root>/models/<model>.json         the ExportedProgram (graph, signature, schema version)
//   <root>/data/weights/<model>_weights_config.json   parameter/buffer name -> storage file + tensor metadata
//   <root>/data/weights/weight_N       raw little-endian storage bytes (several tensors may share one storage)
//   <root>/data/constants/<model>_constants_config.json, tensor_N   the same for lifted constants
// Weights are rebuilt from their storage with sizes, strides and storage offset; each storage is decoded once.
// The legacy layout (torch 2.1 .. 2.5's torch.export.save) is read too:
//   serialized_exported_program.json   the ExportedProgram
//   serialized_state_dict.pt           torch.save of the state dict (a zip: data.pkl + data/N), params and buffers
//   serialized_constants.pt            torch.save of the lifted constants
//   version                            the schema version
import { unzipSync } from 'fflate';
import { KilnError } from '../../runtime/errors.js';
import { ARRAY, BYTES, type DType } from '../../runtime/dtype.js';
import type { Tensor } from '../../runtime/tensor.js';
import { pickledTensorReader, viewOfStorage } from './storage.js';
import { type PickledTensor, unpickle } from './pickle.js';
import {
  type ExportedProgramJson,
  type PayloadConfigJson,
  type TensorMetaJson,
  scalarDType,
  symIntValue,
} from './schema.js';

const DECODE_HINT =
  'the file is truncated or corrupt, or not a torch.export .pt2 file; save it again with torch.export.save';

export interface Pt2Archive {
  /** The folder all entries sit in (torch uses the file's stem, or 'archive'). */
  root: string;
  model: string;
  program: ExportedProgramJson;
  /** Parameters and buffers by their state-dict name (e.g. 'layer1.0.conv1.weight'). */
  weights: NamedTensors;
  /** Lifted constants (and non-persistent buffers) by name. */
  constants: NamedTensors;
}

/** Tensors rebuilt on first use (a model may list buffers it never reads, such as num_batches_tracked). */
export interface NamedTensors {
  has(name: string): boolean;
  get(name: string): Tensor;
}

/** True when the bytes are a zip archive (local file header 'PK\x03\x04' or an empty archive's 'PK\x05\x06'). */
export const isZip = (b: Uint8Array): boolean =>
  b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && ((b[2] === 3 && b[3] === 4) || (b[2] === 5 && b[3] === 6));

function unzip(bytes: Uint8Array): Record<string, Uint8Array> {
  try {
    return unzipSync(bytes);
  } catch (e) {
    throw new KilnError('E_MODEL_DECODE', `not a readable .pt2 archive: ${(e as Error).message}`, {
      hint: DECODE_HINT,
    });
  }
}

/** Whether the zip's entry names look like a torch.export archive (either layout). */
export function looksLikePt2(names: readonly string[]): boolean {
  return names.some((n) => /(^|\/)archive_format$/.test(n) || /(^|\/)serialized_exported_program\.json$/.test(n));
}

function parseJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  } catch (e) {
    throw new KilnError('E_MODEL_DECODE', `${what} is not valid JSON: ${(e as Error).message}`, { hint: DECODE_HINT });
  }
}

export function readPt2Archive(bytes: Uint8Array): Pt2Archive {
  if (!isZip(bytes)) {
    throw new KilnError('E_MODEL_DECODE', 'not a .pt2 archive: the bytes are not a zip file', { hint: DECODE_HINT });
  }
  const files = unzip(bytes);
  const names = Object.keys(files);
  const formatEntry = names.find((n) => /^([^/]+\/)?archive_format$/.test(n));
  if (!formatEntry) {
    const legacy = names.find((n) => /^([^/]+\/)?serialized_exported_program\.json$/.test(n));
    if (legacy)
      return readLegacyArchive(files, legacy.slice(0, legacy.length - 'serialized_exported_program.json'.length));
    if (names.some((n) => /(^|\/)(data\.pkl|constants\.pkl)$/.test(n))) {
      throw new KilnError('E_UNSUPPORTED', 'this is a TorchScript or torch.save archive, not a torch.export .pt2', {
        hint: 'export the model with torch.export.export and torch.export.save',
      });
    }
    throw new KilnError('E_MODEL_DECODE', 'not a .pt2 archive: no archive_format entry in the zip', {
      hint: DECODE_HINT,
    });
  }
  const root = formatEntry.slice(0, formatEntry.length - 'archive_format'.length);
  const format = new TextDecoder().decode(files[formatEntry]).trim();
  if (format !== 'pt2') {
    throw new KilnError('E_UNSUPPORTED', `archive_format is '${format}', Kiln reads 'pt2' archives`, {
      hint: DECODE_HINT,
    });
  }
  const byteorder = files[`${root}byteorder`];
  if (byteorder && new TextDecoder().decode(byteorder).trim() !== 'little') {
    throw new KilnError('E_UNSUPPORTED', 'the archive stores big-endian weights', {
      hint: 'save the model on a little-endian machine',
    });
  }
  const models = names.filter((n) => n.startsWith(`${root}models/`) && n.endsWith('.json')).sort();
  if (models.length === 0) {
    throw new KilnError('E_MODEL_INVALID', `the archive has no ExportedProgram (${root}models/*.json)`, {
      hint: 'the archive holds no exported program (AOTInductor-only packages are not read); save one with torch.export.save',
    });
  }
  const modelEntry = models.includes(`${root}models/model.json`) ? `${root}models/model.json` : models[0];
  const model = modelEntry.slice(`${root}models/`.length, -'.json'.length);
  const program = parseJson<ExportedProgramJson>(files[modelEntry], modelEntry.slice(root.length));
  const config = (dir: string, kind: string): PayloadConfigJson => {
    const path = `${root}data/${dir}/${model}_${kind}_config.json`;
    return files[path] ? parseJson<PayloadConfigJson>(files[path], path.slice(root.length)) : { config: {} };
  };
  return {
    root,
    model,
    program,
    weights: storageTensors(files, `${root}data/weights/`, config('weights', 'weights'), 'weight'),
    constants: storageTensors(files, `${root}data/constants/`, config('constants', 'constants'), 'constant'),
  };
}

/** The tensors of one payload config, each a strided view of a storage file; storages decoded once, on demand. */
function storageTensors(
  files: Record<string, Uint8Array>,
  dir: string,
  cfg: PayloadConfigJson,
  what: string,
): NamedTensors {
  const entries = cfg?.config ?? {};
  const storages = new Map<string, { dtype: DType; data: ArrayLike<number | bigint> }>();
  const built = new Map<string, Tensor>();
  const storage = (name: string, path: string, dtype: DType) => {
    const key = `${path}:${dtype}`;
    const have = storages.get(key);
    if (have) return have;
    const raw = files[dir + path];
    if (!raw) {
      throw new KilnError(
        'E_MODEL_INVALID',
        `${what} '${name}' is stored in '${dir}${path}', which the archive lacks`,
        {
          hint: 'the archive is incomplete or was altered; save it again with torch.export.save',
        },
      );
    }
    if (raw.byteLength % BYTES[dtype] !== 0) {
      throw new KilnError(
        'E_MODEL_INVALID',
        `storage '${dir}${path}' of ${what} '${name}' has ${raw.byteLength} bytes, not a whole number of ${dtype} elements`,
        { hint: 'the archive is truncated or was altered; save it again' },
      );
    }
    const copy = raw.slice(); // aligned, and independent of the zip's buffer
    const s = { dtype, data: new ARRAY[dtype](copy.buffer, 0, raw.byteLength / BYTES[dtype]) };
    storages.set(key, s);
    return s;
  };
  return {
    has: (name) => name in entries,
    get(name) {
      const cached = built.get(name);
      if (cached) return cached;
      const p = entries[name];
      if (!p)
        throw new KilnError('E_MODEL_INVALID', `the archive has no ${what} '${name}'`, {
          hint: 'the archive is incomplete or was altered; save it again',
        });
      if (p.use_pickle) {
        throw new KilnError(
          'E_UNSUPPORTED',
          `${what} '${name}' is a pickled tensor subclass, which Kiln does not read`,
          {
            hint: 'save plain tensors (no tensor subclasses such as quantized or DTensor weights)',
          },
        );
      }
      if (!p.tensor_meta)
        throw new KilnError('E_MODEL_INVALID', `${what} '${name}' has no tensor metadata`, {
          hint: 'the archive was altered; save it again',
        });
      const t = stridedTensor(name, what, p.tensor_meta, (dtype) => storage(name, p.path_name, dtype));
      built.set(name, t);
      return t;
    },
  };
}

/** A contiguous copy of the view (sizes, strides, storage offset) of a storage. */
function stridedTensor(
  name: string,
  what: string,
  meta: TensorMetaJson,
  storage: (dtype: DType) => { data: ArrayLike<number | bigint> },
): Tensor {
  const dtype = scalarDType(meta.dtype, `${what} '${name}'`);
  if (meta.layout !== undefined && meta.layout !== 7) {
    throw new KilnError('E_UNSUPPORTED', `${what} '${name}' has a sparse or mkldnn layout (${meta.layout})`, {
      hint: 'save dense (strided) tensors',
    });
  }
  const dim = (v: TensorMetaJson['sizes'][number], i: number, field: string) =>
    symIntValue(v, () => {
      throw new KilnError('E_DYNAMIC', `${what} '${name}' has a symbolic ${field}[${i}]`, {
        hint: 'weights must have fixed shapes',
      });
    });
  const shape = meta.sizes.map((v, i) => dim(v, i, 'size'));
  const strides = (meta.strides ?? []).map((v, i) => dim(v, i, 'stride'));
  const offset = meta.storage_offset === undefined ? 0 : dim(meta.storage_offset, 0, 'storage offset');
  return viewOfStorage(`${what} '${name}'`, dtype, shape, strides, offset, () => storage(dtype).data, {
    hint: 'the archive is truncated or was altered; save it again',
  });
}

/** The legacy layout: the program's JSON next to torch.save archives of its state dict and constants. */
function readLegacyArchive(files: Record<string, Uint8Array>, root: string): Pt2Archive {
  const program = parseJson<ExportedProgramJson>(
    files[`${root}serialized_exported_program.json`],
    'serialized_exported_program.json',
  );
  return {
    root,
    model: 'model',
    program,
    weights: torchSaveTensors(files[`${root}serialized_state_dict.pt`], 'serialized_state_dict.pt'),
    constants: torchSaveTensors(files[`${root}serialized_constants.pt`], 'serialized_constants.pt'),
  };
}

/** The tensors of a torch.save archive holding a dict of name -> tensor (empty when the entry is absent or empty). */
function torchSaveTensors(bytes: Uint8Array | undefined, entry: string): NamedTensors {
  if (!bytes?.length) return { has: () => false, get: (name) => missingTensor(name, entry) };
  if (!isZip(bytes)) {
    throw new KilnError('E_MODEL_DECODE', `${entry} is not a torch.save zip archive`, { hint: DECODE_HINT });
  }
  const files = unzip(bytes);
  const pkl = Object.keys(files).find((n) => /^([^/]+\/)?data\.pkl$/.test(n));
  if (!pkl) throw new KilnError('E_MODEL_DECODE', `${entry} has no data.pkl`, { hint: DECODE_HINT });
  const dict = unpickle(files[pkl], `${entry}/data.pkl`);
  if (!(dict instanceof Map)) {
    throw new KilnError('E_MODEL_INVALID', `${entry} does not hold a dict of tensors`, { hint: DECODE_HINT });
  }
  const read = pickledTensorReader(files, pkl.slice(0, pkl.length - 'data.pkl'.length), 'save it again');
  const built = new Map<string, Tensor>();
  return {
    has: (name) => dict.has(name),
    get(name) {
      const have = built.get(name);
      if (have) return have;
      const t = dict.get(name) as PickledTensor | undefined;
      if (t?.kind !== 'tensor') return missingTensor(name, entry);
      const out = read(t, `'${name}'`);
      built.set(name, out);
      return out;
    },
  };
}

function missingTensor(name: string, entry: string): never {
  throw new KilnError('E_MODEL_INVALID', `the archive has no tensor '${name}' in ${entry}`, {
    hint: 'the archive is incomplete or was altered; save it again',
  });
}
