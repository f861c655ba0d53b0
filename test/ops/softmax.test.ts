// Softmax over the last dimension (shaders/softmax.wgsl) against a float64 CPU reference.
import { describe, it } from 'node:test';
import { Graph, Rng, assertClose, run, testGpu } from '../helpers.ts';
import { softmax } from '../../src/ops/softmax.ts';
import { softmax64 } from './reference.ts';

// Outputs lie in [0, 1]. exp(x − max) in f32 has a relative error of ~|x − max|·2^-24 (the argument's
// own rounding), so for logits within ~±20 of the max a relative 1e-5 is ~10× the expected error; the
// absolute 1e-7 covers entries that underflow or are tiny (|x − max| large, where the relative error grows).
const TOL = { atol: 1e-7, rtol: 1e-5 };
// Σ_row of the GPU outputs (summed in float64): each term has relative error <~1e-6, so |Σ − 1| <~1e-6.
const SUM_TOL = 1e-5;


function checkRowSums(out: Float32Array, rows: number, D: number, label: string): void {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < D; i++) {
      const v = out[r * D + i];
      if (!(v >= 0 && v <= 1)) throw new Error(`${label}: row ${r} index ${i} = ${v}, outside [0, 1]`);
      s += v;
    }
    if (!(Math.abs(s - 1) <= SUM_TOL)) throw new Error(`${label}: row ${r} sums to ${s}, |Σ − 1| > ${SUM_TOL}`);
  }
}

/** Both kernels: the workgroup reduction and, where D % 4 == 0, softmax_rows (SIMD-on-CPU devices). */
async function check(rows: number, D: number, xv: Float32Array, label: string): Promise<void> {
  const gpu = await testGpu();
  for (const variant of D % 4 === 0 ? (['workgroup', 'rows'] as const) : (['workgroup'] as const)) {
    const g = new Graph();
    const x = g.input('x', [rows, D], 'f32');
    const [out] = await run(gpu, g, [softmax(g, x, variant)], [[x, xv]]);
    assertClose(out, softmax64(xv, rows, D), TOL, `${label} (${variant})`);
    checkRowSums(out, rows, D, `${label} (${variant})`);
  }
}

describe('softmax', () => {
  for (const [rows, D] of [
    [1, 1],
    [3, 5],
    [4, 128],
    [7, 129],
    [2, 5000],
  ] as [number, number][]) {
    it(`rows=${rows} D=${D}, logits N(0, 3²)`, async () => {
      const rng = new Rng(rows * 1009 + D);
      await check(rows, D, rng.array(rows * D, 3), `softmax [${rows}, ${D}]`);
    });
  }

  it('large logits (±80) do not overflow', async () => {
    // exp(80) = 5.5e34 and Σ over a row would overflow f32 (max 3.4e38) without subtracting the max.
    // Row 0: uniform in [−80, 80]; row 1: all equal to 80 (→ 1/D each); row 2: one logit 80 and the rest
    // −80 (→ ≈ one-hot, the others exp(−160) which underflows to 0 in f32); row 3: all −80 (→ 1/D).
    const rng = new Rng(80);
    const [rows, D] = [4, 300];
    const xv = new Float32Array(rows * D);
    for (let i = 0; i < D; i++) {
      xv[i] = (rng.next() * 2 - 1) * 80;
      xv[D + i] = 80;
      xv[2 * D + i] = i === 123 ? 80 : -80;
      xv[3 * D + i] = -80;
    }
    await check(rows, D, xv, 'softmax ±80');
  });

  it('a row shifted by +1e3 gives the same probabilities', async () => {
    // Shift invariance: logits of ~1e3 are f32-exact integers + N(0,1); the max subtraction keeps the
    // exponent arguments O(1). The reference uses the same f32 inputs.
    const rng = new Rng(1000);
    const [rows, D] = [2, 260];
    const xv = rng.array(rows * D);
    for (let i = 0; i < D; i++) xv[D + i] = xv[i] + 1000;
    await check(rows, D, xv, 'softmax +1e3');
  });
});
