// The archive torch.jit.save writes: a zip (fflate reads it) whose entries sit under one root folder:
//   <root>/data.pkl                the module tree: objects of the code's classes, their attributes and tensors
//   <root>/constants.pkl           the tuple of tensor constants the code reads as CONSTANTS.cN
//   <root>/code/__torch__/a/b.py   the serialized TorchScript code of module __torch__.a.b
//   <root>/data/N, constants/N     raw little-endian storage bytes of data.pkl's and constants.pkl's tensors
//   <root>/traced_inputs.pkl       (traced models) the example inputs forward was traced with
//   <root>/.data/version (or version)  the file format version
import { unzipSync } from 'fflate';
import { KilnError } from '../../../runtime/errors.js';
import type { DType } from '../../../runtime/dtype.js';
import type { Tensor } from '../../../runtime/tensor.js';
import { STORAGE_DTYPES, pickledTensorReader } from '../storage.js';
import { type PickledTensor, PyObject, PyTuple, type PyValue, unpickle } from '../pickle.js';
import { type ClassDef, type CodeFile, type FuncDef, parseCodeFile } from './parse.js';

const HINT = 'the file is truncated or corrupt, or not a TorchScript file; save it again with torch.jit.save';

/** File format versions torch.jit.save writes (torch 1.6 .. 2.x write 3 to 10). */
const VERSIONS = { min: 1, max: 10 };

const HINT_SAVE = 'save it again with torch.jit.save';

export interface TorchScriptArchive {
  root: string;
  /** The top module (data.pkl). */
  module: PyObject;
  /** CONSTANTS.cN */
  constants: PyValue[];
  /** The shapes and dtypes forward was traced with (traced models only). */
  tracedInputs?: { shape: number[]; dtype: DType }[];
  /** The class or function with this qualified name ('__torch__.a.b.C'), from the code files. */
  lookup(qualName: string): ClassDef | FuncDef | undefined;
  /** A pickled tensor's values; `name` says where it is used in messages. */
  tensor(t: PickledTensor, name: string): Tensor;
}

/** Whether the zip's entry names look like a TorchScript archive. */
export const looksLikeTorchScript = (names: readonly string[]): boolean =>
  names.some((n) => /^([^/]+\/)?data\.pkl$/.test(n)) && names.some((n) => /^([^/]+\/)?code\//.test(n));

export function readTorchScriptArchive(bytes: Uint8Array): TorchScriptArchive {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes);
  } catch (e) {
    throw new KilnError('E_MODEL_DECODE', `not a readable TorchScript archive: ${(e as Error).message}`, {
      hint: HINT,
    });
  }
  const names = Object.keys(files);
  const dataEntry = names.find((n) => /^([^/]+\/)?data\.pkl$/.test(n));
  if (!dataEntry) {
    throw new KilnError('E_MODEL_DECODE', 'not a TorchScript archive: the zip has no data.pkl', { hint: HINT });
  }
  const root = dataEntry.slice(0, dataEntry.length - 'data.pkl'.length);
  if (!names.some((n) => n.startsWith(`${root}code/`))) {
    throw new KilnError(
      'E_UNSUPPORTED',
      'this archive has data.pkl but no code/: it is a torch.save checkpoint (weights only), not a TorchScript program',
      { hint: 'save the model with torch.jit.save(torch.jit.trace(model, example)), or torch.export.save' },
    );
  }
  // torch >= 2.1 writes .data/version, older releases version
  const versionFile = files[`${root}.data/version`] ?? files[`${root}version`];
  const versionText = versionFile ? new TextDecoder().decode(versionFile).trim() : '';
  const version = Number(versionText);
  if (!Number.isInteger(version) || version < VERSIONS.min || version > VERSIONS.max) {
    throw new KilnError(
      'E_UNSUPPORTED',
      `TorchScript file format version '${versionText || 'missing'}' is not supported; Kiln reads versions ${VERSIONS.min} to ${VERSIONS.max}`,
      { hint: 'save the model again with torch.jit.save from torch 1.6 or later' },
    );
  }
  const byteorder = files[`${root}byteorder`];
  if (byteorder && new TextDecoder().decode(byteorder).trim() !== 'little') {
    throw new KilnError('E_UNSUPPORTED', 'the archive stores big-endian weights', {
      hint: 'save the model on a little-endian machine',
    });
  }
  const module = unpickle(files[dataEntry], 'data.pkl');
  if (!(module instanceof PyObject)) {
    throw new KilnError('E_MODEL_INVALID', 'data.pkl does not hold a module', { hint: HINT });
  }
  const constantsPkl = files[`${root}constants.pkl`];
  const constantsValue = constantsPkl ? unpickle(constantsPkl, 'constants.pkl', 'constants') : new PyTuple([]);
  const constants = constantsValue instanceof PyTuple ? constantsValue.items : [];

  const parsed = new Map<string, CodeFile | null>();
  const codeFile = (modulePath: string): CodeFile | null => {
    if (parsed.has(modulePath)) return parsed.get(modulePath)!;
    const path = `code/${modulePath.replace(/\./g, '/')}.py`;
    const src = files[root + path];
    const file = src ? parseCodeFile(new TextDecoder().decode(src), path, modulePath) : null;
    parsed.set(modulePath, file);
    return file;
  };
  const lookup = (qualName: string): ClassDef | FuncDef | undefined => {
    // the longest module path that has a code file holds the name
    const parts = qualName.split('.');
    for (let i = parts.length - 1; i >= 1; i--) {
      const file = codeFile(parts.slice(0, i).join('.'));
      if (!file) continue;
      const [first, ...rest] = parts.slice(i);
      const c = file.classes.get(first);
      if (c && rest.length === 0) return c;
      if (c && rest.length === 1) return c.methods.get(rest[0]);
      if (!c && rest.length === 0) return file.functions.get(first);
      return undefined;
    }
    return undefined;
  };

  const tensor = pickledTensorReader(files, root, HINT_SAVE);

  return { root, module, constants, tracedInputs: tracedInputs(files, root), lookup, tensor };
}

/** traced_inputs.pkl: {'forward': [tensor, ...]} (only the shapes and dtypes are read; the data is often empty). */
function tracedInputs(files: Record<string, Uint8Array>, root: string): TorchScriptArchive['tracedInputs'] {
  const raw = files[`${root}traced_inputs.pkl`];
  if (!raw) return undefined;
  const v = unpickle(raw, 'traced_inputs.pkl', 'traced_inputs');
  const forward = v instanceof Map ? v.get('forward') : undefined;
  if (!Array.isArray(forward)) return undefined;
  const out: { shape: number[]; dtype: DType }[] = [];
  for (const t of forward) {
    const pt = t as PickledTensor | null;
    const dtype = pt?.kind === 'tensor' ? STORAGE_DTYPES[pt.storageType] : undefined;
    if (pt?.kind !== 'tensor' || !dtype) return undefined;
    out.push({ shape: pt.sizes, dtype });
  }
  return out;
}
