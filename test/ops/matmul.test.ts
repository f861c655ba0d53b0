// matmul / gemv / projector / patch embedding against a float64 CPU reference.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, Rng, assertClose, run, testGpu, weight } from '../helpers.ts';
import { linear } from '../../src/ops/matmul.ts';
import { ACT } from '../../src/ops/elementwise.ts';
import { pixelShuffleProject } from '../../src/ops/projector.ts';
import { patchEmbed } from '../../src/ops/patch-embed.ts';
import { gluGemv } from '../../src/ops/gemv.ts';
import { act64, linear64, rmsNorm64 } from './reference.ts';
import type { SourceDType } from '../../src/models/storage.ts';
import { TUNINGS } from '../../src/gpu/tuning.ts';

const TOL: Record<SourceDType, { atol: number; rtol: number }> = {
  // f32 accumulation in a different order than float64: error grows like sqrt(K)·eps.
  F32: { atol: 2e-5, rtol: 1e-5 },
  F16: { atol: 2e-5, rtol: 1e-5 },
  BF16: { atol: 2e-5, rtol: 1e-5 },
};


describe('matmul', () => {
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [3, 5, 7],
    [65, 67, 33],
    [130, 70, 100],
    [2, 300, 129],
  ];
  for (const dtype of ['F32', 'F16', 'BF16'] as SourceDType[]) {
    for (const variant of ['tiled', 'gemv', 'splitk', 'rows'] as const) {
      const extra: [number, number, number][] =
        variant === 'splitk' ? [[3, 70, 1500], [65, 5, 2100]] : variant === 'rows' ? [[1, 1, 8], [3, 5, 8], [9, 131, 48], [2, 300, 136], [1, 70, 1504]] : [];
      for (const [M, N, K] of [...shapes, ...extra]) {
        if (variant === 'gemv' && M > 4) continue;
        if (variant === 'rows' && K % 8 !== 0) continue;
        // matmul_rows runs with both devices' tiles (8×4 per 16 lanes for lavapipe, 4×4 per 64 otherwise).
        for (const tuning of variant === 'rows' ? [TUNINGS.cpu, TUNINGS.gpu] : [undefined])
        it(`${variant}${tuning ? ` (${tuning.target} tiles)` : ''} ${dtype} M=${M} N=${N} K=${K} with bias, gelu, residual`, async () => {
          const gpu = await testGpu();
          const rng = new Rng(M * 1000 + N * 10 + K);
          const g = new Graph(tuning);
          const xv = rng.array(M * K);
          const w = await weight(gpu, g, 'w', [N, K], rng.array(N * K, 0.2), dtype);
          const b = await weight(gpu, g, 'b', [N], rng.array(N, 0.1), dtype);
          const resv = rng.array(M * N);
          const x = g.input('x', [M, K], 'f32');
          const res = g.input('res', [M, N], 'f32');
          const y = linear(g, x, w.t, { bias: b.t, act: 'gelu_tanh', residual: res, variant });
          const [out] = await run(gpu, g, [y], [[x, xv], [res, resv]]);
          assertClose(out, linear64(xv, w.v, M, N, K, b.v, ACT.gelu_tanh, resv), TOL[dtype], `matmul ${variant} ${dtype}`);
        });
      }
    }
  }

  // Narrowed or re-rounded on the GPU at load (dtype "f16" / "bf16"): the kernels see the rounded values.
  for (const [dtype, to] of [['F32', 'f16'], ['BF16', 'f16'], ['F32', 'bf16'], ['F16', 'bf16']] as [SourceDType, 'f16' | 'bf16'][]) {
    for (const nativeF16 of to === 'f16' ? [false, true] : [false]) {
      it(`${dtype} weights stored as ${to}${nativeF16 ? ' (native shader-f16)' : ''} match the ${to}-rounded values`, async () => {
        const gpu = await testGpu();
        const rng = new Rng(99);
        const [M, N, K] = [5, 37, 72];
        for (const variant of ['tiled', 'gemv', 'rows'] as const) {
          const g = new Graph();
          const xv = rng.array(M * K);
          const w = await weight(gpu, g, 'w', [N, K], rng.array(N * K, 0.2), dtype, { dtype: to, nativeF16 });
          const want = to === 'bf16' ? 'bf16x2' : nativeF16 && gpu.has('shader-f16') ? 'f16' : 'f16x2';
          if (w.t.dtype !== want) throw new Error(`expected ${want} storage, got ${w.t.dtype}`);
          const x = g.input('x', [M, K], 'f32');
          const [out] = await run(gpu, g, [linear(g, x, w.t, { variant: M > 4 && variant === 'gemv' ? 'tiled' : variant })], [[x, xv]]);
          assertClose(out, linear64(xv, w.v, M, N, K), TOL.F16, `${dtype}→${to} ${variant}`);
        }
      });
    }
  }

  it('splits a weight above maxStorageBufferBindingSize into chunks and matches', async () => {
    // A 4 KiB binding limit forces the 300×40 f32 weight (48 KB) into 12 chunks of 25 rows.
    const gpu = await testGpu({ maxStorageBufferBindingSize: 4096 });
    const rng = new Rng(7);
    const [M, N, K] = [3, 300, 40];
    for (const variant of ['tiled', 'gemv', 'rows'] as const) {
      const g = new Graph(TUNINGS.cpu);
      const xv = rng.array(M * K);
      const w = await weight(gpu, g, 'w', [N, K], rng.array(N * K, 0.2));
      if ((w.t.chunks?.length ?? 0) < 2) throw new Error(`expected a split weight, got ${w.t.chunks?.length} chunk(s)`);
      const x = g.input('x', [M, K], 'f32');
      const [out] = await run(gpu, g, [linear(g, x, w.t, { variant })], [[x, xv]]);
      assertClose(out, linear64(xv, w.v, M, N, K), TOL.F32, `split ${variant}`);
    }
  });

  it('split-K over a weight split into chunks', async () => {
    // 8 KiB binding limit: the 300×40 weight (48 KB) is split in 6 chunks; the split-K scratch (2 × 3 × 300 f32) fits.
    const gpu = await testGpu({ maxStorageBufferBindingSize: 8192 });
    const rng = new Rng(8);
    const [M, N, K] = [3, 300, 40];
    const g = new Graph();
    const xv = rng.array(M * K);
    const w = await weight(gpu, g, 'w', [N, K], rng.array(N * K, 0.2));
    const b = await weight(gpu, g, 'b', [N], rng.array(N, 0.1));
    if ((w.t.chunks?.length ?? 0) < 2) throw new Error(`expected a split weight, got ${w.t.chunks?.length} chunk(s)`);
    const x = g.input('x', [M, K], 'f32');
    const [out] = await run(gpu, g, [linear(g, x, w.t, { bias: b.t, act: 'silu', variant: 'splitk' })], [[x, xv]]);
    assertClose(out, linear64(xv, w.v, M, N, K, b.v, ACT.silu), TOL.F32, 'split-K over chunks');
  });
});

