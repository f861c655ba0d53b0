// Large activations through the normalisations and softmax: with f16 weights, inputs around 1e4 (whose
// squares overflow f16's 65504 many times over) stay finite and accurate, because every statistic is
// accumulated in f32 and activations are stored in f32.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, Rng, assertClose, run, testGpu, weight } from '../helpers.ts';
import { layerNorm, rmsNorm } from '../../src/ops/norm.ts';
import { softmax } from '../../src/ops/softmax.ts';
import { layerNorm64, rmsNorm64, softmax64 } from '../ops/reference.ts';

const finite = (a: ArrayLike<number>, what: string) => {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) throw new Error(`${what}: element ${i} is ${a[i]}`);
};

it('RMSNorm and LayerNorm with f16 weights on activations ~1e4 stay finite and within tolerance', async () => {
  const gpu = await testGpu();
  const rng = new Rng(10000);
  for (const [rows, D] of [
    [4, 576],
    [3, 1000],
  ]) {
    const g = new Graph();
    const xv = rng.array(rows * D, 1e4);
    const w = await weight(gpu, g, 'w', [D], Float32Array.from(rng.array(D, 0.1), (v) => 1 + v), 'F16');
    const b = await weight(gpu, g, 'b', [D], rng.array(D, 0.1), 'F16');
    const x = g.input('x', [rows, D], 'f32');
    const [rms, ln] = await run(gpu, g, [rmsNorm(g, x, w.t, 1e-5), layerNorm(g, x, w.t, b.t, 1e-6)], [[x, xv]]);
    finite(rms, 'rmsnorm');
    finite(ln, 'layernorm');
    // Outputs are O(1): f32 statistics keep them within a few f32 ulps of the float64 result.
    assertClose(rms, rmsNorm64(xv, w.v, rows, D, 1e-5), { atol: 1e-5, rtol: 1e-5 }, `rmsnorm ${rows}×${D}`);
    assertClose(ln, layerNorm64(xv, w.v, b.v, rows, D, 1e-6), { atol: 1e-5, rtol: 1e-5 }, `layernorm ${rows}×${D}`);
  }
});

it('softmax over logits ~±1e4 stays finite, sums to 1 and matches float64', async () => {
  const gpu = await testGpu();
  const rng = new Rng(4);
  const [rows, D] = [5, 333];
  const g = new Graph();
  const xv = rng.array(rows * D, 1e4);
  const x = g.input('x', [rows, D], 'f32');
  const [y] = await run(gpu, g, [softmax(g, x)], [[x, xv]]);
  finite(y, 'softmax');
  assertClose(y, softmax64(xv, rows, D), { atol: 1e-6, rtol: 1e-4 }, 'softmax ±1e4');
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < D; i++) s += y[r * D + i];
    assert.ok(Math.abs(s - 1) < 1e-5, `row ${r} sums to ${s}`);
  }
});
