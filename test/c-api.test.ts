// The C API of native artifacts (c/include/kiln.h): scripts/build-c-runtime.sh builds libkiln, CMake builds
// examples/c/example-app against it (as LibTorch's example-app tutorial does), and the app runs models compiled for
// target 'native' on their test inputs, matching ONNX Runtime's outputs (scripts/gen_models.py) within rtol 1e-3 /
// atol 1e-4, the same bytes at 1 and 2 threads. Bad artifacts (missing, altered, truncated, compiled for WebAssembly,
// for a CPU this one is not, a header field out of bounds) exit 1 with the error's code, never a signal.
// test/c/api-check.c covers the rest of the API; test/c/run-shaped.c runs models with control flow (If / Loop) and
// with run-time sizes (kiln_run_shaped) against ONNX Runtime. Skipped where LLVM, a C compiler, CMake or the jansson /
// OpenSSL headers are missing (scripts/test-prerequisites.sh installs them).
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile, decodeTensorProto, type Tensor } from '../src/index.js';
import { compareTensors } from '../src/conformance/compare.js';
import { findLlvm } from '../src/codegen/native/toolchain.js';
import { bestLevel } from '../src/codegen/native/cpu.js';
import { hostCpuFlags } from '../src/compiler/native-program.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { runOrt } from './helpers/ort.js';
import { PREFIX_BYTES } from '../src/runtime/artifact-format.js';
import { tempDir } from './helpers/temp.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function works(cmd: string, args: string[], input?: string): boolean {
  try {
    execFileSync(cmd, args, { input, stdio: ['pipe', 'ignore', 'ignore'] });
    return true;
  } catch {
    return false;
  }
}
const hasHeader = (h: string) => works('cc', ['-E', '-x', 'c', '-'], `#include <${h}>\n`);
const missing = [
  !findLlvm() && 'LLVM opt/llc (apt-get install llvm)',
  !works('cc', ['--version']) && 'a C compiler (apt-get install gcc)',
  !works('cmake', ['--version']) && 'cmake (apt-get install cmake)',
  !hasHeader('jansson.h') && 'jansson.h (apt-get install libjansson-dev)',
  !hasHeader('openssl/evp.h') && 'openssl/evp.h (apt-get install libssl-dev)',
].filter(Boolean);
if (missing.length) console.warn(`c-api.test.ts skipped: missing ${missing.join(', ')}`);

/** This machine's best level, so that the code runs here. */
const HOST_CPU = bestLevel(hostCpuFlags());
const MODELS = ['squeezenet1_1_small', 'resnet18_small'];

function testData(name: string) {
  const dir = join('.cache/models', name);
  const set = join(dir, 'test_data_set_0');
  const files = readdirSync(set).sort();
  const read = (prefix: string) =>
    files.filter((f) => f.startsWith(prefix)).map((f) => decodeTensorProto(readFileSync(join(set, f))));
  const info = JSON.parse(readFileSync(join(dir, 'info.json'), 'utf8')) as {
    inputs: { name: string; shape: number[] }[];
  };
  return {
    modelPath: join(dir, 'model.onnx'),
    inputShapes: Object.fromEntries(info.inputs.map((i) => [i.name, i.shape])),
    inputs: read('input_'),
    expected: read('output_'),
  };
}

const raw = (t: Tensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

/**
 * The artifact with the first match of `from` replaced by `to` in its header JSON (padded with spaces to the same
 * length, so that the sections stay where they are) and the checksum recomputed: a header field edited by a tool
 * that rehashes.
 */
function patchedHeader(artifact: Uint8Array, from: RegExp, to: string): Uint8Array {
  const bytes = new Uint8Array(artifact);
  const len = new DataView(bytes.buffer).getUint32(8, true);
  const text = Buffer.from(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + len)).toString('latin1');
  const m = from.exec(text);
  if (!m || to.length > m[0].length) throw new Error(`test helper: cannot put ${to} for ${from}`);
  bytes.set(Buffer.from(to.padEnd(m[0].length), 'latin1'), PREFIX_BYTES + m.index);
  bytes.set(createHash('sha256').update(bytes.subarray(PREFIX_BYTES)).digest(), 16);
  return bytes;
}

