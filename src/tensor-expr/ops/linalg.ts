// Linear algebra: matmul (numpy semantics), gemm, einsum, matmul_integer, det.
import { OpPattern, type Attrs } from '../../relay-ir/op.js';
import { sizeOf } from '../../runtime/tensor.js';
import { type Dim, type TensorType, tensorType } from '../../relay-ir/types.js';
import { dimBounds } from '../../relay-ir/sym-dim.js';
import * as E from '../expr.js';
import { type Expr, type IterVar, constant, int } from '../expr.js';
import { type Tensor, at, compute, reduceAxis } from '../tensor.js';
import { defineOp } from '../op-def.js';
import { broadcastShapes, num, sameDtype, shapeError, str } from './common.js';

// ---------------------------------------------------------------------------------------------------------------
// matmul

interface MatmulShape {
  batch: Dim[];
  m?: Dim;
  n?: Dim;
  k: Dim;
}

function matmulShape(a: readonly Dim[], b: readonly Dim[], what: string): MatmulShape {
  if (a.length === 0 || b.length === 0) shapeError(`${what}: operands must have rank >= 1`);
  const ka = a[a.length - 1];
  const kb = b.length === 1 ? b[0] : b[b.length - 2];
  if (typeof ka === 'number' && typeof kb === 'number' && ka !== kb) {
    shapeError(`${what}: inner dimensions differ ([${a.join(',')}] x [${b.join(',')}])`);
  }
  const batch = broadcastShapes([a.slice(0, Math.max(0, a.length - 2)), b.slice(0, Math.max(0, b.length - 2))]);
  return {
    batch,
    m: a.length >= 2 ? a[a.length - 2] : undefined,
    n: b.length >= 2 ? b[b.length - 1] : undefined,
    k: ka,
  };
}

const outShape = (s: MatmulShape): Dim[] => [
  ...s.batch,
  ...(s.m !== undefined ? [s.m] : []),
  ...(s.n !== undefined ? [s.n] : []),
];

/** Index of an operand's batch dims inside the broadcast batch index `bidx` (size-1 dims read index 0). */
function batchIdx(shape: readonly number[], nb: number, bidx: readonly Expr[]): Expr[] {
  const r = Math.max(0, shape.length - 2);
  return shape.slice(0, r).map((d, j) => (d === 1 ? int(0) : bidx[nb - r + j]));
}

/**
 * out[batch, m, n] = sum_k body(a[batch', m, k], b[batch'', k, n]) as a single reduction (no broadcast copies).
 * `elem` maps the two loaded operands to the product term (casts, zero points).
 */
function matmulCompute(
  name: string,
  a: Tensor,
  b: Tensor,
  out: readonly number[],
  elem: (x: Expr, y: Expr, m: Expr, n: Expr) => Expr,
  attrs: Attrs = {},
): Tensor {
  const block = num(attrs, 'weight_block', 0);
  const s = matmulShape(a.shape, logicalB(b.shape, attrs), name);
  const nb = s.batch.length;
  const K = a.shape[a.shape.length - 1];
  return compute(name, out, (idx) => {
    const bidx = idx.slice(0, nb);
    let p = nb;
    const m = s.m !== undefined ? idx[p++] : int(0);
    const n = s.n !== undefined ? idx[p++] : int(0);
    const k = reduceAxis(K, 'k');
    const ai = a.shape.length === 1 ? [k.v] : [...batchIdx(a.shape, nb, bidx), m, k.v];
    const bv = block
      ? packedAt(b, block, k.v, n)
      : at(b, ...(b.shape.length === 1 ? [k.v] : [...batchIdx(b.shape, nb, bidx), k.v, n]));
    return E.sum(elem(at(a, ...ai), bv, m, n), [k]);
  });
}

/**
 * A constant right-hand operand packed at compile time (relay-ir/passes/pack-weights.ts): [K, N] stored as
 * [ceil(N/B), K, B] for attribute weight_block = B (columns = N), so B adjacent columns of one k are one vector.
 */
