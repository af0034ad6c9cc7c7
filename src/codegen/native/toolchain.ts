// LLVM IR text -> a shared library through the LLVM tools of Debian's llvm-N packages: `opt -O3` (SROA, loop and
// SLP vectorizers), `llc` (object code, position-independent), then the system C compiler driver (or `ld`) links
// it against libm. The newest installed LLVM is used; KILN_LLVM_BIN names a directory that holds opt and llc.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KilnError } from '../../runtime/errors.js';

export interface LlvmTools {
  opt: string;
  llc: string;
  /** Major version of llc. */
  version: number;
  /** The linker driver: a C compiler (cc, gcc) or ld. */
  linker: string;
}

const INSTALL_HINT =
  "install LLVM (Debian/Ubuntu: apt-get install llvm; any llvm-N from 14 on) and a linker (binutils or gcc), or compile for target 'wasm'";

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
}

function versionOf(llc: string): number | undefined {
  try {
    const m = run(llc, ['--version']).match(/LLVM version (\d+)/);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Found tools by KILN_LLVM_BIN value ('' for the default search). */
const cached = new Map<string, LlvmTools>();

/** The LLVM tools to use, or undefined when none are installed. */
export function findLlvm(): LlvmTools | undefined {
  const key = process.env.KILN_LLVM_BIN ?? '';
  const hit = cached.get(key);
  if (hit) return hit;
  const dirs: string[] = [];
  if (process.env.KILN_LLVM_BIN) dirs.push(process.env.KILN_LLVM_BIN);
  else {
    // /usr/lib/llvm-N/bin, newest first; then opt/llc on the PATH
    const versions = existsSync('/usr/lib')
      ? readdirSync('/usr/lib')
          .map((d) => d.match(/^llvm-(\d+)$/))
          .filter((m): m is RegExpMatchArray => m !== null)
          .map((m) => Number(m[1]))
          .sort((a, b) => b - a)
      : [];
    dirs.push(...versions.map((v) => `/usr/lib/llvm-${v}/bin`));
  }
  const candidates = dirs.map((d) => ({ opt: join(d, 'opt'), llc: join(d, 'llc') }));
  const po = onPath('opt'),
    pl = onPath('llc');
  if (!process.env.KILN_LLVM_BIN && po && pl) candidates.push({ opt: po, llc: pl });
  const linker = ['cc', 'gcc', 'clang', 'ld'].map(onPath).find((x) => x !== undefined);
  for (const c of candidates) {
    if (!existsSync(c.opt) || !existsSync(c.llc)) continue;
    const version = versionOf(c.llc);
    if (version === undefined || version < 14) continue;
    if (!linker) return undefined;
    const tools = { ...c, version, linker };
    cached.set(key, tools);
    return tools;
  }
  return undefined;
}

/** findLlvm, or E_DEPENDENCY naming what to install. */
export function requireLlvm(): LlvmTools {
  const t = findLlvm();
  if (t) return t;
  throw new KilnError(
    'E_DEPENDENCY',
    "target 'native' needs LLVM's opt and llc (14 or later) and a linker, which are not installed",
    {
      hint: INSTALL_HINT,
    },
  );
}

export interface BuildOptions {
  cpu: string;
  features: string;
  /** Keep the work directory (for debugging); its path is returned. */
  keep?: boolean;
}

/** Compiles an LLVM module to a shared library; returns its bytes. */
export function buildSharedLibrary(ir: string, opts: BuildOptions): { library: Uint8Array; tools: LlvmTools } {
  const tools = requireLlvm();
  const dir = mkdtempSync(join(tmpdir(), 'kiln-native-'));
  try {
    const ll = join(dir, 'module.ll'),
      bc = join(dir, 'module.bc'),
      obj = join(dir, 'module.o'),
      so = join(dir, 'module.so');
    writeFileSync(ll, ir);
    const target = [`-mcpu=${opts.cpu}`, `-mattr=${opts.features}`];
    const step = (what: string, cmd: string, args: string[]) => {
      try {
        run(cmd, args);
      } catch (e) {
        const err = e as { stderr?: string; message?: string };
        throw new KilnError(
          'E_INTERNAL',
          `native codegen: ${what} failed: ${(err.stderr || err.message || String(e)).trim().split('\n').slice(0, 8).join('\n')}`,
          {
            hint: `please report this with the model (KILN_KEEP_NATIVE=1 keeps the LLVM IR); LLVM ${tools.version} at ${tools.llc}`,
          },
        );
      }
    };
    step('opt', tools.opt, ['-O3', ...target, ll, '-o', bc]);
    step('llc', tools.llc, ['-O3', '-filetype=obj', '-relocation-model=pic', ...target, bc, '-o', obj]);
    const isLd = tools.linker.endsWith('/ld');
    // libmvec (glibc's vector math) only where the module calls it: it needs glibc >= 2.22 (tanh, erf: 2.35)
    const libs = ir.includes('@_ZGV') ? ['-lmvec', '-lm'] : ['-lm'];
    // libgomp (GCC's OpenMP runtime) where the module runs threads; a bare ld finds only its versioned name
    if (ir.includes('@GOMP_parallel')) libs.push(isLd ? '-l:libgomp.so.1' : '-lgomp');
    step('linking', tools.linker, [
      '-shared',
      obj,
      '-o',
      so,
      ...(isLd ? ['-L/usr/lib/x86_64-linux-gnu'] : []),
      ...libs,
    ]);
    return { library: new Uint8Array(readFileSync(so)), tools };
  } finally {
    if (process.env.KILN_KEEP_NATIVE) process.stderr.write(`kiln: native build kept in ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
}