describe.skipIf(missing.length > 0)('C API: example-app runs native artifacts', () => {
  let dir: string;
  let app: string;
  let check: string;
  let shaped: string;
  const artifacts: Record<string, string> = {};

  beforeAll(() => {
    dir = tempDir('kiln-c-api-');
    const lib = join(dir, 'kiln');
    execFileSync('bash', [join(ROOT, 'scripts/build-c-runtime.sh'), lib], { stdio: 'pipe' });
    const build = join(dir, 'example-app');
    execFileSync('cmake', ['-S', join(ROOT, 'examples/c'), '-B', build, `-DKILN_DIR=${lib}`], { stdio: 'pipe' });
    execFileSync('cmake', ['--build', build], { stdio: 'pipe' });
    app = join(build, 'example-app');
    // api-check against the static library (its dependencies named), example-app against the shared one
    check = join(dir, 'api-check');
    execFileSync('cc', [
      ...['-std=c11', '-Wall', '-Wextra', '-Werror', `-I${join(lib, 'include')}`],
      ...[join(ROOT, 'test/c/api-check.c'), '-o', check, join(lib, 'lib/libkiln.a')],
      ...['-ljansson', '-lcrypto', '-ldl'],
    ]);
    shaped = join(dir, 'run-shaped');
    execFileSync('cc', [
      ...['-std=c11', '-Wall', '-Wextra', '-Werror', `-I${join(lib, 'include')}`],
      ...[join(ROOT, 'test/c/run-shaped.c'), '-o', shaped, join(lib, 'lib/libkiln.a')],
      ...['-ljansson', '-lcrypto', '-ldl'],
    ]);
  });

  /** example-app's exit status and output; a signal (a crash) fails the test. */
  function runApp(...args: string[]) {
    const r = spawnSync(app, args, { encoding: 'utf8' });
    expect(r.signal, `example-app ${args.join(' ')} crashed: ${r.stderr}`).toBeNull();
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  for (const name of MODELS) {
    it(`${name}: matches ONNX Runtime, the same bytes at 1 and 2 threads`, async () => {
      const { modelPath, inputShapes, inputs, expected } = testData(name);
      const compiled = await compile(readFileSync(modelPath), {
        modelPath,
        inputShapes,
        target: 'native',
        cpu: HOST_CPU,
      });
      const model = join(dir, `${name}.kiln`);
      writeFileSync(model, compiled.artifact);
      artifacts[name] = model;
      expect(inputs[0].dtype).toBe('float32');
      const input = join(dir, `${name}.input.bin`);
      writeFileSync(input, raw(inputs[0]));

      const outs = [1, 2].map((threads) => {
        const out = join(dir, `${name}.output.${threads}.bin`);
        const r = runApp(model, input, out, '--threads', String(threads));
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toContain(`input  ${compiled.header.inputs[0].name}: float32[${inputs[0].shape}]`);
        expect(r.stdout).toContain(`ran on ${threads} thread(s)`);
        expect(r.stdout).toMatch(/top-5: \d+ /);
        return readFileSync(out);
      });
      expect(outs[1].equals(outs[0])).toBe(true);
      const want = expected[0];
      expect(outs[0].length).toBe(raw(want).length);
      const data = new Float32Array(outs[0].buffer.slice(outs[0].byteOffset, outs[0].byteOffset + outs[0].length));
      const got: Tensor = { dtype: 'float32', shape: [...want.shape], data };
      expect(compareTensors(got, want)?.message).toBeUndefined();
      // the top-1 class example-app prints is its output's
      const top1 = data.indexOf(Math.max(...data));
      expect(runApp(model, input).stdout).toMatch(new RegExp(`top-5: ${top1} `));
    });
  }

  it('the rest of the API: metadata, lookups by name, wrong arguments, loading from memory', () => {
    const r = spawnSync(check, [artifacts.squeezenet1_1_small], { encoding: 'utf8' });
    expect(r.signal).toBeNull();
    expect(r.stdout + r.stderr).toBe('ok\n');
    expect(r.status).toBe(0);
  });

  it('bad artifacts: exit 1 with the code of the error, never a crash', async () => {
    const good = readFileSync(artifacts.squeezenet1_1_small);
    const input = join(dir, 'squeezenet1_1_small.input.bin');
    const fails = (bytes: Uint8Array | undefined, file: string, code: string, message: RegExp) => {
      const path = join(dir, file);
      if (bytes) writeFileSync(path, bytes);
      const r = runApp(path, input);
      expect(r.status, `${file}: ${r.stdout}`).toBe(1);
      expect(r.stderr, file).toMatch(new RegExp(`^example-app: \\[${code}\\] `));
      expect(r.stderr, file).toMatch(message);
    };
    fails(undefined, 'missing.kiln', 'E_IO', /cannot open '.*missing\.kiln': No such file or directory\. check/);
    const altered = new Uint8Array(good);
    altered[good.length - 1000] ^= 0x10; // a byte of the weights
    fails(altered, 'altered.kiln', 'E_ARTIFACT', /checksum mismatch/);
    fails(good.subarray(0, good.length >> 1), 'truncated.kiln', 'E_ARTIFACT', /checksum mismatch/);
    fails(good.subarray(0, 100), 'truncated-header.kiln', 'E_ARTIFACT', /truncated header/);
    fails(good.subarray(0, 20), 'truncated-prefix.kiln', 'E_ARTIFACT', /truncated prefix/);
    fails(new TextEncoder().encode('{"not": "kiln"}'), 'json.kiln', 'E_ARTIFACT', /not a Kiln artifact/);

    // header fields, edited and rehashed
    const cpu = patchedHeader(good, /"features":\["[^"]+"/, '"features":["zz"');
    fails(
      cpu,
      'cpu.kiln',
      'E_UNSUPPORTED',
      /needs CPU level x86-64.*; this CPU lacks zz\. compile the model for this machine/,
    );
    fails(
      patchedHeader(good, /"memoryBytes":\d+/, '"memoryBytes":1'),
      'memory.kiln',
      'E_ARTIFACT',
      /damaged: the weights \(\d+ bytes at weightsAt \d+\) do not fit in memoryBytes 1\./,
    );
    fails(
      patchedHeader(good, /"dtype":"float32"/, '"dtype":"float33"'),
      'dtype.kiln',
      'E_ARTIFACT',
      /damaged: inputs\[0\]\.dtype is 'float33', not a dtype/,
    );
    // a control program where the library runs every call at once
    const control = patchedHeader(good, /"kiln":"[^"]*"/, '"control":[]');
    fails(control, 'control.kiln', 'E_ARTIFACT', /damaged: the control program's calls have no per-call entry/);

    // a model compiled for WebAssembly, and one with a run-time size
    const relu = buildModel({
      inputs: [['x', 'float32', ['batch', 4]]],
      outputs: [['y', 'float32', ['batch', 4]]],
      nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['y'] }],
    });
    const wasm = await compile(relu, { dims: { batch: 1 } });
    fails(wasm.artifact, 'wasm.kiln', 'E_ARTIFACT', /has no native code .*compiled for target 'wasm'.*--target native/);
    const dynamic = await compile(relu, { target: 'native', cpu: HOST_CPU, dims: { batch: [1, 4] } });
    expect(dynamic.header.symbols).toBeDefined();
    // (example-app calls kiln_run, which does not know the inputs' shapes: a bound-sized input, refused all the same)
    writeFileSync(join(dir, 'dynamic.kiln'), dynamic.artifact);
    writeFileSync(join(dir, 'dynamic.input.bin'), new Uint8Array(4 * 4 * 4));
    const r = runApp(join(dir, 'dynamic.kiln'), join(dir, 'dynamic.input.bin'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^example-app: \[E_INPUT\] the model has run-time sizes \('batch' 1\.\.4\).*kiln_run_shaped/,
    );
  });

  it('control flow: a for loop then a branch, a while loop on the data (Loop, If) match ONNX Runtime', async () => {
    // scripts/gen_control_flow_models.py: torch.jit.script-ed modules exported to ONNX
    const scalar = (dtype: 'int64' | 'float32', v: number): Tensor =>
      dtype === 'int64'
        ? { dtype, shape: [], data: BigInt64Array.of(BigInt(v)) }
        : { dtype, shape: [], data: Float32Array.of(v) };
    const cases: [string, (v: number) => Record<string, Tensor>, number[]][] = [
      ['for_then_if', (n) => ({ x: randomF32([2, 4], 13), n: scalar('int64', n) }), [0, 1, 3, 7]],
      ['while_below', (limit) => ({ x: randomF32([3, 2], 14), limit: scalar('float32', limit) }), [0.5, 10, 100, 1e6]],
    ];
    for (const [name, feedsOf, values] of cases) {
      const bytes = readFileSync(`.cache/control-flow/${name}/model.onnx`);
      const compiled = await compile(bytes, { target: 'native', cpu: HOST_CPU });
      expect(compiled.header.control).toBeDefined();
      const model = join(dir, `${name}.kiln`);
      writeFileSync(model, compiled.artifact);
      for (const v of values) {
        const feeds = feedsOf(v);
        const args = compiled.header.inputs.flatMap((inp, i) => {
          writeFileSync(join(dir, `${name}.in${i}.bin`), raw(feeds[inp.name]));
          return [join(dir, `${name}.in${i}.bin`), feeds[inp.name].shape.join(',')];
        });
        const r = spawnSync(shaped, [model, dir, '--threads', '2', ...args], { encoding: 'utf8' });
        expect(r.signal, r.stderr).toBeNull();
        expect(r.status, r.stderr).toBe(0);
        const want = await runOrt(bytes, feeds);
        compiled.header.outputs.forEach((o, i) => {
          const w = want[o.name];
          const file = readFileSync(join(dir, `output.${i}.bin`));
          const buf = file.buffer.slice(file.byteOffset, file.byteOffset + file.length);
          const data = w.dtype === 'int64' ? new BigInt64Array(buf) : new Float32Array(buf);
          const got = { dtype: w.dtype, shape: [...w.shape], data } as Tensor;
          expect(compareTensors(got, w)?.message, `${name} ${o.name} at ${v}`).toBeUndefined();
        });
      }
    }
  });

  it('run-time sizes: kiln_run_shaped matches ONNX Runtime at sizes in range, with a size counted from the data', async () => {
    // two inputs sharing `batch`, an output of `past + seq` rows, and NonZero's count
    const bytes = buildModel({
      inputs: [
        ['x', 'float32', ['batch', 'seq', 8]],
        ['past', 'float32', ['batch', 'past', 8]],
      ],
      outputs: [
        ['y', 'float32', ['batch', 'seq', 6]],
        ['z', 'float32', ['batch', 'total', 8]],
        ['nz', 'int64', [3, 'count']],
      ],
      initializers: { w: randomF32([8, 6], 1), b: randomF32([6], 2) },
      nodes: [
        { op: 'MatMul', inputs: ['x', 'w'], outputs: ['m'] },
        { op: 'Add', inputs: ['m', 'b'], outputs: ['a'] },
        { op: 'Softmax', inputs: ['a'], outputs: ['y'], attrs: { axis: -1 } },
        { op: 'Concat', inputs: ['past', 'x'], outputs: ['z'], attrs: { axis: 1 } },
        { op: 'Relu', inputs: ['x'], outputs: ['r'] },
        { op: 'NonZero', inputs: ['r'], outputs: ['nz'] },
      ],
    });
    const compiled = await compile(bytes, {
      target: 'native',
      cpu: HOST_CPU,
      dims: { batch: [1, 4], seq: [1, 16], past: [1, 8] },
    });
    const model = join(dir, 'run-sizes.kiln');
    writeFileSync(model, compiled.artifact);
    const run = (threads: number, ...args: string[]) => {
      const r = spawnSync(shaped, [model, dir, '--threads', String(threads), ...args], { encoding: 'utf8' });
      expect(r.signal, r.stderr).toBeNull();
      return r;
    };
    for (const [batch, seq, past, threads] of [
      [2, 5, 3, 1],
      [4, 16, 8, 2],
      [1, 1, 1, 1],
    ]) {
      // values around zero, so that NonZero after Relu counts about half
      const r0 = randomF32([batch, seq, 8], 10 + seq);
      const x: Tensor = { ...r0, data: (r0.data as Float32Array).map((v) => v - 0.5) };
      const p = randomF32([batch, past, 8], 20 + past);
      writeFileSync(join(dir, 'x.bin'), raw(x));
      writeFileSync(join(dir, 'past.bin'), raw(p));
      const want = await runOrt(bytes, { x, past: p });
      const r = run(threads, join(dir, 'x.bin'), `${batch},${seq},8`, join(dir, 'past.bin'), `${batch},${past},8`);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('size batch 1..4\n');
      ['y', 'z', 'nz'].forEach((name, i) => {
        const w = want[name];
        expect(r.stdout).toContain(`output ${name} [${w.shape}]\n`);
        const file = readFileSync(join(dir, `output.${i}.bin`));
        const data =
          w.dtype === 'int64'
            ? new BigInt64Array(file.buffer.slice(file.byteOffset, file.byteOffset + file.length))
            : new Float32Array(file.buffer.slice(file.byteOffset, file.byteOffset + file.length));
        expect(compareTensors({ dtype: w.dtype, shape: [...w.shape], data } as Tensor, w)?.message).toBeUndefined();
      });
    }
    // sizes outside the range, inputs that disagree, a fixed dim changed: E_INPUT, nothing run
    const refused = (args: string[], message: RegExp) => {
      const r = run(1, join(dir, 'x.bin'), args[0], join(dir, 'past.bin'), args[1]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^run-shaped: \[E_INPUT\] /);
      expect(r.stderr).toMatch(message);
    };
    refused(['1,17,8', '1,1,8'], /input 'x' dim 1 \(seq\) is 17, outside the range 1\.\.16/);
    refused(['2,1,8', '1,1,8'], /input 'past' dim 0 \(batch\) is 1, but input 'x' dim 0 is 2: they are the same size/);
    refused(['1,1,9', '1,1,8'], /input 'x' dim 2 is 9, the model takes 8/);
    // a dim expression edited into one that is no expression: refused when loading
    const bad = patchedHeader(compiled.artifact, /\["\+","past","seq"\]/, '["^","past","seq"]');
    writeFileSync(join(dir, 'bad-dims.kiln'), bad);
    const r = spawnSync(shaped, [join(dir, 'bad-dims.kiln'), dir, 'x.bin', '1,1,8', 'past.bin', '1,1,8'], {
      encoding: 'utf8',
    });
    expect(r.signal).toBeNull();
    expect(r.stderr).toMatch(/\[E_ARTIFACT\] artifact is damaged: .*operator '\^'/);
  });
});