describe('gemv_glu (fused SwiGLU for decode)', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as SourceDType[]) {
    for (const [M, N, K] of [
      [1, 5, 7],
      [3, 70, 129],
      [2, 70, 136],
      [1, 300, 576],
    ]) {
      // The cpu tuning takes gemv_glu_rows where K % 4 == 0 (the gpu one always gemv_glu).
      for (const tuning of Object.values(TUNINGS))
      it(`${dtype} M=${M} N=${N} K=${K} (${tuning.target === 'cpu' && K % 4 === 0 ? 'gemv_glu_rows' : 'gemv_glu'}): silu(x·gateᵀ)·(x·upᵀ)`, async () => {
        const gpu = await testGpu();
        const rng = new Rng(M * 7 + N * 11 + K);
        const g = new Graph(tuning);
        const xv = rng.array(M * K);
        const gate = await weight(gpu, g, 'gate', [N, K], rng.array(N * K, 0.1), dtype);
        const up = await weight(gpu, g, 'up', [N, K], rng.array(N * K, 0.1), dtype);
        const x = g.input('x', [M, K], 'f32');
        const [out] = await run(gpu, g, [gluGemv(g, x, gate.t, up.t)], [[x, xv]]);
        const gv = linear64(xv, gate.v, M, N, K, undefined, ACT.silu);
        const uv = linear64(xv, up.v, M, N, K);
        assertClose(out, gv.map((v, i) => v * uv[i]), TOL[dtype], `gemv_glu ${dtype}`);
      });
    }
  }

  it('over weights split into chunks', async () => {
    const gpu = await testGpu({ maxStorageBufferBindingSize: 4096 });
    const rng = new Rng(77);
    const [M, N, K] = [2, 300, 40];
    for (const tuning of Object.values(TUNINGS)) {
    const g = new Graph(tuning);
    const xv = rng.array(M * K);
    const gate = await weight(gpu, g, 'gate', [N, K], rng.array(N * K, 0.2));
    const up = await weight(gpu, g, 'up', [N, K], rng.array(N * K, 0.2));
    if ((gate.t.chunks?.length ?? 0) < 2) throw new Error('expected split weights');
    const x = g.input('x', [M, K], 'f32');
    const [out] = await run(gpu, g, [gluGemv(g, x, gate.t, up.t)], [[x, xv]]);
    const gv = linear64(xv, gate.v, M, N, K, undefined, ACT.silu);
    const uv = linear64(xv, up.v, M, N, K);
    assertClose(out, gv.map((v, i) => v * uv[i]), TOL.F32, `gemv_glu split (${tuning.target} tuning)`);
    }
  });
});

