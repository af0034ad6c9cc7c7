// The optimizers of ai.onnx.preview.training (Adagrad, Momentum, Adam): one update step of every (X, G, state...)
// group of tensors given, from the learning rate R and the step count T (scalars), composed of elementwise graph
// operators as the operators' definitions write them. Outputs: every new X, then every new state of each kind.
import { KilnError } from '../../../runtime/errors.js';
import { tensor } from '../../../runtime/tensor.js';
import type { GExpr } from '../../../relay-ir/expr.js';
import { type ConvertCtx, converter } from '../converter.js';

const DOMAIN = 'ai.onnx.preview.training';

/** R, T (as R's type), T > 0, and the groups: `per` tensors for each optimized X. */
function operands(c: ConvertCtx, per: number) {
  const n = (c.numInputs - 2) / per;
  if (!Number.isInteger(n) || n < 1)
    throw new KilnError('E_MODEL_INVALID', `${c.opType}: ${c.numInputs} inputs`, {
      hint: `${c.opType} takes R, T, then ${per} lists of equal length (X..., G..., and the states)`,
    });
  const r = c.input(0),
    t = c.input(1);
  const dtype = c.type(r).dtype;
  if (dtype !== 'float32' && dtype !== 'float64') c.unsupported(`R of type ${dtype}`);
  const k = (v: number) => c.constant(tensor(dtype, [], [v]));
  const started = c.call('greater', [t, c.constant(tensor(c.type(t).dtype, [], [0]))]);
  const groups = Array.from({ length: n }, (_, i) => Array.from({ length: per }, (_, j) => c.input(2 + j * n + i)));
  const mul = (a: GExpr, b: GExpr) => c.call('mul', [a, b]),
    add = (a: GExpr, b: GExpr) => c.call('add', [a, b]),
    sub = (a: GExpr, b: GExpr) => c.call('sub', [a, b]),
    div = (a: GExpr, b: GExpr) => c.call('div', [a, b]);
  return { r, steps: c.call('cast', [t], { to: dtype }), started, groups, k, mul, add, sub, div };
}

converter(
  'Adagrad',
  1,
  (c) => {
    const { r, steps, groups, k, mul, add, sub, div } = operands(c, 3);
    const decay = c.float('decay_factor', 0),
      eps = c.float('epsilon', 0),
      nc = c.float('norm_coefficient', 0);
    const rate = div(r, add(k(1), mul(steps, k(decay))));
    const xs: GExpr[] = [],
      hs: GExpr[] = [];
    for (const [x, g, h] of groups) {
      const gr = add(mul(k(nc), x), g);
      const hNew = add(h, mul(gr, gr));
      xs.push(sub(x, div(mul(rate, gr), add(c.call('sqrt', [hNew]), k(eps)))));
      hs.push(hNew);
    }
    return [...xs, ...hs];
  },
  DOMAIN,
);

converter(
  'Momentum',
  1,
  (c) => {
    const { r, started, groups, k, mul, add, sub } = operands(c, 3);
    const alpha = c.float('alpha'),
      beta = c.float('beta'),
      nc = c.float('norm_coefficient');
    const mode = c.string('mode');
    if (mode !== 'standard' && mode !== 'nesterov') c.unsupported(`mode '${mode}'`);
    // the gradient's coefficient is 1 on the first step
    const b = c.call('where', [started, k(beta), k(1)]);
    const xs: GExpr[] = [],
      vs: GExpr[] = [];
    for (const [x, g, v] of groups) {
      const gr = add(mul(k(nc), x), g);
      const vNew = add(mul(k(alpha), v), mul(b, gr));
      xs.push(sub(x, mul(r, mode === 'standard' ? vNew : add(gr, mul(k(alpha), vNew)))));
      vs.push(vNew);
    }
    return [...xs, ...vs];
  },
  DOMAIN,
);

converter(
  'Adam',
  1,
  (c) => {
    const { r, steps, started, groups, k, mul, add, sub, div } = operands(c, 4);
    const alpha = c.float('alpha', 0.9),
      beta = c.float('beta', 0.999),
      eps = c.float('epsilon', 0),
      nc = c.float('norm_coefficient', 0),
      ncPost = c.float('norm_coefficient_post', 0);
    // bias correction of the moments from the second step on
    const pw = (base: number) => c.call('pow', [k(base), steps]);
    const corrected = div(mul(r, c.call('sqrt', [sub(k(1), pw(beta))])), sub(k(1), pw(alpha)));
    const rate = c.call('where', [started, corrected, r]);
    const xs: GExpr[] = [],
      vs: GExpr[] = [],
      hs: GExpr[] = [];
    for (const [x, g, v, h] of groups) {
      const gr = add(mul(k(nc), x), g);
      const vNew = add(mul(k(alpha), v), mul(k(1 - alpha), gr));
      const hNew = add(mul(k(beta), h), mul(k(1 - beta), mul(gr, gr)));
      const xNew = sub(x, mul(rate, div(vNew, add(c.call('sqrt', [hNew]), k(eps)))));
      xs.push(mul(k(1 - ncPost), xNew));
      vs.push(vNew);
      hs.push(hNew);
    }
    return [...xs, ...vs, ...hs];
  },
  DOMAIN,
);
