// Packages that only some features need (tuning: better-sqlite3 and piscina; CUDA: koffi; WebGPU in Node: webgpu;
// the model server: fastify, @fastify/multipart, prom-client, sharp, yaml)
// are optional peer dependencies: `npm install kiln` does not bring them, and each is loaded when its feature is
// first used. A missing one is a KilnError that names the package and the command that installs it.
import { createRequire } from 'node:module';
import { KilnError } from '../runtime/errors.js';

/** The optional packages, with the version range Kiln is tested with and what needs them. */
export const OPTIONAL_PACKAGES = {
  'better-sqlite3': {
    range: '^12.11.1',
    feature: 'the tuning database (kiln tune, kiln db, compiling with tuning records)',
  },
  piscina: { range: '^5.3.2', feature: "the tuner's worker pool (kiln tune)" },
  koffi: { range: '^3.3.4', feature: "the CUDA runtime (target 'cuda')" },
  webgpu: { range: '^0.6.2', feature: "WebGPU in Node (target 'webgpu')" },
  fastify: { range: '^5.12.8', feature: 'the model server (kiln serve --models)' },
  '@fastify/multipart': { range: '^10.1.9', feature: "the model server's image uploads (kiln serve --models)" },
  'prom-client': { range: '^15.1.3', feature: "the model server's /metrics (kiln serve --models)" },
  sharp: { range: '^0.35.6', feature: "the model server's image decoding (kiln serve --models)" },
  yaml: { range: '^2.9.1', feature: 'YAML configuration files (kiln serve --config FILE.yaml)' },
} as const;
export type OptionalPackage = keyof typeof OPTIONAL_PACKAGES;

const require = createRequire(import.meta.url);

function missing(name: OptionalPackage, e: unknown): KilnError {
  const { range, feature } = OPTIONAL_PACKAGES[name];
  const err = e as NodeJS.ErrnoException;
  const notFound =
    (err?.code === 'MODULE_NOT_FOUND' || err?.code === 'ERR_MODULE_NOT_FOUND') && String(err.message).includes(name);
  const why = notFound ? 'is not installed' : `cannot be loaded (${String(err?.message ?? e).split('\n')[0]})`;
  return new KilnError('E_DEPENDENCY', `${feature} needs the npm package '${name}', which ${why}`, {
    hint: notFound
      ? `install it: npm install ${name}@'${range}'`
      : `reinstall it: npm install ${name}@'${range}' (npm rebuild ${name} for a native addon)`,
  });
}

/** Loads a CommonJS optional package synchronously (better-sqlite3, piscina). */
export function requireOptional<T>(name: OptionalPackage): T {
  try {
    return require(name) as T;
  } catch (e) {
    throw missing(name, e);
  }
}

/** Loads an optional package as an ES module (koffi, webgpu, the model server's packages). */
export async function importOptional<T>(name: OptionalPackage): Promise<T> {
  try {
    return (await import(name)) as T;
  } catch (e) {
    throw missing(name, e);
  }
}
