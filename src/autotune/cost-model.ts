// A small online cost model: ridge regression on standardized loop-IR features predicting log latency.
// Trained on the measured candidates of one task; deterministic (closed form, no random init).
export class RidgeModel {
  private w: number[] | undefined;
  private mu: number[] = [];
  private sd: number[] = [];

  constructor(readonly lambda = 1.0) {}

  get trained(): boolean {
    return this.w !== undefined;
  }

  fit(X: readonly number[][], y: readonly number[]): void {
    const n = X.length;
    if (n < 3) {
      this.w = undefined;
      return;
    }
    const d = X[0].length;
    this.mu = Array.from({ length: d }, (_, j) => X.reduce((s, x) => s + x[j], 0) / n);
    this.sd = Array.from(
      { length: d },
      (_, j) => Math.sqrt(X.reduce((s, x) => s + (x[j] - this.mu[j]) ** 2, 0) / n) || 1,
    );
    const Z = X.map((x) => [1, ...x.map((v, j) => (v - this.mu[j]) / this.sd[j])]);
    const D = d + 1;
    const A = Array.from({ length: D }, (_, i) =>
      Array.from(
        { length: D },
        (_, j) => Z.reduce((s, z) => s + z[i] * z[j], 0) + (i === j && i > 0 ? this.lambda : 0),
      ),
    );
    const b = Array.from({ length: D }, (_, i) => Z.reduce((s, z, k) => s + z[i] * y[k], 0));
    this.w = solve(A, b);
  }

  predict(x: readonly number[]): number {
    if (!this.w) return 0;
    let s = this.w[0];
    for (let j = 0; j < x.length; j++) s += this.w[j + 1] * ((x[j] - this.mu[j]) / this.sd[j]);
    return s;
  }
}

/** Gaussian elimination with partial pivoting (A is small and regularized, so non-singular). */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((r, i) => [...r, b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    [M[c], M[p]] = [M[p], M[c]];
    const piv = M[c][c] || 1e-12;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = M[r][c] / piv;
      if (f) for (let k = c; k <= n; k++) M[r][k] -= f * M[c][k];
    }
  }
  return M.map((r, i) => r[n] / (r[i] || 1e-12));
}
