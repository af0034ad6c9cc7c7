// Native code from Node: an artifact's shared library written to a private temporary directory (mkdtemp, mode
// 0700) and opened through koffi; the directory is removed as soon as the library is loaded (the loaded mapping
// outlives the file, and a worker thread that is terminated runs no exit hook), or where the OS keeps a loaded
// file busy, when the model is disposed or at process exit. The CPU's features come from /proc/cpuinfo.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { KilnError } from '../runtime/errors.js';
import type { NativeHost, NativeLibrary } from '../runtime/native.js';
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

/** The Node host of native code (koffi must be installed: E_DEPENDENCY otherwise). */
export async function openNativeHost(): Promise<NativeHost> {
  const koffi = (await importOptional<typeof import('koffi')>('koffi')).default;
  return {
    cpuFeatures: cpuinfoFeatures,
    platform: () => `${arch() === 'x64' ? 'x86_64' : arch()}-${platform()}`,
    open(library: Uint8Array, entry: string): NativeLibrary {
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
      let run: (memory: Uint8Array) => void;
      try {
        const path = join(dir, 'model.so');
        writeFileSync(path, library, { mode: 0o600 });
        lib = koffi.load(path);
        run = lib.func(`void ${entry}(void *memory)`) as (memory: Uint8Array) => void;
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
        close() {
          lib.unload();
          remove();
        },
      };
    },
  };
}
