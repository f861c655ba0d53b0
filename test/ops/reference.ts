// Float64 CPU references shared by the kernel tests.
import { ACT } from '../../src/ops/elementwise.ts';

function erf64(x: number): number {
  // Abramowitz–Stegun 7.1.26 is too coarse for a reference; use the series / continued fraction.
  const z = Math.abs(x);
  let r: number;
  if (z < 3) {
    let term = z;
    let sum = z;
    for (let n = 1; n < 100; n++) {
      term *= (-z * z) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc continued fraction
    let f = 0;
    for (let n = 60; n >= 1; n--) f = n / 2 / (z + f);
    r = 1 - Math.exp(-z * z) / Math.sqrt(Math.PI) / (z + f);
  }
  return x < 0 ? -r : r;
}

export function act64(x: number, kind: number): number {
  switch (kind) {
    case ACT.gelu_tanh:
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case ACT.gelu_erf:
      return 0.5 * x * (1 + erf64(x / Math.SQRT2));
    case ACT.quick_gelu:
      return x / (1 + Math.exp(-1.702 * x));
    case ACT.silu:
      return x / (1 + Math.exp(-x));
    default:
      return x;
  }
}
