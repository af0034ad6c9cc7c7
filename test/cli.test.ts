// The kiln command end to end: compile, run (with --bench), inspect every level, onnx-test.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { writeFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers/temp.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { encodeNpy, readNpy } from '../src/cli/tensor-files.js';
import { decodeTensorProto, encodeTensorProto } from '../src/frontend/onnx/tensor-proto.js';

import { cudaAvailable } from '../src/node/cuda-driver.js';

const cli = join(process.cwd(), 'dist/cli/kiln.js');
const hasCuda = await cudaAvailable();
const kiln = (...args: string[]) => execFileSync('node', [cli, ...args], { encoding: 'utf8' });

describe('kiln CLI', () => {
  const dir = tempDir('kiln-cli-');
  const model = join(dir, 'm.onnx');
  writeFileSync(
    model,
    buildModel({
      inputs: [['x', 'float32', [2, 8]]],
      outputs: [['y', 'float32', [2, 8]]],
      nodes: [
        { op: 'Mul', inputs: ['x', 'x'], outputs: ['sq'] },
        { op: 'Tanh', inputs: ['sq'], outputs: ['y'] },
      ],
    }),
  );
  const x = randomF32([2, 8], 9);
  writeFileSync(join(dir, 'x.npy'), encodeNpy(x));

  it('compiles, runs with .npy input and output, and benchmarks', () => {
    expect(kiln('compile', model, '-o', join(dir, 'm.kiln'))).toMatch(/1 kernels/);
    const out = kiln(
      'run',
      join(dir, 'm.kiln'),
      '--input',
      `x=${join(dir, 'x.npy')}`,
      '--output-dir',
      join(dir, 'out'),
      '--bench',
      '5',
    );
    expect(out).toMatch(/bench: 5 runs on \d+ threads?, min [\d.]+ ms, median [\d.]+ ms/);
    const y = readNpy(readFileSync(join(dir, 'out', 'y.npy')), 'y');
    (x.data as Float32Array).forEach((v, i) => expect(y.data[i]).toBeCloseTo(Math.tanh(v * v), 5));
    // the same run with a TensorProto input and TensorProto outputs
    writeFileSync(join(dir, 'x.pb'), encodeTensorProto(x, 'x'));
    kiln(
      'run',
      join(dir, 'm.kiln'),
      '--input',
      `x=${join(dir, 'x.pb')}`,
      '--output-dir',
      join(dir, 'out-pb'),
      '--output-format',
      'pb',
    );
    expect(Array.from(decodeTensorProto(readFileSync(join(dir, 'out-pb', 'y.pb'))).data)).toEqual(Array.from(y.data));
  });

  it('prints every IR level', () => {
    expect(kiln('inspect', model, '--level', 'graph')).toMatch(/mul\(%x, %x\).*\n.*tanh/);
    expect(kiln('inspect', model, '--level', 'fused')).toMatch(/fn \(primitive\) fused_mul_tanh/);
    expect(kiln('inspect', model, '--level', 'te', '--kernel', '0')).toMatch(/= tanh\(mul_\d+\[i0_\d+, i1_\d+\]\)/);
    const loop = kiln('inspect', model, '--level', 'loop');
    expect(loop).toMatch(/for .* \(vectorized\)/);
    expect(loop).toMatch(
      /\/\/ kernel k0: mul \+ tanh, wasm loop IR as emitted\n\/\/ trace:\n(\/\/ {3}s\d\.\w+\(.*\)\n)+kernel k0\(/,
    );
    // the loop IR after one pass, and a GPU target's (its loops bound to threads)
    expect(kiln('inspect', model, '--level', 'loop', '--after', 'lower')).toMatch(/wasm loop IR after lower\n/);
    expect(kiln('inspect', model, '--level', 'loop', '--target', 'cuda', '--after', 'unroll')).toMatch(
      /cuda loop IR after unroll\n[\s\S]*\(threadIdx\.x\)/,
    );
    expect(kiln('inspect', model, '--level', 'loop', '--target', 'webgpu')).toMatch(
      /\/\/ kernel g0: mul \+ tanh, webgpu loop IR as emitted\n[\s\S]*\/\/ stage 0: launch grid \[1, 1, 1\] block \[4, 1, 1\]\n[\s\S]*= \(threadIdx\.x \/ 2\)/,
    );
    // target native's kernels (no LLVM tool needed): the row in lanes of the level's vectors (8 of 16: the row's
    // length), and its LLVM module
    expect(kiln('inspect', model, '--level', 'loop', '--target', 'native', '--cpu', 'x86-64-v4')).toMatch(
      /\/\/ kernel k0: mul \+ tanh, native loop IR as emitted\n\/\/ trace:\n(\/\/ .*\n)*\/\/ {3}s1\.split\(i1, 8\)\n\/\/ {3}s1\.vectorize\(i1\.i\)/,
    );
    expect(kiln('inspect', model, '--level', 'loop', '--target', 'native', '--after', 'partition-loops')).toMatch(
      /native loop IR after partition-loops\n/,
    );
    expect(kiln('inspect', model, '--level', 'llvm', '--cpu', 'x86-64-v4')).toMatch(/fmul <8 x float>[\s\S]*@kiln_run/);
    expect(kiln('inspect', model, '--level', 'wasm', '--kernel', '0')).toMatch(/;; kernel k0\n\(func \$\d+ \(param/);
    expect(kiln('inspect', join(dir, 'm.kiln'))).toMatch(/peak arena \d+ bytes vs \d+ bytes for all intermediates/);
  });

  it('prints the WGSL of a model, of one kernel, and of a compiled artifact', () => {
    const text = kiln('inspect', model, '--level', 'wgsl');
    expect(text).toMatch(
      /\/\/ kernel 0 g0: mul \+ tanh \(1 call\)\n\/\/ g0 stage 0: workgroup \d+, grid \[\d+,\d+,1\], bindings \[arg0,arg1\]/,
    );
    expect(text).toMatch(/@compute @workgroup_size\(\d+\)\nfn main\(/);
    expect(kiln('inspect', model, '--level', 'wgsl', '--kernel', '0')).toBe(text);
    expect(kiln('compile', model, '--target', 'webgpu', '-o', join(dir, 'g.kiln'))).toMatch(
      /webgpu: 1 kernels, 1 stages, 1 distinct shaders \(0 stages read their constants from uniforms\), 1 dispatches per run/,
    );
    expect(kiln('inspect', join(dir, 'g.kiln'), '--level', 'wgsl')).toBe(text);
    // an artifact compiled for WebAssembly only says how to get WGSL
    expect(() =>
      execFileSync('node', [cli, 'inspect', join(dir, 'm.kiln'), '--level', 'wgsl'], { stdio: 'pipe' }),
    ).toThrow(/--target webgpu/);
  });

  it('runs a WebGPU artifact read from its file, weights included (kiln run --target webgpu)', () => {
    // Node's readFileSync gives a Buffer, whose slice() is a view: the executors must not copy weights with it
    const w = randomF32([8, 5], 3),
      b = randomF32([5], 4);
    const wm = join(dir, 'w.onnx');
    writeFileSync(
      wm,
      buildModel({
        inputs: [['x', 'float32', [2, 8]]],
        outputs: [['y', 'float32', [2, 5]]],
        initializers: { w, b },
        nodes: [
          { op: 'MatMul', inputs: ['x', 'w'], outputs: ['xw'] },
          { op: 'Add', inputs: ['xw', 'b'], outputs: ['y'] },
        ],
      }),
    );
    kiln('compile', wm, '--target', 'webgpu', '-o', join(dir, 'w.kiln'));
    const out = kiln(
      'run',
      join(dir, 'w.kiln'),
      '--target',
      'webgpu',
      '--input',
      `x=${join(dir, 'x.npy')}`,
      '--output-dir',
      join(dir, 'out-gpu'),
      '--bench',
      '2',
    );
    expect(out).toMatch(/bench: 2 runs on webgpu/);
    const y = readNpy(readFileSync(join(dir, 'out-gpu', 'y.npy')), 'y');
    const [xd, wd, bd] = [x.data, w.data, b.data] as Float32Array[];
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 5; j++) {
        let acc = bd[j];
        for (let k = 0; k < 8; k++) acc += xd[i * 8 + k] * wd[k * 5 + j];
        expect(y.data[i * 5 + j]).toBeCloseTo(acc, 5);
      }
    // no CUDA driver here: the run names what is missing
    const cuda = spawnSync('node', [cli, 'run', join(dir, 'w.kiln'), '--target', 'cuda'], { encoding: 'utf8' });
    expect(cuda.status).not.toBe(0);
    expect(cuda.stderr).toMatch(hasCuda ? /E_ARTIFACT.*target 'cuda'/ : /E_NO_DEVICE.*libcuda/);
  });

  it('onnx-test ends with the pass/fail line', () => {
    const caseDir = join(dir, 'case');
    execFileSync('mkdir', ['-p', join(caseDir, 'test_data_set_0')]);
    writeFileSync(join(caseDir, 'model.onnx'), readFileSync(model));
    const out = kiln('onnx-test', caseDir, '--verbose');
    expect(out).toMatch(/0 passed, 1 failed/); // no .pb data: a failure, reported, not a crash
    // --target cuda runs the cases on a GPU through libcuda; without one, one error up front
    const cuda = spawnSync('node', [cli, 'onnx-test', caseDir, '--target', 'cuda'], { encoding: 'utf8' });
    if (!hasCuda)
      expect([cuda.status, cuda.stderr]).toEqual([1, expect.stringMatching(/^kiln: \[E_NO_DEVICE\] no CUDA driver/)]);
    else expect(cuda.stdout).toMatch(/0 passed, 1 failed/);
    expect(existsSync(join(dir, 'm.kiln'))).toBe(true);
  });
});

describe('kiln CLI usage errors', () => {
  const dir = tempDir('kiln-cli-usage-');
  const model = join(dir, 'm.onnx');
  writeFileSync(
    model,
    buildModel({
      inputs: [['x', 'float32', [2, 3]]],
      outputs: [['y', 'float32', [2, 3]]],
      nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['y'] }],
    }),
  );
  const art = join(dir, 'm.kiln');
  const kilnRaw = (args: string[], env: Record<string, string> = {}, nodeArgs: string[] = []) =>
    spawnSync('node', [...nodeArgs, cli, ...args], {
      encoding: 'utf8',
      env: { ...process.env, ...env },
      timeout: 120_000,
    });
  const kilnAsync = (args: string[]) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const p = spawn('node', [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '',
        stderr = '';
      p.stdout.on('data', (d) => {
        stdout += d;
      });
      p.stderr.on('data', (d) => {
        stderr += d;
      });
      p.on('error', reject);
      p.on('close', (status) => resolve({ status, stdout, stderr }));
    });
  const noStack = (s: string) => expect(s).not.toMatch(/\n {4}at /);
  beforeAll(() => {
    execFileSync('node', [cli, 'compile', model, '-o', art]);
  });

  it('an unknown flag, a flag without its value, a bad number or choice: kiln: <what>, the usage lines, exit 2', async () => {
    const cases: [string[], RegExp, RegExp][] = [
      [
        ['run', art, '--frobnicate'],
        /^kiln: \[E_USAGE\] unknown option '--frobnicate' for kiln run\n/,
        /kiln run ARTIFACT\.kiln/,
      ],
      [['run', art, '-z'], /unknown option '-z' for kiln run/, /kiln run ARTIFACT\.kiln/],
      [
        ['compile', model, '--port', '80'],
        /unknown option '--port' for kiln compile/,
        /kiln compile MODEL\.onnx -o OUT\.kiln/,
      ],
      [['run', art, '--bench'], /option --bench is missing its value/, /kiln run ARTIFACT\.kiln/],
      [['run', art, '--bench', '--threads', '2'], /option --bench is missing its value/, /kiln run/],
      [['run', art, '--bench', 'many'], /bad --bench 'many': expected a positive integer/, /kiln run/],
      [['run', art, '--threads', '1.5'], /bad --threads '1\.5'/, /kiln run/],
      [['run', art, '--target', 'tpu'], /unknown --target 'tpu'\. use wasm, webgpu, cuda or native/, /kiln run/],
      [['run', art, '--output-format', 'csv', '--output-dir', dir], /unknown --output-format 'csv'/, /kiln run/],
      [['run'], /kiln run: no ARTIFACT\.kiln given/, /kiln run ARTIFACT\.kiln/],
      [['run', art, 'extra.kiln'], /unexpected argument 'extra\.kiln'/, /kiln run/],
      [['compile'], /kiln compile: no MODEL\.onnx given/, /kiln compile MODEL\.onnx/],
      [['compile', model, '--target', 'tpu'], /unknown --target 'tpu'/, /kiln compile/],
      [['compile', model, '--target', 'cuda', '--sm', '75'], /unsupported --sm '75'/, /kiln compile/],
      [['compile', model, '--input-shape', 'x=2,a'], /bad --input-shape 'x=2,a'/, /kiln compile/],
      [['compile', model, '--no-optimize=yes'], /option --no-optimize takes no value/, /kiln compile/],
      [
        ['inspect', model, '--level', 'asm'],
        /unknown --level 'asm'\. use graph, fused, te, loop, wasm, wgsl, ptx or llvm/,
        /kiln inspect/,
      ],
      [['inspect', model, '--kernel', 'first'], /bad --kernel 'first'/, /kiln inspect/],
      [
        ['inspect', model, '--level', 'loop', '--after', 'vectorize'],
        /no loop-IR pass 'vectorize' for --target wasm\. passes in order: lower, unroll, share-shared-loads, half-floats, narrow-integers, legalize-floordiv, partition-loops/,
        /kiln inspect/,
      ],
      [
        ['inspect', model, '--level', 'fused', '--after', 'unroll'],
        /--after names a loop-IR pass; it needs --level loop, not --level fused/,
        /kiln inspect/,
      ],
      [['profile', art, '--runs', '0'], /bad --runs '0'/, /kiln profile ARTIFACT\.kiln/],
      [['tune', model, '--trials', 'lots'], /bad --trials 'lots'/, /kiln tune MODEL\.onnx/],
      [['tune', model, '--time-budget', '5 fortnights'], /bad --time-budget/, /kiln tune/],
      [['tune', model, '--strategy', 'greedy'], /unknown --strategy 'greedy'/, /kiln tune/],
      [['serve', '--port', 'http'], /bad --port 'http'/, /kiln serve/],
      [['serve', '--port', '70000'], /bad --port '70000': expected an integer from 0 to 65535/, /kiln serve/],
      [['demo', '--bench', 'x'], /bad --bench 'x'/, /kiln demo/],
      [['onnx-test'], /kiln onnx-test: no DIR/, /kiln onnx-test DIR/],
      [['onnx-test', dir, '--filter', '('], /bad --filter '\('/, /kiln onnx-test/],
      [['db', 'export'], /kiln db export: no file given/, /kiln db export\|import/],
      [['frobnicate'], /unknown command 'frobnicate'/, /kiln compile MODEL\.onnx[\s\S]*kiln serve/],
    ];
    // four at a time: each is a node process that starts, checks its command line and exits
    const results: { status: number | null; stdout: string; stderr: string }[] = [];
    for (let i = 0; i < cases.length; i += 4)
      results.push(...(await Promise.all(cases.slice(i, i + 4).map(([args]) => kilnAsync(args)))));
    for (const [i, [args, message, usage]] of cases.entries()) {
      const r = results[i];
      const what = `kiln ${args.join(' ')}:\n${r.stderr}`;
      expect(r.status, what).toBe(2);
      expect(r.stderr, what).toMatch(/^kiln: \[E_USAGE\] /);
      expect(r.stderr, what).toMatch(message);
      expect(r.stderr, what).toMatch(usage);
      noStack(r.stderr);
      expect(r.stdout, what).toBe('');
    }
    // the usage lines are the subcommand's, not every command's
    expect(kilnRaw(['run', art, '--frobnicate']).stderr).not.toMatch(/kiln compile/);
    // --help prints the subcommand's usage and succeeds
    const help = kilnRaw(['run', '--help']);
    expect([help.status, help.stdout]).toEqual([0, expect.stringMatching(/kiln run ARTIFACT\.kiln/)]);
  });

  it('a missing file is E_IO (exit 1), a damaged one its own code, neither with a stack', () => {
    const missing = kilnRaw(['run', join(dir, 'absent.kiln')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^kiln: \[E_IO\] cannot read '.*absent\.kiln'/);
    noStack(missing.stderr);
    writeFileSync(join(dir, 'junk.kiln'), 'not an artifact at all, not at all, really not an artifact');
    const junk = kilnRaw(['run', join(dir, 'junk.kiln')]);
    expect([junk.status, junk.stderr]).toEqual([1, expect.stringMatching(/^kiln: \[E_ARTIFACT\] not a Kiln artifact/)]);
    noStack(junk.stderr);
  });

  it('any other error is a short "internal error ... please report", exit 70; KILN_DEBUG=stack adds the stack', () => {
    // stand-ins for a bug: SHA-256 throwing a TypeError while the artifact is read, and a stray promise rejection
    const digestBug = join(dir, 'digest-bug.mjs');
    writeFileSync(
      digestBug,
      "Object.defineProperty(globalThis.crypto.subtle, 'digest', { value: async () => { throw new TypeError('digest exploded'); } });\n",
    );
    const r = kilnRaw(['run', art], {}, ['--import', digestBug]);
    expect(r.status, r.stderr).toBe(70);
    expect(r.stderr).toMatch(
      /^kiln: internal error: TypeError: digest exploded\nkiln: this is a bug in Kiln; please report it/,
    );
    noStack(r.stderr);
    const dbg = kilnRaw(['run', art], { KILN_DEBUG: 'stack' }, ['--import', digestBug]);
    expect(dbg.status).toBe(70);
    expect(dbg.stderr).toMatch(/\n {4}at /);
    const stray = join(dir, 'stray-rejection.mjs');
    // (scheduled by the command's first line of output, so that it comes while kiln runs)
    writeFileSync(
      stray,
      "const log = console.log;\nconsole.log = (...a) => { console.log = log; log(...a); setTimeout(() => { Promise.reject(new RangeError('stray rejection')); }, 0); };\n",
    );
    const s = kilnRaw(['onnx-test', dir], {}, ['--import', stray]);
    expect(s.status, s.stderr).toBe(70);
    expect(s.stderr).toMatch(/^kiln: internal error: RangeError: stray rejection\n.*please report/);
    noStack(s.stderr);
  });
});