describe('pixel-shuffle projector', () => {
  for (const [gw, E, s, N] of [
    [4, 3, 2, 5],
    [6, 16, 3, 70],
    [8, 64, 2, 64],
  ]) {
    it(`grid ${gw}×${gw}, E=${E}, scale ${s}, out ${N}`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(gw * E);
      const g = new Graph();
      const seq = gw * gw;
      const xv = rng.array(seq * E);
      const K = E * s * s;
      const w = await weight(gpu, g, 'proj', [N, K], rng.array(N * K, 0.1));
      const x = g.input('x', [seq, E], 'f32');
      const variants = E % 4 === 0 ? (['tiled', 'splitk', 'rows'] as const) : (['tiled', 'splitk'] as const);
      const outs = await run(gpu, g, variants.map((v) => pixelShuffleProject(g, x, w.t, s, 1, v)), [[x, xv]]);
      // Reference: the Idefics3 reshape/permute chain, element by element.
      const M = seq / (s * s);
      const shuffled = new Float32Array(M * K);
      const bw = gw / s;
      for (let r = 0; r < M; r++)
        for (let i = 0; i < s; i++)
          for (let j = 0; j < s; j++)
            for (let c = 0; c < E; c++) {
              const src = ((Math.floor(r / bw) * s + i) * gw + (r % bw) * s + j) * E + c;
              shuffled[r * K + (i * s + j) * E + c] = xv[src];
            }
      const want = linear64(shuffled, w.v, M, N, K);
      variants.forEach((v, i) => assertClose(outs[i], want, TOL.F32, `projector (${v})`));
    });
  }
});