function logicalB(b: readonly Dim[], a: Attrs): Dim[] {
  return num(a, 'weight_block', 0) ? [b[1], num(a, 'columns')] : [...b];
}
const packedAt = (b: Tensor, block: number, k: Expr, n: Expr): Expr =>
  at(b, E.floordiv(n, block), k, E.floormod(n, block));

defineOp({
  name: 'matmul',
  pattern: OpPattern.OutEWiseFusable,
  inferType: ([a, b], at_) => {
    if (a.dtype !== b.dtype) shapeError(`matmul: input dtypes differ (${a.dtype} vs ${b.dtype})`);
    return tensorType(outShape(matmulShape(a.shape, logicalB(b.shape, at_), 'matmul')), a.dtype);
  },
  compute: ([a, b], at_, out) => matmulCompute('matmul', a, b, out.shape, (x, y) => E.mul(x, y), at_),
});

/** MatMulInteger: (a - a_zero_point) x (b - b_zero_point) accumulated in int32. Zero points: scalar, per row of a, per column of b. */
defineOp({
  name: 'matmul_integer',
  pattern: OpPattern.OutEWiseFusable,
  inferType: ([a, b, az, bz]) => {
    // a zero point is one value or one per row of a / column of b, decided by its length: a length that is a
    // run-time size (a symbol with a range) must be provably one of them (a symbol without one is bound first)
    const check = (z: TensorType | undefined, along: Dim | undefined) => {
      const len = z?.shape[z.shape.length - 1];
      if (len !== undefined && along !== undefined && Number.isFinite(dimBounds(len)[1]))
        broadcastShapes([[len], [along]]);
    };
    check(az, a.shape.length >= 2 ? a.shape[a.shape.length - 2] : undefined);
    check(bz, b.shape[b.shape.length - 1]);
    return tensorType(outShape(matmulShape(a.shape, b.shape, 'matmul_integer')), 'int32');
  },
  compute: ([a, b, az, bz], _, out) => {
    const zp = (z: Tensor | undefined, i: Expr): Expr => {
      if (!z) return int(0);
      const n = sizeOf(z.shape);
      return E.cast('int32', at(z, ...z.shape.map((d) => (n === 1 || d === 1 ? int(0) : i))));
    };
    return matmulCompute('matmul_integer', a, b, out.shape, (x, y, m, n) =>
      E.mul(E.sub(E.cast('int32', x), zp(az, m)), E.sub(E.cast('int32', y), zp(bz, n))),
    );
  },
});

// ---------------------------------------------------------------------------------------------------------------
// gemm: alpha * A' B' + beta * C, C broadcast to [M, N]

defineOp({
  name: 'gemm',
  pattern: OpPattern.OutEWiseFusable,
  inferType: ([a, b, c], at_) => {
    sameDtype('gemm', a, b, c);
    if (a.shape.length !== 2 || b.shape.length !== (num(at_, 'weight_block', 0) ? 3 : 2))
      shapeError(`gemm: A and B must be 2-D, got [${a.shape}] and [${b.shape}]`);
    const ta = num(at_, 'transA', 0),
      tb = num(at_, 'transB', 0);
    const [M, Ka] = ta ? [a.shape[1], a.shape[0]] : a.shape;
    const [Kb, N] = num(at_, 'weight_block', 0) ? logicalB(b.shape, at_) : tb ? [b.shape[1], b.shape[0]] : b.shape;
    if (typeof Ka === 'number' && typeof Kb === 'number' && Ka !== Kb)
      shapeError(`gemm: inner dimensions differ (${Ka} vs ${Kb})`);
    if (c) broadcastShapes([c.shape, [M, N]]);
    return tensorType([M, N], a.dtype);
  },
  compute: ([a, b, c], at_, out) => {
    const alpha = num(at_, 'alpha', 1),
      beta = num(at_, 'beta', 1);
    const ta = num(at_, 'transA', 0),
      tb = num(at_, 'transB', 0);
    const K = ta ? a.shape[0] : a.shape[1];
    const block = num(at_, 'weight_block', 0);
    const mm = compute('gemm', out.shape, ([m, n]) => {
      const k = reduceAxis(K, 'k');
      const x = ta ? at(a, k.v, m) : at(a, m, k.v);
      const y = block ? packedAt(b, block, k.v, n) : tb ? at(b, n, k.v) : at(b, k.v, n);
      return E.sum(E.mul(x, y), [k]);
    });
    const useC = c !== undefined && beta !== 0;
    if (alpha === 1 && !useC) return mm;
    return compute('gemm_epilogue', out.shape, ([m, n]) => {
      let v = at(mm, m, n);
      if (alpha !== 1) v = E.mul(v, constant(alpha, v.dtype));
      if (useC) {
        const cr = c.shape.length;
        const ci = c.shape.map((d, j) => (d === 1 ? int(0) : [m, n][2 - cr + j]));
        let cv = at(c, ...ci);
        if (beta !== 1) cv = E.mul(cv, constant(beta, cv.dtype));
        v = E.add(v, cv);
      }
      return v;
    });
  },
});

