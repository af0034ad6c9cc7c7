// ONNX LSTM, GRU and RNN (opsets 7, 14 with layout, 22) -> Kiln graph operators, unrolled over the time steps
// (the sequence length is static after import): the input projection X W^T + biases of every step and direction
// is one gemm, then each step is H R^T, the gate activations and the state update, built from existing graph ops.
// Y, Y_h and Y_c are assembled with unsqueeze/concat; unused outputs are removed by dead-code elimination.
import { KilnError } from '../../../runtime/errors.js';
import { tensor } from '../../../runtime/tensor.js';
import type { GExpr } from '../../../relay-ir/expr.js';
import { staticDims } from '../../../tensor-expr/ops/common.js';
import { type ConvertCtx, converter } from '../converter.js';

type Cell = 'LSTM' | 'GRU' | 'RNN';

/** Gates per cell, in the order of W's rows: LSTM i o f c, GRU z r h, RNN i. */
const GATES: Record<Cell, number> = { LSTM: 4, GRU: 3, RNN: 1 };
const DEFAULT_ACTIVATIONS: Record<Cell, string[]> = {
  LSTM: ['Sigmoid', 'Tanh', 'Tanh'],
  GRU: ['Sigmoid', 'Tanh'],
  RNN: ['Tanh'],
};

/**
 * Activation name (lower case) -> [takes alpha, takes beta, default alpha, default beta]. alpha/beta values are
 * consumed in order by the activations that take them, as ONNX Runtime does; defaults are those of the ONNX
 * operators of the same name.
 */
const ACTIVATIONS: Record<string, [boolean, boolean, number, number]> = {
  relu: [false, false, 0, 0],
  tanh: [false, false, 0, 0],
  sigmoid: [false, false, 0, 0],
  softsign: [false, false, 0, 0],
  softplus: [false, false, 0, 0],
  affine: [true, true, 1, 0],
  leakyrelu: [true, false, 0.01, 0],
  thresholdedrelu: [true, false, 1, 0],
  scaledtanh: [true, true, 1, 1],
  hardsigmoid: [true, true, 0.2, 0.5],
  elu: [true, false, 1, 0],
};

interface Activation {
  name: string;
  alpha: number;
  beta: number;
}

/** The activations of every direction: `per` functions per direction. */
function activations(c: ConvertCtx, cell: Cell, dirs: number): Activation[] {
  const per = DEFAULT_ACTIVATIONS[cell].length;
  const a = c.attr('activations');
  if (a && a.type !== 'strings') throw new KilnError('E_MODEL_INVALID', `attribute 'activations' should be strings`);
  let names = a ? (a.value as string[]) : [];
  if (!names.length) names = Array.from({ length: dirs }, () => DEFAULT_ACTIVATIONS[cell]).flat();
  // one direction's list given for a bidirectional op serves both
  else if (dirs === 2 && names.length === per) names = [...names, ...names];
  if (names.length !== per * dirs)
    throw new KilnError('E_MODEL_INVALID', `${names.length} activations for ${dirs} direction(s) of ${per} each`);
  const alphas = c.attr('activation_alpha') ? c.floats('activation_alpha') : [];
  const betas = c.attr('activation_beta') ? c.floats('activation_beta') : [];
  let ai = 0,
    bi = 0;
  return names.map((n) => {
    const name = n.toLowerCase();
    const spec = ACTIVATIONS[name];
    if (!spec) c.unsupported(`activations '${n}'`);
    const [takesAlpha, takesBeta, dAlpha, dBeta] = spec;
    const alpha = takesAlpha && ai < alphas.length ? alphas[ai++] : dAlpha;
    const beta = takesBeta && bi < betas.length ? betas[bi++] : dBeta;
    return { name, alpha, beta };
  });
}

