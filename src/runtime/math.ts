// Transcendental functions that WebAssembly lacks. Kernels import them as (f64) -> f64 from module "math";
// the compiler's constant folder runs the same kernels, so both paths share these definitions.

/** erf with fractional error below 1.2e-7 (Chebyshev fit of erfc, Numerical Recipes `erfcc`). */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - r : r - 1;
}

export const UNARY_MATH = {
  exp: Math.exp,
  log: Math.log,
  sin: Math.sin,
  cos: Math.cos,
  tan: Math.tan,
  asin: Math.asin,
  acos: Math.acos,
  atan: Math.atan,
  sinh: Math.sinh,
  cosh: Math.cosh,
  tanh: Math.tanh,
  asinh: Math.asinh,
  acosh: Math.acosh,
  atanh: Math.atanh,
  erf,
} as const;
export const BINARY_MATH = {
  pow: Math.pow,
  fmod: (a: number, b: number) => a % b,
} as const;

export type UnaryMathFn = keyof typeof UNARY_MATH;
export type BinaryMathFn = keyof typeof BINARY_MATH;

/** The import object a kernel module expects, besides its memory. */
export function mathImports(): Record<string, (...a: number[]) => number> {
  return { ...UNARY_MATH, ...BINARY_MATH };
}