// ---------------------------------------------------------------------------------------------------------------
// einsum

interface EinsumPlan {
  /** Letters of each input, with '.' standing for one ellipsis dim (numbered from the right: '.0' etc.). */
  inputs: string[][];
  output: string[];
  extents: Map<string, number>;
}

function planEinsum(eq: string, shapes: readonly (readonly Dim[])[]): EinsumPlan {
  const clean = eq.replace(/\s+/g, '');
  const [lhs, rhs] = clean.includes('->') ? clean.split('->') : [clean, undefined];
  const terms = lhs.split(',');
  if (terms.length !== shapes.length)
    shapeError(`einsum '${eq}': ${terms.length} operand terms for ${shapes.length} inputs`);
  let ellRank = 0;
  const parse = (term: string, rank: number | undefined): string[] => {
    const ell = term.indexOf('...');
    const letters = term.replace('...', '').split('');
    for (const l of letters) if (!/[A-Za-z]/.test(l)) shapeError(`einsum '${eq}': bad subscript '${l}'`);
    if (ell < 0) {
      if (rank !== undefined && rank !== letters.length)
        shapeError(`einsum '${eq}': term '${term}' has ${letters.length} subscripts for rank ${rank}`);
      return letters;
    }
    const before = term.slice(0, ell).split('').filter(Boolean),
      after = term
        .slice(ell + 3)
        .split('')
        .filter(Boolean);
    const ne = rank === undefined ? ellRank : rank - letters.length;
    if (ne < 0) shapeError(`einsum '${eq}': term '${term}' has more subscripts than rank ${rank}`);
    ellRank = Math.max(ellRank, ne);
    const dots = Array.from({ length: ne }, (_, i) => `.${ne - 1 - i}`);
    return [...before, ...dots, ...after];
  };
  const inputs = terms.map((t, i) => parse(t, shapes[i].length));
  const extents = new Map<string, number>();
  inputs.forEach((ls, i) =>
    ls.forEach((l, j) => {
      const d = shapes[i][j];
      if (typeof d !== 'number') shapeError(`einsum: dimension '${d}' must be known at compile time`);
      const prev = extents.get(l);
      if (prev === undefined || prev === 1) extents.set(l, d);
      else if (d !== 1 && d !== prev) shapeError(`einsum '${eq}': subscript '${l}' has sizes ${prev} and ${d}`);
      else if (d !== prev && !l.startsWith('.'))
        shapeError(`einsum '${eq}': subscript '${l}' has sizes ${prev} and ${d}`);
    }),
  );
  let output: string[];
  const dotsAll = Array.from({ length: ellRank }, (_, i) => `.${ellRank - 1 - i}`);
  if (rhs === undefined) {
    const count = new Map<string, number>();
    for (const ls of inputs) for (const l of ls) if (!l.startsWith('.')) count.set(l, (count.get(l) ?? 0) + 1);
    output = [
      ...dotsAll,
      ...[...count.entries()]
        .filter(([, n]) => n === 1)
        .map(([l]) => l)
        .sort(),
    ];
  } else {
    if (rhs.includes('...')) {
      const [b, a] = rhs.split('...');
      output = [...b.split('').filter(Boolean), ...dotsAll, ...a.split('').filter(Boolean)];
    } else output = rhs.split('').filter(Boolean);
    for (const l of output)
      if (!extents.has(l)) shapeError(`einsum '${eq}': output subscript '${l}' is not in any input`);
    if (new Set(output).size !== output.length) shapeError(`einsum '${eq}': repeated output subscript`);
  }
  for (const d of dotsAll) if (!extents.has(d)) extents.set(d, 1);
  return { inputs, output, extents };
}

