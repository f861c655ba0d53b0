// Elementwise kernels (shaders/elementwise.wgsl, shaders/activation.wgsl) against float64 CPU references:
// add, mul, scale, silu(gate)·up, the four activations, and the row copy into a state tensor (KV append).
import { describe, it } from 'node:test';
import { Graph, Rng, assertClose, run, testGpu } from '../helpers.ts';
import { ACT, activation, add, copyRows, mul, scale, siluMul, type Activation } from '../../src/ops/elementwise.ts';
import { act64 } from './reference.ts';

// 1, 257 (one past a 256-invocation workgroup), 1000, and 70000 (274 workgroups).
const SIZES = [1, 257, 1000, 70000];

// add / mul / scale are single correctly rounded f32 operations: relative error <= 2^-24 ≈ 6e-8.
const EXACT = { atol: 0, rtol: 6e-8 };
// Activations: exp in f32 has relative error ~|arg|·2^-24 (≤ ~17·6e-8 ≈ 1e-6 for |x| <= 10), and the
// erf approximation has |error| < 1.2e-7, i.e. an absolute error of up to 0.5·|x|·1.2e-7 ≈ 6e-7 in
// gelu_erf at |x| = 10, where outputs near 0 (large negative x) make that error relative: atol 2e-6.
const ACT_TOL = { atol: 2e-6, rtol: 1e-5 };

/** Uniform in [−10, 10], with the endpoints, 0 and ±small values in the first few entries. */
function inputs(rng: Rng, n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.next() * 2 - 1) * 10;
  const special = [-10, 10, 0, 1e-3, -1e-3, -5.5, 5.5];
  for (let i = 0; i < Math.min(n, special.length); i++) a[i] = special[i];
  return a;
}

function map64(n: number, f: (i: number) => number): Float64Array {
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) y[i] = f(i);
  return y;
}

describe('elementwise binary and scale', () => {
  for (const n of SIZES) {
    it(`add, mul, scale, siluMul over ${n} elements`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(n);
      const g = new Graph();
      // A 2-D shape when possible, to show the kernels are flat over all dimensions.
      const shape = n % 5 === 0 ? [5, n / 5] : [n];
      const av = inputs(rng, n);
      const bv = inputs(rng, n);
      const a = g.input('a', shape, 'f32');
      const b = g.input('b', shape, 'f32');
      const alpha = -0.3125 * Math.PI; // not exact in f32: the kernel reads it as an f32 uniform
      const outs = [add(g, a, b), mul(g, a, b), scale(g, a, alpha), siluMul(g, a, b)];
      const [sum, prod, scaled, swiglu] = await run(gpu, g, outs, [
        [a, av],
        [b, bv],
      ]);
      assertClose(sum, map64(n, (i) => av[i] + bv[i]), EXACT, `add n=${n}`);
      assertClose(prod, map64(n, (i) => av[i] * bv[i]), EXACT, `mul n=${n}`);
      const alpha32 = Math.fround(alpha);
      assertClose(scaled, map64(n, (i) => av[i] * alpha32), EXACT, `scale n=${n}`);
      assertClose(swiglu, map64(n, (i) => act64(av[i], ACT.silu) * bv[i]), ACT_TOL, `siluMul n=${n}`);
    });
  }
});

describe('activation', () => {
  for (const act of ['gelu_tanh', 'gelu_erf', 'quick_gelu', 'silu'] as Activation[]) {
    for (const n of SIZES) {
      it(`${act} over ${n} elements in [−10, 10]`, async () => {
        const gpu = await testGpu();
        const rng = new Rng(n * 13 + ACT[act]);
        const g = new Graph();
        const av = inputs(rng, n);
        const a = g.input('a', [n], 'f32');
        const [out] = await run(gpu, g, [activation(g, a, act)], [[a, av]]);
        assertClose(out, map64(n, (i) => act64(av[i], ACT[act])), ACT_TOL, `${act} n=${n}`);
      });
    }
  }

  it('stays finite for large |x| (±80, ±1e4)', async () => {
    // The tanh-GELU cubic overflows exp for |x| ~ 50 if computed naively; sigmoid of a non-positive
    // argument never does. Large positive x → x, large negative → 0.
    const gpu = await testGpu();
    const xs = new Float32Array([-1e4, -80, -30, 30, 80, 1e4]);
    for (const act of ['gelu_tanh', 'gelu_erf', 'quick_gelu', 'silu'] as Activation[]) {
      const g = new Graph();
      const a = g.input('a', [xs.length], 'f32');
      const [out] = await run(gpu, g, [activation(g, a, act)], [[a, xs]]);
      assertClose(out, map64(xs.length, (i) => act64(xs[i], ACT[act])), { atol: 1e-6, rtol: 1e-6 }, `${act} large |x|`);
    }
  });
});

describe('copyRows into a state tensor', () => {
  // [state rows S, row width W, source rows n, step.pos]: the source lands at rows pos .. pos + n.
  for (const [S, W, n, pos] of [
    [1, 1, 1, 0],
    [20, 7, 3, 5],
    [10, 64, 1, 9],
    [8, 300, 8, 0],
    [300, 257, 40, 123],
  ] as [number, number, number, number][]) {
    it(`state [${S}, ${W}] ← ${n} rows at pos ${pos}`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(S * 31 + W * 7 + n);
      const buffer = gpu.pool.create(S * W * 4); // WebGPU zero-fills new buffers
      try {
        const g = new Graph();
        const state = g.state('cache', [S, W], 'f32', buffer);
        const srcv = rng.array(n * W);
        const src = g.input('src', [n, W], 'f32');
        await run(gpu, g, [copyRows(g, src, state, (p) => p)], [[src, srcv]], { pos });
        const got = await gpu.pool.readF32(buffer, S * W);
        const want = new Float64Array(S * W); // zeros outside the written rows
        for (let i = 0; i < n * W; i++) want[pos * W + i] = srcv[i];
        assertClose(got, want, { atol: 0 }, `copyRows pos ${pos}`);
      } finally {
        gpu.pool.destroy(buffer);
      }
    });
  }

  it('appends across two executions (prefill then decode) without touching earlier rows', async () => {
    const gpu = await testGpu();
    const rng = new Rng(99);
    const [S, W] = [16, 33];
    const buffer = gpu.pool.create(S * W * 4);
    try {
      const want = new Float64Array(S * W);
      // Prefill of 5 rows at pos 0, then one decode row at pos 5, then one at pos 6.
      for (const [n, pos] of [
        [5, 0],
        [1, 5],
        [1, 6],
      ]) {
        const g = new Graph();
        const state = g.state('cache', [S, W], 'f32', buffer);
        const srcv = rng.array(n * W);
        const src = g.input('src', [n, W], 'f32');
        await run(gpu, g, [copyRows(g, src, state, (p) => p)], [[src, srcv]], { pos });
        for (let i = 0; i < n * W; i++) want[pos * W + i] = srcv[i];
        assertClose(await gpu.pool.readF32(buffer, S * W), want, { atol: 0 }, `append at pos ${pos}`);
      }
    } finally {
      gpu.pool.destroy(buffer);
    }
  });
});
