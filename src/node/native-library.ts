// Native code from Node: an artifact's shared library written to a private temporary directory (mkdtemp, mode
// 0700) and opened through koffi; the directory is removed as soon as the library is loaded (the loaded mapping
// outlives the file, and a worker thread that is terminated runs no exit hook), or where the OS keeps a loaded
// file busy, when the model is disposed or at process exit. The CPU's features come from /proc/cpuinfo.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { KilnError } from '../runtime/errors.js';
import type { NativeEntry, NativeHost, NativeLibrary } from '../runtime/native.js';
import { importOptional } from './optional-dependency.js';

const open = new Set<string>();
let exitHook = false;

function cpuinfoFeatures(): Set<string> | undefined {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const line = text.split('\n').find((l) => /^flags\s*:/.test(l));
    return line
      ? new Set(
          line
            .slice(line.indexOf(':') + 1)
            .trim()
            .split(/\s+/),
        )
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Keeps libgomp (which threaded libraries link) loaded for the life of the process (dlopen with RTLD_NODELETE): its
 * team threads outlive a run, and unloading it with the last library that uses it (a disposed model, or the
 * handles of a worker thread that exits) would pull their code out from under them.
 */
let pinnedOpenMp = false;
function pinOpenMp(koffi: { load(path: string): { func(definition: string): unknown } }): void {
  if (pinnedOpenMp) return;
  pinnedOpenMp = true;
  const RTLD_NOW = 2,
    RTLD_NODELETE = 0x1000;
  try {
    const dlopen = koffi.load('libc.so.6').func('void *dlopen(const char *file, int mode)') as (
      file: string,
      mode: number,
    ) => unknown;
    dlopen('libgomp.so.1', RTLD_NOW | RTLD_NODELETE);
  } catch {} // not there: a library that needs it fails to load and says so
}

/** The Node host of native code (koffi must be installed: E_DEPENDENCY otherwise). */
export async function openNativeHost(): Promise<NativeHost> {
  const koffi = (await importOptional<typeof import('koffi')>('koffi')).default;
  return {
    cpuFeatures: cpuinfoFeatures,
    platform: () => `${arch() === 'x64' ? 'x86_64' : arch()}-${platform()}`,
    open(library: Uint8Array, entry: string, kind: NativeEntry, callEntry?: string): NativeLibrary {
      if (kind !== 'run-one-thread') pinOpenMp(koffi);
      const dir = mkdtempSync(join(tmpdir(), 'kiln-native-'));
      open.add(dir);
      if (!exitHook) {
        exitHook = true;
        process.once('exit', () => {
          for (const d of open) rmSync(d, { recursive: true, force: true });
        });
      }
      const remove = () => {
        rmSync(dir, { recursive: true, force: true });
        open.delete(dir);
      };
      let lib: ReturnType<typeof koffi.load>;
      let run: NativeLibrary['run'];
      let runCall: NativeLibrary['runCall'];
      try {
        const path = join(dir, 'model.so');
        writeFileSync(path, library, { mode: 0o600 });
        lib = koffi.load(path);
        if (kind === 'call') {
          const f = lib.func(`void ${entry}(void *memory, int call, int threads)`) as (...a: unknown[]) => void;
          run = (memory, threads, call) => f(memory, call, threads);
        } else if (kind === 'run') {
          const f = lib.func(`void ${entry}(void *memory, int threads)`) as (...a: unknown[]) => void;
          run = (memory, threads) => f(memory, threads);
        } else {
          const f = lib.func(`void ${entry}(void *memory)`) as (...a: unknown[]) => void;
          run = (memory) => f(memory);
        }
        if (callEntry) {
          const f = lib.func(`void ${callEntry}(void *memory, int call, int threads)`) as (...a: unknown[]) => void;
          runCall = (memory, call, threads) => f(memory, call, threads);
        }
        try {
          remove();
        } catch {}
      } catch (e) {
        remove();
        throw new KilnError(
          'E_ARTIFACT',
          `the artifact's native library does not load: ${(e as Error)?.message ?? e}`,
          {
            hint: "recompile the model (kiln compile --target native), or load it with target 'wasm'",
          },
        );
      }
      return {
        run,
        runCall,
        close() {
          lib.unload();
          remove();
        },
      };
    },
  };
}
