// The kiln command end to end: compile, run (with --bench), inspect every level, onnx-test.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { encodeNpy, readNpy } from '../src/cli/tensor-files.js';
import { decodeTensorProto, encodeTensorProto } from '../src/frontend/onnx/tensor-proto.js';

import { cudaAvailable } from '../src/node/cuda-driver.js';

const cli = join(process.cwd(), 'dist/cli/kiln.js');
const hasCuda = await cudaAvailable();
const kiln = (...args: string[]) => execFileSync('node', [cli, ...args], { encoding: 'utf8' });

describe('kiln CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-cli-'));
  const model = join(dir, 'm.onnx');
  writeFileSync(model, buildModel({
    inputs: [['x', 'float32', [2, 8]]], outputs: [['y', 'float32', [2, 8]]],
    nodes: [{ op: 'Mul', inputs: ['x', 'x'], outputs: ['sq'] }, { op: 'Tanh', inputs: ['sq'], outputs: ['y'] }],
  }));
  const x = randomF32([2, 8], 9);
  writeFileSync(join(dir, 'x.npy'), encodeNpy(x));

  it('compiles, runs with .npy input and output, and benchmarks', () => {
    expect(kiln('compile', model, '-o', join(dir, 'm.kiln'))).toMatch(/1 kernels/);
    const out = kiln('run', join(dir, 'm.kiln'), '--input', `x=${join(dir, 'x.npy')}`, '--output-dir', join(dir, 'out'), '--bench', '5');
    expect(out).toMatch(/bench: 5 runs on \d+ threads?, min [\d.]+ ms, median [\d.]+ ms/);
    const y = readNpy(readFileSync(join(dir, 'out', 'y.npy')), 'y');
    (x.data as Float32Array).forEach((v, i) => expect(y.data[i]).toBeCloseTo(Math.tanh(v * v), 5));
    // the same run with a TensorProto input and TensorProto outputs
    writeFileSync(join(dir, 'x.pb'), encodeTensorProto(x, 'x'));
    kiln('run', join(dir, 'm.kiln'), '--input', `x=${join(dir, 'x.pb')}`, '--output-dir', join(dir, 'out-pb'), '--output-format', 'pb');
    expect(Array.from(decodeTensorProto(readFileSync(join(dir, 'out-pb', 'y.pb'))).data)).toEqual(Array.from(y.data));
  });

  it('prints every IR level', () => {
    expect(kiln('inspect', model, '--level', 'graph')).toMatch(/mul\(%x, %x\).*\n.*tanh/);
    expect(kiln('inspect', model, '--level', 'fused')).toMatch(/fn \(primitive\) fused_mul_tanh/);
    expect(kiln('inspect', model, '--level', 'te', '--kernel', '0')).toMatch(/= tanh\(mul_\d+\[i0_\d+, i1_\d+\]\)/);
    expect(kiln('inspect', model, '--level', 'loop')).toMatch(/for .* \(vectorized\)/);
    expect(kiln('inspect', model, '--level', 'wasm', '--kernel', '0')).toMatch(/;; kernel k0\n\(func \$\d+ \(param/);
    expect(kiln('inspect', join(dir, 'm.kiln'))).toMatch(/peak arena \d+ bytes vs \d+ bytes for all intermediates/);
  });

  it('prints the WGSL of a model, of one kernel, and of a compiled artifact', () => {
    const text = kiln('inspect', model, '--level', 'wgsl');
    expect(text).toMatch(/\/\/ kernel 0 g0: mul \+ tanh \(1 call\)\n\/\/ g0 stage 0: workgroup \d+, grid \[\d+,\d+,1\], bindings \[arg0,arg1\]/);
    expect(text).toMatch(/@compute @workgroup_size\(\d+\)\nfn main\(/);
    expect(kiln('inspect', model, '--level', 'wgsl', '--kernel', '0')).toBe(text);
    expect(kiln('compile', model, '--target', 'webgpu', '-o', join(dir, 'g.kiln'))).toMatch(/webgpu: 1 kernels, 1 stages, 1 distinct shaders \(0 stages read their constants from uniforms\), 1 dispatches per run/);
    expect(kiln('inspect', join(dir, 'g.kiln'), '--level', 'wgsl')).toBe(text);
    // an artifact compiled for WebAssembly only says how to get WGSL
    expect(() => execFileSync('node', [cli, 'inspect', join(dir, 'm.kiln'), '--level', 'wgsl'], { stdio: 'pipe' })).toThrow(/--target webgpu/);
  });

  it('runs a WebGPU artifact read from its file, weights included (kiln run --target webgpu)', () => {
    // Node's readFileSync gives a Buffer, whose slice() is a view: the executors must not copy weights with it
    const w = randomF32([8, 5], 3), b = randomF32([5], 4);
    const wm = join(dir, 'w.onnx');
    writeFileSync(wm, buildModel({
      inputs: [['x', 'float32', [2, 8]]], outputs: [['y', 'float32', [2, 5]]], initializers: { w, b },
      nodes: [{ op: 'MatMul', inputs: ['x', 'w'], outputs: ['xw'] }, { op: 'Add', inputs: ['xw', 'b'], outputs: ['y'] }],
    }));
    kiln('compile', wm, '--target', 'webgpu', '-o', join(dir, 'w.kiln'));
    const out = kiln('run', join(dir, 'w.kiln'), '--target', 'webgpu', '--input', `x=${join(dir, 'x.npy')}`, '--output-dir', join(dir, 'out-gpu'), '--bench', '2');
    expect(out).toMatch(/bench: 2 runs on webgpu/);
    const y = readNpy(readFileSync(join(dir, 'out-gpu', 'y.npy')), 'y');
    const [xd, wd, bd] = [x.data, w.data, b.data] as Float32Array[];
    for (let i = 0; i < 2; i++) for (let j = 0; j < 5; j++) {
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
    if (!hasCuda) expect([cuda.status, cuda.stderr]).toEqual([1, expect.stringMatching(/^kiln: \[E_NO_DEVICE\] no CUDA driver/)]);
    else expect(cuda.stdout).toMatch(/0 passed, 1 failed/);
    expect(existsSync(join(dir, 'm.kiln'))).toBe(true);
  });
});
