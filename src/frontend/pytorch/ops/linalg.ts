// ATen matrix products -> Kiln's gemm / matmul.
import type { GExpr } from '../../../relay-ir/expr.js';
import { tensor } from '../../../runtime/tensor.js';
import { type AtenCtx, aten } from '../converter.js';

/** x @ w.T + b (nn.Linear): gemm with transB for 2-D x, else matmul with the transposed weight plus the bias. */
aten('linear', (c) => {
  const x = c.tensor('input'),
    w = c.tensor('weight'),
    b = c.optTensor('bias');
  if (c.type(w).shape.length !== 2) c.unsupported(`a weight of rank ${c.type(w).shape.length}`);
  if (c.type(x).shape.length === 2)
    return c.call('gemm', b ? [x, w, b] : [x, w], { alpha: 1, beta: 1, transA: 0, transB: 1 });
  const y = c.call('matmul', [x, c.call('transpose', [w], { perm: [1, 0] })]);
  return b ? c.call('add', [y, b]) : y;
});

/** beta * self + alpha * (mat1 @ mat2). */
aten('addmm', (c) =>
  c.call('gemm', [c.tensor('mat1'), c.tensor('mat2'), c.tensor('self')], {
    alpha: c.float('alpha', 1),
    beta: c.float('beta', 1),
    transA: 0,
    transB: 0,
  }),
);

const matmul =
  (a: string, b: string) =>
  (c: AtenCtx): GExpr =>
    c.call('matmul', [c.tensor(a), c.tensor(b)]);
aten(['mm', 'bmm'], matmul('self', 'mat2'));
aten('matmul', matmul('self', 'other'));

/** beta * self + alpha * (batch1 @ batch2). */
aten('baddbmm', (c) => {
  const alpha = c.float('alpha', 1),
    beta = c.float('beta', 1);
  const self = c.tensor('self');
  const scale = (e: GExpr, v: number) =>
    v === 1 ? e : c.call('mul', [e, c.constant(tensor(c.type(e).dtype, [], [v]))]);
  const prod = scale(c.call('matmul', [c.tensor('batch1'), c.tensor('batch2')]), alpha);
  return beta === 0 ? prod : c.call('add', [scale(self, beta), prod]);
});
