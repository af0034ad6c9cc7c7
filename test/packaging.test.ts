// What a user installs: the packed tarballs installed into empty projects, as `npm install kiln` and
// `npm install @kiln/runtime` would. kiln brings only what compile and load need (binaryen, protobuf, and fflate for
// PyTorch archives; tuning, CUDA and WebGPU packages are optional peers that fail with E_DEPENDENCY when missing);
// @kiln/runtime installs with no dependencies at all and runs an artifact on its own.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { compile, load } from '../src/index.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';

const ROOT = resolve(import.meta.dirname, '..');
const NPM_QUIET = ['--no-audit', '--no-fund', '--loglevel=error'];
let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'kiln-packaging-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

const model = () =>
  buildModel({
    inputs: [['x', 'float32', [2, 8]]],
    initializers: { w: randomF32([8, 4], 3) },
    outputs: [['y', 'float32', [2, 4]]],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w'], outputs: ['m'] },
      { op: 'Tanh', inputs: ['m'], outputs: ['y'] },
    ],
  });

/**
 * Runs a command without blocking this test process (a synchronous npm install that outlasts a minute times out
 * vitest's worker RPC): its exit status and output.
 */
function run(
  cmd: string,
  args: string[],
  opts: { cwd: string; timeout?: number },
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((done) =>
    execFile(cmd, args, { ...opts, encoding: 'utf8', maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      done({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    ),
  );
}

/** `run`, failing with its output unless it exits 0; gives its stdout. */
async function ok(cmd: string, args: string[], cwd: string): Promise<string> {
  const r = await run(cmd, args, { cwd });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** Packs a package folder into `tmp` and returns the tarball's path. */
async function pack(dir: string): Promise<string> {
  const out = await ok('npm', ['pack', `./${dir}`, '--pack-destination', tmp, '--json', '--loglevel=error'], ROOT);
  return join(tmp, (JSON.parse(out) as { filename: string }[])[0].filename);
}

/** An empty project with the tarball installed; returns its folder. */
async function installInto(name: string, tarball: string): Promise<string> {
  const dir = join(tmp, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }));
  await ok('npm', ['install', '--prefer-offline', ...NPM_QUIET, tarball], dir);
  return dir;
}

/** Installed package names (scoped ones as @scope/name). */
function installed(dir: string): string[] {
  const nm = join(dir, 'node_modules');
  return readdirSync(nm)
    .filter((n) => !n.startsWith('.'))
    .flatMap((n) => (n.startsWith('@') ? readdirSync(join(nm, n)).map((s) => `${n}/${s}`) : [n]))
    .sort();
}

const input = () => {
  const x = randomF32([2, 8], 5);
  return { dtype: 'float32' as const, shape: [2, 8], data: x.data as Float32Array };
};

describe('@kiln/runtime (packages/runtime)', () => {
  it('installs with no dependencies and runs an artifact alone, with the same outputs as kiln', async () => {
    const tarball = await pack('packages/runtime');
    const dir = await installInto('runtime-app', tarball);
    expect(installed(dir)).toEqual(['@kiln/runtime']);
    const manifest = JSON.parse(readFileSync(join(dir, 'node_modules/@kiln/runtime/package.json'), 'utf8'));
    expect(manifest.dependencies ?? {}).toEqual({});
    // only runtime code is in the package: nothing of the compiler
    const files = (await ok('find', ['node_modules/@kiln/runtime/dist', '-name', '*.js'], dir)).trim().split('\n');
    expect(files.every((f) => /\/dist\/(runtime|node)\//.test(f))).toBe(true);

    const { artifact } = await compile(model());
    writeFileSync(join(dir, 'model.kiln'), artifact);
    const x = input();
    writeFileSync(join(dir, 'x.json'), JSON.stringify(Array.from(x.data)));
    writeFileSync(
      join(dir, 'app.mjs'),
      `
      import { readFileSync } from 'node:fs';
      import { load } from '@kiln/runtime';
      const model = await load(readFileSync('model.kiln'), { threads: 1 });
      const data = Float32Array.from(JSON.parse(readFileSync('x.json', 'utf8')));
      const out = await model.run({ x: { dtype: 'float32', shape: [2, 8], data } });
      console.log(JSON.stringify(Array.from(out.y.data)));
      model.dispose();
    `,
    );
    const r = await run(process.execPath, ['app.mjs'], { cwd: dir, timeout: 60_000 });
    expect(r.stderr).toBe('');
    const alone = JSON.parse(r.stdout) as number[];
    const m = await load(artifact, { threads: 1 });
    const ref = Array.from((await m.run({ x })).y.data as Float32Array);
    m.dispose();
    expect(alone).toEqual(ref);
    expect(ref.some((v) => v !== 0)).toBe(true);
  });
});

describe('kiln (the root package)', () => {
  it('installs compile and load only; tuning and the model server say which package to install', async () => {
    const tarball = await pack('');
    const dir = await installInto('kiln-app', tarball);
    expect(installed(dir)).toEqual(['@bufbuild/protobuf', 'binaryen', 'fflate', 'kiln']);
    const kiln = (args: string[]) =>
      run(process.execPath, [join(dir, 'node_modules/kiln/dist/cli/kiln.js'), ...args], { cwd: dir, timeout: 120_000 });
    writeFileSync(join(dir, 'model.onnx'), model());
    const c = await kiln(['compile', 'model.onnx', '-o', 'model.kiln']);
    expect(c.status, c.stderr).toBe(0);
    const r = await kiln(['run', 'model.kiln', '--bench', '2']);
    expect(r.status, r.stderr).toBe(0);
    const t = await kiln(['tune', 'model.onnx', '--trials', '1', '--db', 'tune.sqlite']);
    expect(t.status).toBe(1);
    expect(t.stderr).toContain('[E_DEPENDENCY]');
    expect(t.stderr).toContain("npm install better-sqlite3@'^12");
    expect(t.stderr).not.toMatch(/\n\s+at /);
    // The model server's packages are optional peers too.
    const s = await kiln(['serve', '--models', 'model.kiln', '--port', '0']);
    expect(s.status).toBe(1);
    expect(s.stderr).toContain('[E_DEPENDENCY]');
    expect(s.stderr).toContain("npm install fastify@'^5");
  });
});
