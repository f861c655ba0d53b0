// The linear kernels (tiled, split-K, gemv, rows on both tile sets), the fused SwiGLU gemv and the
// embedding gather reading q4 / q8 weights, against float64 products over the same dequantized weights
// ((q − z)·s, exact in f32). Awkward N, K a multiple of the group but not of the tiles, every bit width,
// group sizes 8 to 128, with stored zeros and with the implicit midpoint.
import { describe, it } from 'node:test';
import { Graph, Rng, assertClose, run, testGpu } from '../helpers.ts';
import { quantWeight } from '../data.ts';
import { linear } from '../../src/ops/matmul.ts';
import { gluGemv } from '../../src/ops/gemv.ts';
import { embed } from '../../src/ops/embedding.ts';
import { ACT } from '../../src/ops/elementwise.ts';
import { TUNINGS } from '../../src/gpu/tuning.ts';
import type { QuantSpec } from '../../src/io/quant.ts';
import { linear64 } from './reference.ts';

// f32 accumulation in another order than float64: the error grows like sqrt(K)·eps·max|x·w|. Scales are
// drawn so that |w| ≤ 0.75 for either bit width (as real scales are amax / (2^(bits−1) − 1)).
const TOL = { atol: 3e-5, rtol: 1e-5 };

const SPECS: QuantSpec[] = [
  { bits: 4, group: 32, zeros: false },
  { bits: 4, group: 128, zeros: true },
  { bits: 8, group: 32, zeros: false },
  { bits: 8, group: 64, zeros: true },
  { bits: 4, group: 8, zeros: true },
];

function scaleFor(spec: QuantSpec): number {
  return 0.05 / (1 << (spec.bits - 4));
}

/** K: a multiple of the group that is not a multiple of the 16-wide K step or the 64-wide tiles. */
function kFor(spec: QuantSpec, M: number): number {
  return spec.group * (spec.group >= 64 ? 3 : M === 1 ? 13 : 7);
}

describe('quantized weights in the linear kernels', () => {
  for (const spec of SPECS) {
    const name = `q${spec.bits} g${spec.group}${spec.zeros ? ' zeros' : ''}`;
    for (const variant of ['tiled', 'splitk', 'gemv', 'rows'] as const) {
      for (const [M, N] of [[1, 67], [3, 131], [65, 5]] as [number, number][]) {
        if (variant === 'gemv' && M > 4) continue;
        const K = variant === 'splitk' ? spec.group * Math.ceil(1100 / spec.group) : kFor(spec, M);
        for (const tuning of variant === 'rows' ? [TUNINGS.cpu, TUNINGS.gpu] : [undefined]) {
          it(`${variant}${tuning ? ` (${tuning.target} tiles)` : ''} ${name} M=${M} N=${N} K=${K} with bias, gelu, residual`, async () => {
            const gpu = await testGpu();
            const rng = new Rng(M * 1000 + N * 10 + K + spec.bits);
            const g = new Graph(tuning);
            const xv = rng.array(M * K);
            const w = quantWeight(gpu, g, 'w', N, K, rng, spec, scaleFor(spec));
            const bv = rng.array(N, 0.1);
            const resv = rng.array(M * N);
            const b = g.weight('b', [N], 'f32', [{ buffer: gpu.pool.upload(bv, 'b'), row0: 0, rows: N }]);
            const x = g.input('x', [M, K], 'f32');
            const res = g.input('res', [M, N], 'f32');
            const y = linear(g, x, w.t, { bias: b, act: 'gelu_tanh', residual: res, variant });
            const [out] = await run(gpu, g, [y], [[x, xv], [res, resv]]);
            assertClose(out, linear64(xv, w.v, M, N, K, Float64Array.from(bv), ACT.gelu_tanh, resv), TOL, `${variant} ${name}`);
          });
        }
      }
    }

    for (const tuning of Object.values(TUNINGS)) {
      it(`gemv_glu (${tuning.target} tiles) ${name}: silu(x·gateᵀ)·(x·upᵀ)`, async () => {
        const gpu = await testGpu();
        const rng = new Rng(spec.group + spec.bits);
        const [M, N, K] = [2, 70, kFor(spec, 2)];
        const g = new Graph(tuning);
        const xv = rng.array(M * K);
        const gate = quantWeight(gpu, g, 'gate', N, K, rng, spec, scaleFor(spec));
        const up = quantWeight(gpu, g, 'up', N, K, rng, spec, scaleFor(spec));
        const x = g.input('x', [M, K], 'f32');
        const [out] = await run(gpu, g, [gluGemv(g, x, gate.t, up.t)], [[x, xv]]);
        const gv = linear64(xv, gate.v, M, N, K, undefined, ACT.silu);
        const uv = linear64(xv, up.v, M, N, K);
        assertClose(out, gv.map((v, i) => v * uv[i]), TOL, `gemv_glu ${name}`);
      });
    }

    it(`embedding gather from a ${name} table`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(31 + spec.bits);
      const [V, D] = [37, spec.group * 3];
      const g = new Graph();
      const table = quantWeight(gpu, g, 'table', V, D, rng, spec);
      const idv = Uint32Array.from([0, 36, 5, 5, 17, 1, 30]);
      const ids = g.input('ids', [idv.length], 'u32');
      const [out] = await run(gpu, g, [embed(g, ids, table.t)], [[ids, idv]]);
      const want = new Float64Array(idv.length * D);
      idv.forEach((id, t) => want.set(table.v.subarray(id * D, (id + 1) * D), t * D));
      assertClose(out, want, { atol: 0 }, `embedding ${name}`);
    });
  }

  it('a q4 weight split in chunks above maxStorageBufferBindingSize, in every variant and the gather', async () => {
    // 2 KiB bindings: 150 rows of 64 q4 codes (32 B), 2 scales (4 B) and 2 zeros (1 B) → chunks of 55 rows.
    const gpu = await testGpu({ maxStorageBufferBindingSize: 2048 });
    const spec: QuantSpec = { bits: 4, group: 32, zeros: true };
    const [M, N, K] = [3, 150, 64];
    for (const [variant, tuning] of [['tiled', TUNINGS.gpu], ['gemv', TUNINGS.gpu], ['rows', TUNINGS.cpu]] as const) {
      const rng = new Rng(5);
      const g = new Graph(tuning);
      const w = quantWeight(gpu, g, 'w', N, K, rng, spec);
      if ((w.t.chunks?.length ?? 0) < 2) throw new Error(`expected a split weight, got ${w.t.chunks?.length} chunk(s)`);
      const xv = rng.array(M * K);
      const x = g.input('x', [M, K], 'f32');
      const idv = Uint32Array.from([149, 0, 60]);
      const ids = g.input('ids', [3], 'u32');
      const [out, rows] = await run(gpu, g, [linear(g, x, w.t, { variant }), embed(g, ids, w.t)], [[x, xv], [ids, idv]]);
      assertClose(out, linear64(xv, w.v, M, N, K), TOL, `split ${variant}`);
      const want = new Float64Array(3 * K);
      idv.forEach((id, t) => want.set(w.v.subarray(id * K, (id + 1) * K), t * K));
      assertClose(rows, want, { atol: 0 }, 'split gather');
    }
  });
});
