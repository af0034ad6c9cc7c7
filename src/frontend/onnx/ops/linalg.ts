// ONNX linear-algebra operators -> Kiln graph operators.
import { tensor } from '../../../runtime/tensor.js';
import type { GExpr } from '../../../relay-ir/expr.js';
import { converter } from '../converter.js';

converter('MatMul', 1, (c) => c.call('matmul', [c.input(0), c.input(1)]));

converter('MatMulInteger', 10, (c) => {
  const a = c.input(0),
    b = c.input(1);
  // absent zero points are 0
  const zero = (e: GExpr) => c.constant(tensor(c.type(e).dtype, [], [0]));
  return c.call('matmul_integer', [a, b, c.optInput(2) ?? zero(a), c.optInput(3) ?? zero(b)]);
});

converter('Gemm', 1, (c) => {
  const args = [c.input(0), c.input(1)];
  const C = c.optInput(2);
  if (C) args.push(C);
  return c.call('gemm', args, {
    alpha: c.float('alpha', 1),
    beta: c.float('beta', 1),
    transA: c.int('transA', 0),
    transB: c.int('transB', 0),
  });
});

converter('Einsum', 12, (c) => {
  const args = [];
  for (let i = 0; i < c.numInputs; i++) args.push(c.input(i));
  return c.call('einsum', args, { equation: c.string('equation') });
});

converter('Det', 11, (c) => c.call('det', [c.input(0)]));