describe('patch embedding', () => {
  for (const [C, H, W, P, D] of [
    [3, 8, 8, 4, 5],
    [3, 24, 16, 8, 70],
    [1, 14, 21, 7, 3],
  ]) {
    // With the cpu tuning, matmul_rows where P and W are multiples of 4 (else the tiled kernel).
    for (const tuning of Object.values(TUNINGS))
    it(`C=${C} ${H}×${W} patch ${P} → D=${D} (${tuning.target} tuning)`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(C * H * W + P);
      const g = new Graph(tuning);
      const n = (H / P) * (W / P);
      const pix = rng.array(C * H * W);
      const w = await weight(gpu, g, 'conv', [D, C, P, P], rng.array(D * C * P * P, 0.1));
      const b = await weight(gpu, g, 'bias', [D], rng.array(D, 0.1));
      const pos = await weight(gpu, g, 'pos', [n, D], rng.array(n * D, 0.1));
      const x = g.input('pixels', [1, C, H, W], 'f32');
      const [out] = await run(gpu, g, [patchEmbed(g, x, w.t, b.t, pos.t)], [[x, pix]]);
      const ref = new Float64Array(n * D);
      const gw = W / P;
      for (let p = 0; p < n; p++)
        for (let d = 0; d < D; d++) {
          let s = b.v[d] + pos.v[p * D + d];
          for (let c = 0; c < C; c++)
            for (let ky = 0; ky < P; ky++)
              for (let kx = 0; kx < P; kx++) {
                const yy = Math.floor(p / gw) * P + ky;
                const xx = (p % gw) * P + kx;
                s += w.v[((d * C + c) * P + ky) * P + kx] * pix[(c * H + yy) * W + xx];
              }
          ref[p * D + d] = s;
        }
      assertClose(out, ref, TOL.F32, 'patch embedding');
    });
  }
});

describe('RMSNorm folded into the linear layer (decode kernels)', () => {
  // linear(x, W, { norm }) = linear(rmsnorm(x)·g, W): folded into gemv, gemv_glu and the rows entries
  // (the sum of squares taken in the same pass as the product), a separate rmsnorm node for tiled.
  const eps = 1e-5;
  for (const dtype of ['F32', 'F16'] as SourceDType[]) {
    for (const [variant, tuning] of [['gemv', TUNINGS.gpu], ['rows', TUNINGS.cpu], ['rows', TUNINGS.gpu], ['tiled', TUNINGS.gpu]] as const) {
      for (const [M, N, K] of [[1, 70, 136], [3, 5, 8], [2, 300, 576]] as [number, number, number][]) {
        it(`${variant} (${tuning.target} tiles) ${dtype} M=${M} N=${N} K=${K} with bias and residual`, async () => {
          const gpu = await testGpu();
          const rng = new Rng(M * 31 + N * 7 + K);
          const g = new Graph(tuning);
          const xv = rng.array(M * K, 2);
          const gv = rng.array(K, 0.2).map((v) => v + 1);
          const w = await weight(gpu, g, 'w', [N, K], rng.array(N * K, 0.2), dtype);
          const nw = await weight(gpu, g, 'norm', [K], gv, dtype);
          const b = await weight(gpu, g, 'b', [N], rng.array(N, 0.1), dtype);
          const resv = rng.array(M * N);
          const x = g.input('x', [M, K], 'f32');
          const res = g.input('res', [M, N], 'f32');
          const y = linear(g, x, w.t, { norm: { weight: nw.t, eps }, bias: b.t, residual: res, variant });
          const folded = g.nodes.length === 1;
          if (folded !== (variant !== 'tiled')) throw new Error(`expected the norm ${variant === 'tiled' ? 'as a node of its own' : 'folded'}, got ${g.nodes.length} node(s)`);
          const [out] = await run(gpu, g, [y], [[x, xv], [res, resv]]);
          const h = Float32Array.from(rmsNorm64(xv, nw.v, M, K, eps));
          assertClose(out, linear64(h, w.v, M, N, K, b.v, ACT.none, resv), TOL[dtype], `folded norm ${variant} ${dtype}`);
        });
      }
    }
  }

  for (const tuning of Object.values(TUNINGS)) {
    it(`gemv_glu with the norm folded (${tuning.target} tuning)`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(5);
      const [M, N, K] = [2, 130, 96];
      const g = new Graph(tuning);
      const xv = rng.array(M * K, 2);
      const nv = rng.array(K, 0.2).map((v) => v + 1);
      const gate = await weight(gpu, g, 'gate', [N, K], rng.array(N * K, 0.1));
      const up = await weight(gpu, g, 'up', [N, K], rng.array(N * K, 0.1));
      const nw = await weight(gpu, g, 'norm', [K], nv);
      const x = g.input('x', [M, K], 'f32');
      const [out] = await run(gpu, g, [gluGemv(g, x, gate.t, up.t, { weight: nw.t, eps })], [[x, xv]]);
      const h = Float32Array.from(rmsNorm64(xv, nw.v, M, K, eps));
      const gl = linear64(h, gate.v, M, N, K, undefined, ACT.silu);
      const ul = linear64(h, up.v, M, N, K);
      assertClose(out, gl.map((v, i) => v * ul[i]), TOL.F32, `gemv_glu folded norm (${tuning.target})`);
    });
  }
});

