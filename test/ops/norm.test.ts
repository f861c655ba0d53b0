// RMSNorm and LayerNorm (shaders/norm.wgsl) against a float64 CPU reference.
import { describe, it } from 'node:test';
import { Graph, Rng, assertClose, run, testGpu, weight } from '../helpers.ts';
import { layerNorm, rmsNorm } from '../../src/ops/norm.ts';

// 'workgroup': one workgroup per row with a shared-memory reduction (GPUs); 'rows': every invocation
// takes the row's statistics itself (SIMD-on-CPU devices), for widths that are multiples of 4.
const VARIANTS = ['workgroup', 'rows'] as const;
const fits = (variant: (typeof VARIANTS)[number], D: number) => variant === 'workgroup' || D % 4 === 0;
import type { SourceDType } from '../../src/models/storage.ts';
import { rmsNorm64, layerNorm64 } from './reference.ts';

// The reference uses the weight values as the dtype rounds them (weight().v), so storage rounding is
// not an error here and one tolerance serves every dtype. The outputs are O(1) (normalised rows times
// weights of scale ~1); the f32 sums over D <= 1000 terms and inverseSqrt give relative errors of a few
// 1e-7, so 1e-5 leaves an order of magnitude of margin.
const TOL: Record<SourceDType, { atol: number; rtol: number }> = {
  F32: { atol: 1e-5, rtol: 1e-5 },
  F16: { atol: 1e-5, rtol: 1e-5 },
  BF16: { atol: 1e-5, rtol: 1e-5 },
};

const SHAPES: [number, number][] = [
  [1, 1],
  [3, 7],
  [5, 64],
  [17, 300],
  [2, 1000],
];



/** Weights around 1 (as trained norm weights are), so that outputs are O(1). */
function normWeight(rng: Rng, D: number): Float32Array {
  const w = rng.array(D, 0.2);
  for (let i = 0; i < D; i++) w[i] += 1;
  return w;
}

describe('rmsNorm', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as SourceDType[]) {
    for (const [rows, D] of SHAPES) {
      for (const variant of VARIANTS.filter((v) => fits(v, D)))
      it(`${variant} ${dtype} rows=${rows} D=${D}`, async () => {
        const gpu = await testGpu();
        const rng = new Rng(rows * 7919 + D);
        const g = new Graph();
        const eps = 1e-6;
        const xv = rng.array(rows * D, 2);
        const w = await weight(gpu, g, 'w', [D], normWeight(rng, D), dtype);
        const x = g.input('x', [rows, D], 'f32');
        const [out] = await run(gpu, g, [rmsNorm(g, x, w.t, eps, variant)], [[x, xv]]);
        assertClose(out, rmsNorm64(xv, w.v, rows, D, eps), TOL[dtype], `rmsnorm ${variant} ${dtype} [${rows}, ${D}]`);
      });
    }
  }

  for (const variant of VARIANTS)
  it(`${variant}: eps dominates a row of tiny values`, async () => {
    // mean(x²) ~ 1e-12 << eps = 1e-5: the output is ≈ x / sqrt(eps), checking eps is added inside the root.
    const gpu = await testGpu();
    const rng = new Rng(3);
    const [rows, D] = [2, 52];
    const g = new Graph();
    const xv = rng.array(rows * D, 1e-6);
    const w = await weight(gpu, g, 'w', [D], normWeight(rng, D));
    const x = g.input('x', [rows, D], 'f32');
    const [out] = await run(gpu, g, [rmsNorm(g, x, w.t, 1e-5, variant)], [[x, xv]]);
    assertClose(out, rmsNorm64(xv, w.v, rows, D, 1e-5), { atol: 1e-9, rtol: 1e-5 }, 'rmsnorm tiny');
  });
});

describe('layerNorm', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as SourceDType[]) {
    for (const [rows, D] of SHAPES) {
      for (const variant of VARIANTS.filter((v) => fits(v, D)))
      it(`${variant} ${dtype} rows=${rows} D=${D}`, async () => {
        const gpu = await testGpu();
        const rng = new Rng(rows * 104729 + D);
        const g = new Graph();
        const eps = 1e-5;
        // A per-row offset so that the mean is not ~0.
        const xv = rng.array(rows * D, 1.5);
        for (let r = 0; r < rows; r++) {
          const off = rng.normal() * 3;
          for (let i = 0; i < D; i++) xv[r * D + i] += off;
        }
        const w = await weight(gpu, g, 'w', [D], normWeight(rng, D), dtype);
        const b = await weight(gpu, g, 'b', [D], rng.array(D, 0.1), dtype);
        const x = g.input('x', [rows, D], 'f32');
        const [out] = await run(gpu, g, [layerNorm(g, x, w.t, b.t, eps, variant)], [[x, xv]]);
        assertClose(out, layerNorm64(xv, w.v, b.v, rows, D, eps), TOL[dtype], `layernorm ${variant} ${dtype} [${rows}, ${D}]`);
      });
    }
  }

  for (const [rows, D] of [
    [4, 300],
    [2, 1000],
    [3, 129],
  ] as [number, number][]) {
    for (const variant of VARIANTS.filter((v) => fits(v, D)))
    it(`${variant}: activations around 1e4 with offset, rows=${rows} D=${D}: f32 statistics stay accurate`, async () => {
      // x = 1e4 + N(0, 1): the row's std is ~1 while its values are ~1e4. The GPU output is
      // (x − mean)·inv_std·w + b, so its error is (error of the centred value x − mean) / std · |w|: the
      // tolerance is a fraction TAU of the row's std in the centred values, i.e. TAU·max|w| on the output.
      // The f32 mean of D values of ~1e4 has an absolute error of ~log2(D)·2^-24·1e4 ≈ 1e-3 at worst
      // (measured: up to 1.0e-3 of the std), the same order as ulp(1e4)/2 = 4.9e-4 of the inputs themselves;
      // TAU = 5e-3 leaves a 5× margin. A one-pass E[x²] − E[x]² in f32 would be off by ~ulp(1e8) = 8 in
      // the variance, i.e. by O(1) std, far beyond this.
      const TAU = 5e-3;
      const gpu = await testGpu();
      const rng = new Rng(rows * 31 + D);
      const g = new Graph();
      const eps = 1e-6;
      const xv = new Float32Array(rows * D);
      for (let i = 0; i < xv.length; i++) xv[i] = 1e4 + rng.normal();
      const w = await weight(gpu, g, 'w', [D], normWeight(rng, D));
      const b = await weight(gpu, g, 'b', [D], rng.array(D, 0.1));
      const x = g.input('x', [rows, D], 'f32');
      const [out] = await run(gpu, g, [layerNorm(g, x, w.t, b.t, eps, variant)], [[x, xv]]);
      const ref = layerNorm64(xv, w.v, b.v, rows, D, eps);
      let maxW = 0;
      for (let i = 0; i < D; i++) maxW = Math.max(maxW, Math.abs(w.v[i]));
      for (let r = 0; r < rows; r++) {
        let sum = 0;
        for (let i = 0; i < D; i++) sum += xv[r * D + i];
        if (Math.abs(sum / D - 1e4) > 0.5) throw new Error('test data: row mean is not ~1e4');
        const row = (a: ArrayLike<number>) => Array.from({ length: D }, (_, i) => a[r * D + i]);
        assertClose(row(out), row(ref), { atol: TAU * maxW, rtol: 0 }, `layernorm ${variant} 1e4-offset row ${r} (TAU ${TAU} of std, max|w| ${maxW.toFixed(2)})`);
      }
    });
  }
});
