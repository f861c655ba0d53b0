// Elementwise kernels (shaders/elementwise.wgsl, shaders/activation.wgsl) against float64 CPU references:
// add, silu(gate)·up, the four activations, and the row slice.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, Rng, assertClose, run, testGpu } from '../helpers.ts';
import { ACT, activation, add, siluMul, sliceRows, type Activation } from '../../src/ops/elementwise.ts';
import { act64 } from './reference.ts';

// 1, 257 (one past a 256-invocation workgroup), 1000, and 70000 (274 workgroups).
const SIZES = [1, 257, 1000, 70000];

// add is a single correctly rounded f32 operation: relative error <= 2^-24 ≈ 6e-8.
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

describe('elementwise binary', () => {
  for (const n of SIZES) {
    it(`add, siluMul over ${n} elements`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(n);
      const g = new Graph();
      // A 2-D shape when possible, to show the kernels are flat over all dimensions.
      const shape = n % 5 === 0 ? [5, n / 5] : [n];
      const av = inputs(rng, n);
      const bv = inputs(rng, n);
      const a = g.input('a', shape, 'f32');
      const b = g.input('b', shape, 'f32');
      const outs = [add(g, a, b), siluMul(g, a, b)];
      const [sum, swiglu] = await run(gpu, g, outs, [
        [a, av],
        [b, bv],
      ]);
      assertClose(sum, map64(n, (i) => av[i] + bv[i]), EXACT, `add n=${n}`);
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

describe('sliceRows', () => {
  // [rows R, width W, first row, count]: odd widths take the f32 path, multiples of 4 the vec4 one.
  for (const [R, W, start, count] of [
    [1, 1, 0, 1],
    [20, 7, 5, 3],
    [10, 64, 9, 1],
    [8, 300, 0, 8],
    [300, 257, 123, 40],
  ] as [number, number, number, number][]) {
    it(`rows ${start}..${start + count} of [${R}, ${W}]`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(R * 31 + W * 7 + count);
      const g = new Graph();
      const xv = rng.array(R * W);
      const x = g.input('x', [R, W], 'f32');
      const [got] = await run(gpu, g, [sliceRows(g, x, start, count)], [[x, xv]]);
      assertClose(got, Float64Array.from(xv.subarray(start * W, (start + count) * W)), { atol: 0 }, `sliceRows ${start}+${count}`);
    });
  }

  it('refuses rows past the end', () => {
    const g = new Graph();
    assert.throws(() => sliceRows(g, g.input('x', [4, 8], 'f32'), 3, 2), /rows 3\.\.5 of a 4-row tensor/);
  });
});
