// The C API of native artifacts (c/include/kiln.h): scripts/build-c-runtime.sh builds libkiln, CMake builds
// examples/c/example-app against it (as LibTorch's example-app tutorial does), and the app runs models compiled for
// target 'native' on their test inputs, matching ONNX Runtime's outputs (scripts/gen_models.py) within rtol 1e-3 /
// atol 1e-4, the same bytes at 1 and 2 threads. Bad artifacts (missing, altered, truncated, compiled for WebAssembly,
// for a CPU this one is not, with run-time sizes or control flow, a header field out of bounds) exit 1 with the
// error's code, never a signal. test/c/api-check.c covers the rest of the API. Skipped where LLVM, a C compiler,
// CMake or the jansson / OpenSSL headers are missing (scripts/test-prerequisites.sh installs them).
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
import { buildModel } from '../src/frontend/onnx/model-builder.js';
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
    const control = patchedHeader(good, /"kiln":"[^"]*"/, '"control":[]');
    fails(control, 'control.kiln', 'E_UNSUPPORTED', /control flow .*not supported by the C API yet/);

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
    fails(dynamic.artifact, 'dynamic.kiln', 'E_UNSUPPORTED', /run-time sizes .*not supported by the C API yet.*--dim/);
  });
});
