// Constant folding's two evaluators timed on calls of growing size: the tensor-expression interpreter and the
// one-kernel WebAssembly program (build, compile, instantiate, run). Where the interpreter's time passes the
// WebAssembly path's is where src/compiler/te-interpreter.ts's MAX_INTERPRETED_WORK belongs (the interpreter runs
// here without that limit).
// Usage: npm run build && node scripts/bench-fold-evaluator.mjs
import { evaluateOnWasm } from '../dist/compiler/evaluate.js';
import { interpretCall } from '../dist/compiler/te-interpreter.js';
import { gcall, gconst } from '../dist/relay-ir/expr.js';
import { getOp } from '../dist/relay-ir/op.js';
import { tensor } from '../dist/runtime/tensor.js';

const ramp = (dtype, shape) =>
  tensor(
    dtype,
    shape,
    Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => (dtype === 'int64' ? i % 7 : (i % 13) / 7)),
  );

/** Median milliseconds of `f` over enough runs to take about 200 ms (at least 3). */
function time(f) {
  const ms = [];
  const start = performance.now();
  while (ms.length < 3 || (performance.now() - start < 200 && ms.length < 200)) {
    const t0 = performance.now();
    f();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return ms[ms.length >> 1];
}

const cases = {
  'add int64': (n) => [getOp('add'), [ramp('int64', [n]), ramp('int64', [n])], {}],
  'mul float32': (n) => [getOp('mul'), [ramp('float32', [n]), ramp('float32', [n])], {}],
  'gather int64': (n) => [
    getOp('gather'),
    [
      ramp('int64', [n, 4]),
      tensor(
        'int64',
        [n],
        Array.from({ length: n }, (_, i) => (i * 5) % n),
      ),
    ],
    { axis: 0 },
  ],
  'matmul float32 (k=16)': (n) => [getOp('matmul'), [ramp('float32', [n / 16, 16]), ramp('float32', [16, 16])], {}],
};

console.log('case                      elements  work  interpreter ms  webassembly ms');
for (const [name, make] of Object.entries(cases)) {
  for (const n of [16, 256, 1024, 2048, 4096, 8192, 16384]) {
    const [op, args, attrs] = make(n);
    const call = gcall(op, args.map(gconst), attrs);
    const interp = interpretCall(call, args, Infinity) ? time(() => interpretCall(call, args, Infinity)) : Number.NaN;
    const wasm = time(() => evaluateOnWasm(call, args));
    const size = call.type.shape.reduce((a, b) => a * b, 1);
    const work = name.startsWith('matmul') ? size * 17 : size;
    console.log(
      `${name.padEnd(24)} ${String(size).padStart(9)} ${String(work).padStart(7)} ${interp.toFixed(3).padStart(13)} ${wasm.toFixed(3).padStart(15)}`,
    );
  }
}