defineOp({
  name: 'einsum',
  pattern: OpPattern.OutEWiseFusable,
  inferType: (args, a) => {
    for (const t of args) if (t.dtype !== args[0].dtype) shapeError('einsum: input dtypes differ');
    const p = planEinsum(
      str(a, 'equation', ''),
      args.map((t) => t.shape),
    );
    return tensorType(
      p.output.map((l) => p.extents.get(l)!),
      args[0].dtype,
    );
  },
  compute: (args, a, out) => {
    const p = planEinsum(
      str(a, 'equation', ''),
      args.map((t) => t.shape),
    );
    const contracted = [...p.extents.keys()].filter(
      (l) => !p.output.includes(l) && p.inputs.some((ls) => ls.includes(l)),
    );
    return compute('einsum', out.shape, (idx) => {
      const vars = new Map<string, Expr>(p.output.map((l, i) => [l, idx[i]]));
      const raxes: IterVar[] = contracted.map((l) => reduceAxis(p.extents.get(l)!, 'e'));
      contracted.forEach((l, i) => vars.set(l, raxes[i].v));
      let body: Expr | undefined;
      args.forEach((t, i) => {
        const v = at(t, ...p.inputs[i].map((l, j) => (t.shape[j] === 1 ? int(0) : vars.get(l)!)));
        body = body ? E.mul(body, v) : v;
      });
      return raxes.length ? E.sum(body!, raxes) : body!;
    });
  },
});

// ---------------------------------------------------------------------------------------------------------------
// det: Leibniz expansion (sum over permutations), for small matrices

function permutations(n: number): { p: number[]; sign: number }[] {
  const out: { p: number[]; sign: number }[] = [];
  const rec = (prefix: number[], rest: number[], sign: number) => {
    if (!rest.length) {
      out.push({ p: prefix, sign });
      return;
    }
    rest.forEach((x, i) => rec([...prefix, x], [...rest.slice(0, i), ...rest.slice(i + 1)], i % 2 ? -sign : sign));
  };
  rec(
    [],
    Array.from({ length: n }, (_, i) => i),
    1,
  );
  return out;
}

const DET_MAX = 6;

defineOp({
  name: 'det',
  pattern: OpPattern.OutEWiseFusable,
  inferType: ([x]) => {
    const r = x.shape.length;
    if (r < 2 || x.shape[r - 1] !== x.shape[r - 2]) shapeError(`det: input must be [..., n, n], got [${x.shape}]`);
    const n = x.shape[r - 1];
    if (typeof n === 'number' && n > DET_MAX)
      shapeError(`det: matrices larger than ${DET_MAX}x${DET_MAX} are not supported`);
    return tensorType(x.shape.slice(0, r - 2), x.dtype);
  },
  compute: ([x], _a: Attrs, out) => {
    const n = x.shape[x.shape.length - 1];
    return compute('det', out.shape, (idx) => {
      if (n === 0) return constant(1, x.dtype);
      let acc: Expr | undefined;
      for (const { p, sign } of permutations(n)) {
        let term: Expr = at(x, ...idx, 0, p[0]);
        for (let i = 1; i < n; i++) term = E.mul(term, at(x, ...idx, i, p[i]));
        acc =
          acc === undefined ? (sign > 0 ? term : E.unary('neg', term)) : sign > 0 ? E.add(acc, term) : E.sub(acc, term);
      }
      return acc!;
    });
  },
});
