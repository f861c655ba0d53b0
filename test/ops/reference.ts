// Float64 CPU references shared by the kernel tests and the benchmarks (which validate before timing).
import { ACT } from '../../src/ops/elementwise.ts';
import { NEWLINE_ROW, NOT_IMAGE } from '../../src/ops/embedding.ts';

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

export function attention64(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  T: number,
  heads: number,
  kvHeads: number,
  d: number,
  last: (t: number) => number,
  first: (t: number) => number = () => 0,
): Float64Array {
  const out = new Float64Array(T * heads * d);
  const scale = 1 / Math.sqrt(d);
  const group = heads / kvHeads;
  for (let t = 0; t < T; t++)
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      const j0 = first(t);
      const n = last(t) + 1 - j0;
      const s = new Float64Array(n);
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[t * heads * d + h * d + i] * k[(j0 + j) * kvHeads * d + kvh * d + i];
        s[j] = dot * scale;
        m = Math.max(m, s[j]);
      }
      let sum = 0;
      for (let j = 0; j < n; j++) sum += s[j] = Math.exp(s[j] - m);
      for (let i = 0; i < d; i++) {
        let o = 0;
        for (let j = 0; j < n; j++) o += s[j] * v[(j0 + j) * kvHeads * d + kvh * d + i];
        out[t * heads * d + h * d + i] = o / sum;
      }
    }
  return out;
}

export function linear64(x: Float32Array, w: Float64Array, M: number, N: number, K: number, b?: Float64Array, act = 0, res?: Float32Array) {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      if (b) s += b[n];
      s = act64(s, act);
      if (res) s += res[m * N + n];
      y[m * N + n] = s;
    }
  return y;
}

export function rmsNorm64(x: Float32Array, w: Float64Array, rows: number, D: number, eps: number): Float64Array {
  const y = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[r * D + i] ** 2;
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) y[r * D + i] = x[r * D + i] * inv * w[i];
  }
  return y;
}

export function layerNorm64(x: Float32Array, w: Float64Array, b: Float64Array, rows: number, D: number, eps: number): Float64Array {
  const y = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < D; i++) s += x[r * D + i];
    const mean = s / D;
    let v = 0;
    for (let i = 0; i < D; i++) v += (x[r * D + i] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / D + eps); // biased variance, as torch
    for (let i = 0; i < D; i++) y[r * D + i] = (x[r * D + i] - mean) * inv * w[i] + b[i];
  }
  return y;
}

/** Half a unit in the last place of |v| as an f32 (the rounding error bound of an f32 result). */
export function halfUlpF32(v: number): number {
  const a = Math.abs(v);
  if (a < 2 ** -126) return 2 ** -150;
  return 2 ** (Math.floor(Math.log2(a)) - 24);
}

// sin/cos of an f32 angle and the two products and one sum in f32: a few f32 ulps of O(|x|) values.
export const BASE_ATOL = 2e-6;

/**
 * The reference, with θ = pos·inv_freq in float64 from the f32 inv_freq the kernel reads. The kernel's θ is
 * f32(pos)·inv_freq rounded to f32, off by up to halfUlp(θ) (2^-18 ≈ 3.8e-6 rad for θ in [64, 128), and
 * 2^-12 ≈ 2.4e-4 rad for θ ~ 5000); an angle error δ moves each output by at most (|x1| + |x2|)·δ. So each
 * element's tolerance is (|x1| + |x2|)·halfUlp(θ) + BASE_ATOL, which for positions < 100 and |x| ~ 1 is
 * ~1e-5, and grows with the position as f32 angles do (the same as HF's f32 `inv_freq @ position_ids`).
 */

export function rope64(x: Float32Array, inv: Float32Array, T: number, heads: number, d: number, pos0: number) {
  const y = new Float64Array(T * heads * d);
  const tol = new Float64Array(T * heads * d);
  const half = d / 2;
  for (let t = 0; t < T; t++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < half; i++) {
        const theta = (pos0 + t) * inv[i];
        const c = Math.cos(theta);
        const s = Math.sin(theta);
        const o = t * heads * d + h * d + i;
        const x1 = x[o];
        const x2 = x[o + half];
        y[o] = x1 * c - x2 * s;
        y[o + half] = x2 * c + x1 * s;
        tol[o] = tol[o + half] = (Math.abs(x1) + Math.abs(x2)) * halfUlpF32(theta) + BASE_ATOL;
      }
  return { y, tol };
}

/** torch.argmax of the last row: the lowest index of the maximum, a NaN above every number (the first NaN). */
export function argmax64(x: Float32Array, R: number, V: number): number {
  const base = (R - 1) * V;
  let best = 0;
  for (let i = 1; i < V && !Number.isNaN(x[base + best]); i++) if (Number.isNaN(x[base + i]) || x[base + i] > x[base + best]) best = i;
  return best;
}

/**
 * The k largest of the last row in order (ties to the lowest index, NaN first, −0 equal to +0), and the
 * row's softmax mass at temperature T in float64, Σ exp((l − max) / T) (NaN unless the max is finite).
 */
export function topK64(x: Float32Array, R: number, V: number, k: number, T: number): { ids: number[]; mass: number } {
  const row = x.subarray((R - 1) * V, R * V);
  const rank = (i: number) => (Number.isNaN(row[i]) ? Infinity : row[i]);
  const ids = Array.from(row.keys()).sort((a, b) => {
    const [ra, rb] = [rank(a), rank(b)];
    if (Number.isNaN(row[a]) !== Number.isNaN(row[b])) return Number.isNaN(row[a]) ? -1 : 1;
    return ra === rb ? a - b : rb > ra ? 1 : -1;
  });
  const m = row[ids[0]];
  let mass = 0;
  for (const v of row) mass += Math.exp((v - m) / T);
  return { ids: ids.slice(0, k), mass: Number.isFinite(m) ? mass : NaN };
}

export function softmax64(x: Float32Array, rows: number, D: number): Float64Array {
  const y = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let i = 0; i < D; i++) m = Math.max(m, x[r * D + i]);
    let s = 0;
    for (let i = 0; i < D; i++) s += Math.exp(x[r * D + i] - m);
    for (let i = 0; i < D; i++) y[r * D + i] = Math.exp(x[r * D + i] - m) / s;
  }
  return y;
}

export function embed64(
  ids: Uint32Array,
  table: Float64Array,
  D: number,
  imgRow?: Uint32Array,
  features?: Float32Array,
  newline?: Float32Array,
): Float64Array {
  const out = new Float64Array(ids.length * D);
  for (let t = 0; t < ids.length; t++)
    for (let i = 0; i < D; i++) {
      const r = imgRow ? imgRow[t] : NOT_IMAGE;
      out[t * D + i] = r === NEWLINE_ROW ? newline![i] : r !== NOT_IMAGE ? features![r * D + i] : table[ids[t] * D + i];
    }
  return out;
}