describe('gemv and gemv_glu row sums with and without subgroups', () => {
  // Where the adapter offers subgroups of at most 32 lanes (lavapipe: 8, so four per 32-lane row), the
  // GPU decode kernels sum rows with subgroupAdd; noSubgroups keeps the shared-memory tree.
  for (const noSubgroups of [false, true]) {
    it(`${noSubgroups ? 'shared-memory tree' : 'subgroupAdd where offered'}: gemv with folded norm, gemv_glu`, async () => {
      const gpu = await testGpu({ noSubgroups });
      if (noSubgroups) assert.equal(gpu.subgroupReduce, false);
      else assert.equal(gpu.subgroupReduce, gpu.has('subgroups') && (gpu.info.subgroupMaxSize ?? 64) <= 32);
      const rng = new Rng(noSubgroups ? 1 : 2);
      const [M, N, K] = [3, 77, 300];
      const g = new Graph(TUNINGS.gpu);
      const xv = rng.array(M * K);
      const nv = rng.array(K, 0.2).map((v) => v + 1);
      const w = await weight(gpu, g, 'w', [N, K], rng.array(N * K, 0.1));
      const up = await weight(gpu, g, 'up', [N, K], rng.array(N * K, 0.1));
      const nw = await weight(gpu, g, 'norm', [K], nv);
      const x = g.input('x', [M, K], 'f32');
      const outs = await run(gpu, g, [linear(g, x, w.t, { variant: 'gemv', norm: { weight: nw.t, eps: 1e-6 } }), gluGemv(g, x, w.t, up.t)], [[x, xv]]);
      const h = Float32Array.from(rmsNorm64(xv, nw.v, M, K, 1e-6));
      assertClose(outs[0], linear64(h, w.v, M, N, K), TOL.F32, 'gemv');
      const gl = linear64(xv, w.v, M, N, K, undefined, ACT.silu);
      const ul = linear64(xv, up.v, M, N, K);
      assertClose(outs[1], gl.map((v, i) => v * ul[i]), TOL.F32, 'gemv_glu');
    });
  }
});

describe('tiled matmul with other workgroup shapes (override constants)', () => {
  // 8×4 invocations (32×32 tiles) and 16×8 (32×64): tiles not square, edges not multiples of them.
  for (const tiled of [{ TWX: 8, TWY: 4 }, { TWX: 16, TWY: 8 }]) {
    for (const variant of ['tiled', 'splitk'] as const) {
      it(`${variant} with a ${tiled.TWX}×${tiled.TWY} workgroup`, async () => {
        const gpu = await testGpu();
        const rng = new Rng(tiled.TWX * 100 + tiled.TWY);
        const [M, N, K] = variant === 'splitk' ? [5, 70, 1500] : [45, 70, 33];
        const g = new Graph({ ...TUNINGS.gpu, tiled });
        const xv = rng.array(M * K);
        const w = await weight(gpu, g, 'w', [N, K], rng.array(N * K, 0.2));
        const b = await weight(gpu, g, 'b', [N], rng.array(N, 0.1));
        const x = g.input('x', [M, K], 'f32');
        const [out] = await run(gpu, g, [linear(g, x, w.t, { bias: b.t, act: 'gelu_tanh', variant })], [[x, xv]]);
        assertClose(out, linear64(xv, w.v, M, N, K, b.v, ACT.gelu_tanh), TOL.F32, `${variant} ${tiled.TWX}×${tiled.TWY}`);
      });
    }
  }
});