function activate(c: ConvertCtx, f: Activation, x: GExpr): GExpr {
  const k = (v: number) => c.constant(tensor(c.type(x).dtype, [], [v]));
  switch (f.name) {
    case 'affine':
      return c.call('add', [c.call('mul', [x, k(f.alpha)]), k(f.beta)]);
    case 'scaledtanh':
      return c.call('mul', [c.call('tanh', [c.call('mul', [x, k(f.beta)])]), k(f.alpha)]);
    case 'leakyrelu':
      return c.call('leaky_relu', [x], { alpha: f.alpha });
    case 'thresholdedrelu':
      return c.call('thresholded_relu', [x], { alpha: f.alpha });
    case 'elu':
      return c.call('elu', [x], { alpha: f.alpha });
    case 'hardsigmoid':
      return c.call('hard_sigmoid', [x], { alpha: f.alpha, beta: f.beta });
    default:
      return c.call(f.name, [x]);
  }
}

function recurrent(c: ConvertCtx, cell: Cell): GExpr[] {
  const G = GATES[cell];
  let x = c.input(0);
  const w = c.input(1),
    r = c.input(2),
    b = c.optInput(3),
    seqLens = c.optInput(4);
  let h0 = c.optInput(5),
    c0 = cell === 'LSTM' ? c.optInput(6) : undefined;
  const peep = cell === 'LSTM' ? c.optInput(7) : undefined;
  const dtype = c.type(x).dtype;
  if (dtype !== 'float32' && dtype !== 'float64') c.unsupported(`X of type ${dtype}`);
  const layout = c.opset >= 14 ? c.int('layout', 0) : 0;
  if (layout !== 0 && layout !== 1) c.unsupported(`layout ${layout}`);
  // layout 1 (batch first): computed in layout 0, Y and the states written back in layout 1
  const swap = (e: GExpr) => c.call('transpose', [e], { perm: [1, 0, 2] });
  if (layout === 1) {
    x = swap(x);
    if (h0) h0 = swap(h0);
    if (c0) c0 = swap(c0);
  }
  const [S, B, I] = staticDims(c.type(x), `${cell} X`);
  const [dirs, GH, wI] = staticDims(c.type(w), `${cell} W`);
  const direction = c.string('direction', 'forward');
  if (direction !== 'forward' && direction !== 'reverse' && direction !== 'bidirectional')
    c.unsupported(`direction '${direction}'`);
  const invalid = (what: string) => {
    throw new KilnError('E_MODEL_INVALID', `${cell}: ${what}`);
  };
  if (dirs !== (direction === 'bidirectional' ? 2 : 1))
    invalid(`W has ${dirs} directions, direction is '${direction}'`);
  const H = c.int('hidden_size', GH / G);
  if (GH !== G * H || wI !== I) invalid(`W of shape [${dirs},${GH},${wI}] for hidden_size ${H} and input size ${I}`);
  const rDims = staticDims(c.type(r), `${cell} R`);
  if (rDims.join() !== [dirs, GH, H].join()) invalid(`R of shape [${rDims}], expected [${dirs},${GH},${H}]`);
  const clipAt = c.attr('clip') ? c.float('clip') : undefined;
  const inputForget = cell === 'LSTM' ? c.int('input_forget', 0) !== 0 : false;
  const linearBeforeReset = cell === 'GRU' ? c.int('linear_before_reset', 0) !== 0 : false;
  const acts = activations(c, cell, dirs);
  const per = acts.length / dirs;

  const scalar = (v: number) => c.constant(tensor(dtype, [], [v]));
  const zeros = (shape: number[]) => c.constant(tensor(dtype, shape));
  const slice = (e: GExpr, axis: number, start: number, end: number) =>
    c.call('slice', [e], { starts: [start], ends: [end], axes: [axis], steps: [1] });
  const gate = (e: GExpr, k: number) => slice(e, 1, k * H, (k + 1) * H);
  const clip = (e: GExpr) => (clipAt === undefined ? e : c.call('clip', [e, scalar(-clipAt), scalar(clipAt)]));
  const dirOf = (e: GExpr | undefined, d: number) => e && c.call('squeeze', [slice(e, 0, d, d + 1)], { axes: [0] });

  // the biases: Wb + Rb join the projection, except GRU's Rbh with linear_before_reset (it sits inside r * (...))
  let projBias: GExpr | undefined;
  let rbh: GExpr[] = [];
  if (b) {
    const bDims = staticDims(c.type(b), `${cell} B`);
    if (bDims.join() !== [dirs, 2 * GH].join()) invalid(`B of shape [${bDims}], expected [${dirs},${2 * GH}]`);
    const wb = slice(b, 1, 0, GH);
    let rb = slice(b, 1, GH, 2 * GH);
    if (linearBeforeReset) {
      rbh = Array.from({ length: dirs }, (_, d) => dirOf(slice(rb, 1, 2 * H, 3 * H), d) as GExpr);
      rb = c.call('concat', [slice(rb, 1, 0, 2 * H), zeros([dirs, H])], { axis: 1 });
    }
    projBias = c.call('reshape', [c.call('add', [wb, rb])], { shape: [dirs * GH] });
  }
  // X W^T (+ biases) for every step and direction at once: [S * B, dirs * GH]
  const projArgs = [c.call('reshape', [x], { shape: [S * B, I] }), c.call('reshape', [w], { shape: [dirs * GH, I] })];
  if (projBias) projArgs.push(projBias);
  const proj = c.call('gemm', projArgs, { alpha: 1, beta: 1, transA: 0, transB: 1 });

  // sequence_lens: a step at or past a sequence's length leaves its state unchanged and writes zeros to Y
  let lens: ArrayLike<number | bigint> | undefined;
  if (seqLens) {
    try {
      lens = c.constValue(seqLens, `${cell} sequence_lens`).data;
    } catch (e) {
      if (!(e instanceof KilnError && e.code === 'E_DYNAMIC')) throw e;
    }
  }
  const stepMask = (t: number): GExpr | undefined => {
    if (!seqLens) return undefined;
    if (lens) {
      const valid = Array.from(lens, (n) => t < Number(n));
      if (valid.every(Boolean)) return undefined;
      return c.constant(tensor('bool', [B, 1], valid.map(Number)));
    }
    const steps = c.constant(tensor(c.type(seqLens).dtype, [], [t]));
    return c.call('reshape', [c.call('less', [steps, seqLens])], { shape: [B, 1] });
  };
  if (peep) {
    const pDims = staticDims(c.type(peep), 'LSTM P');
    if (pDims.join() !== [dirs, 3 * H].join()) invalid(`P of shape [${pDims}], expected [${dirs},${3 * H}]`);
  }

  const ys: GExpr[][] = [],
    hs: GExpr[] = [],
    cs: GExpr[] = [];
  for (let d = 0; d < dirs; d++) {
    const [f, g, h] = acts.slice(d * per, (d + 1) * per);
    const reverse = direction === 'reverse' || d === 1;
    const rT = c.call('transpose', [dirOf(r, d) as GExpr], { perm: [1, 0] }); // [H, GH]
    const pd = dirOf(peep, d);
    const [pi, po, pf] = pd ? [0, 1, 2].map((k) => gate(c.call('unsqueeze', [pd], { axes: [0] }), k)) : [];
    // undefined state: zero (the initial state when none is given), so its products are skipped
    let hPrev = dirOf(h0, d),
      cPrev = dirOf(c0, d);
    const times = Array.from({ length: S }, (_, i) => (reverse ? S - 1 - i : i));
    const yd: GExpr[] = new Array(S);
    for (const t of times) {
      let xt = c.call('slice', [proj], {
        starts: [t * B, d * GH],
        ends: [(t + 1) * B, (d + 1) * GH],
        axes: [0, 1],
        steps: [1, 1],
      });
      let hNew: GExpr, cNew: GExpr | undefined;
      if (cell === 'GRU') {
        // z and r from x and H; the candidate from x and r * H (or r * (H Rh^T + Rbh) with linear_before_reset)
        const rzr = slice(rT, 1, 0, 2 * H),
          rh = slice(rT, 1, 2 * H, 3 * H);
        let zr = slice(xt, 1, 0, 2 * H);
        if (hPrev) zr = c.call('add', [zr, c.call('matmul', [hPrev, rzr])]);
        const z = activate(c, f, clip(gate(zr, 0)));
        const rg = activate(c, f, clip(gate(zr, 1)));
        let cand = gate(xt, 2);
        if (linearBeforeReset) {
          let hr = hPrev ? c.call('matmul', [hPrev, rh]) : undefined;
          if (rbh.length) hr = hr ? c.call('add', [hr, rbh[d]]) : rbh[d];
          if (hr) cand = c.call('add', [cand, c.call('mul', [rg, hr])]);
        } else if (hPrev) {
          cand = c.call('add', [cand, c.call('matmul', [c.call('mul', [rg, hPrev]), rh])]);
        }
        const hc = activate(c, g, clip(cand));
        // H = (1 - z) * h~ + z * H_prev
        hNew = c.call('mul', [c.call('sub', [scalar(1), z]), hc]);
        if (hPrev) hNew = c.call('add', [hNew, c.call('mul', [z, hPrev])]);
      } else {
        if (hPrev) xt = c.call('add', [xt, c.call('matmul', [hPrev, rT])]);
        if (cell === 'RNN') {
          hNew = activate(c, f, clip(xt));
        } else {
          const peephole = (e: GExpr, p: GExpr | undefined, cell: GExpr | undefined) =>
            p && cell ? c.call('add', [e, c.call('mul', [p, cell])]) : e;
          const i = activate(c, f, clip(peephole(gate(xt, 0), pi, cPrev)));
          const fg = inputForget
            ? c.call('sub', [scalar(1), i])
            : activate(c, f, clip(peephole(gate(xt, 2), pf, cPrev)));
          const cc = activate(c, g, clip(gate(xt, 3)));
          cNew = c.call('mul', [i, cc]);
          if (cPrev) cNew = c.call('add', [cNew, c.call('mul', [fg, cPrev])]);
          const o = activate(c, f, clip(peephole(gate(xt, 1), po, cNew)));
          hNew = c.call('mul', [o, activate(c, h, cNew)]);
        }
      }
      const mask = stepMask(t);
      if (mask) {
        yd[t] = c.call('where', [mask, hNew, zeros([B, H])]);
        hNew = c.call('where', [mask, hNew, hPrev ?? zeros([B, H])]);
        if (cNew) cNew = c.call('where', [mask, cNew, cPrev ?? zeros([B, H])]);
      } else yd[t] = hNew;
      hPrev = hNew;
      cPrev = cNew;
    }
    ys.push(yd);
    hs.push(hPrev ?? zeros([B, H]));
    cs.push(cPrev ?? zeros([B, H]));
  }

  // Y: [S, dirs, B, H] (layout 1: [B, S, dirs, H]); Y_h, Y_c: [dirs, B, H] (layout 1: [B, dirs, H])
  const [timeAxis, dirAxis] = layout === 1 ? [1, 2] : [0, 1];
  const joinDirs = (xs: GExpr[], axis: number) => (xs.length === 1 ? xs[0] : c.call('concat', xs, { axis }));
  const y = joinDirs(
    ys.map((yd) =>
      c.call(
        'concat',
        yd.map((yt) => c.call('unsqueeze', [yt], { axes: [timeAxis, dirAxis] })),
        { axis: timeAxis },
      ),
    ),
    dirAxis,
  );
  const stateAxis = layout === 1 ? 1 : 0;
  const states = (xs: GExpr[]) =>
    joinDirs(
      xs.map((s) => c.call('unsqueeze', [s], { axes: [stateAxis] })),
      stateAxis,
    );
  return cell === 'LSTM' ? [y, states(hs), states(cs)] : [y, states(hs)];
}

for (const cell of ['LSTM', 'GRU', 'RNN'] as const) converter(cell, 7, (c) => recurrent(c, cell));
