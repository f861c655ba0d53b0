// Rotary position embedding (shaders/rope.wgsl), HF rotate_half convention, against a float64 reference:
//   i < d/2:  out[i] = x[i]·cos θ − x[i+d/2]·sin θ,  out[i+d/2] = x[i+d/2]·cos θ + x[i]·sin θ,
//   θ = (step.pos + t) · inv_freq[i], inv_freq from ropeInvFreq (f32, as transformers computes it).
import { describe, it } from 'node:test';
import { Graph, Rng, run, testGpu } from '../helpers.ts';
import { rope, ropeQKV, ropeInvFreq } from '../../src/ops/rope.ts';
import { rope64 } from './reference.ts';

/** Asserts |got − want| <= tol elementwise; reports the worst error relative to its tolerance. */
function assertWithin(got: ArrayLike<number>, want: ArrayLike<number>, tol: ArrayLike<number>, label: string) {
  if (got.length !== want.length) throw new Error(`${label}: length ${got.length}, expected ${want.length}`);
  let maxAbs = 0;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    if (!(e <= tol[i])) {
      throw new Error(`${label}: index ${i}: got ${got[i]}, expected ${want[i]} (|Δ| ${e.toExponential(3)} > tolerance ${tol[i].toExponential(3)})`);
    }
    maxAbs = Math.max(maxAbs, e);
  }
  return { maxAbs };
}

describe('ropeInvFreq', () => {
  it('is 1 / theta^(2i/d) rounded to f32', () => {
    const inv = ropeInvFreq(10000, 8);
    const want = [1, 0.1, 0.01, 0.001].map(Math.fround);
    for (let i = 0; i < 4; i++) {
      if (Math.abs(inv[i] - want[i]) > 1e-7 * want[i]) throw new Error(`inv_freq[${i}] = ${inv[i]}, expected ${want[i]}`);
    }
  });
});

describe('rope', () => {
  // [T, heads, d]
  const shapes: [number, number, number][] = [
    [1, 1, 2],
    [5, 3, 16],
    [33, 4, 64],
    [7, 2, 80],
  ];
  for (const theta of [10000, 100000]) {
    for (const [T, heads, d] of shapes) {
      for (const pos of [0, 37]) {
        it(`T=${T} heads=${heads} d=${d} theta=${theta} pos=${pos}`, async () => {
          const gpu = await testGpu();
          const rng = new Rng(T * 1000 + heads * 100 + d + pos + theta);
          const g = new Graph();
          const xv = rng.array(T * heads * d);
          const inv = ropeInvFreq(theta, d);
          const x = g.input('x', [T, heads * d], 'f32');
          const f = g.input('inv_freq', [d / 2], 'f32');
          const [out] = await run(gpu, g, [rope(g, x, f, heads)], [[x, xv], [f, inv]], { pos });
          const { y, tol } = rope64(xv, inv, T, heads, d, pos);
          assertWithin(out, y, tol, `rope T=${T} heads=${heads} d=${d} pos=${pos}`);
        });
      }
    }
  }

  it('positions around 5000 (decode deep into a context), tolerance from f32 angle rounding', async () => {
    // θ = 5000..5004 · inv_freq: the kernel's f32 θ is off by up to halfUlp(θ) = 2^-12 ≈ 2.4e-4 rad for
    // i = 0 (inv_freq 1), which the per-element tolerance of rope64 accounts for.
    const gpu = await testGpu();
    const rng = new Rng(5000);
    const [T, heads, d] = [5, 2, 64];
    const g = new Graph();
    const xv = rng.array(T * heads * d);
    const inv = ropeInvFreq(10000, d);
    const x = g.input('x', [T, heads * d], 'f32');
    const f = g.input('inv_freq', [d / 2], 'f32');
    const [out] = await run(gpu, g, [rope(g, x, f, heads)], [[x, xv], [f, inv]], { pos: 5000 });
    const { y, tol } = rope64(xv, inv, T, heads, d, 5000);
    assertWithin(out, y, tol, 'rope pos 5000');
  });

  it('inv_freq as an uploaded weight tensor', async () => {
    const gpu = await testGpu();
    const rng = new Rng(17);
    const [T, heads, d] = [3, 2, 32];
    const g = new Graph();
    const xv = rng.array(T * heads * d);
    const inv = ropeInvFreq(100000, d);
    const f = g.weight('inv_freq', [d / 2], 'f32', [{ buffer: gpu.pool.upload(inv), row0: 0, rows: d / 2 }]);
    const x = g.input('x', [T, heads * d], 'f32');
    const [out] = await run(gpu, g, [rope(g, x, f, heads)], [[x, xv]], { pos: 11 });
    const { y, tol } = rope64(xv, inv, T, heads, d, 11);
    assertWithin(out, y, tol, 'rope weight inv_freq');
    gpu.pool.destroy(f.chunks![0].buffer);
  });
});

describe('ropeQKV: q and k rotated, keys and values appended to the caches, in one dispatch', () => {
  // [cache rows S, T, heads, kvHeads, d, pos]; the input is the fused projection's [T, (heads + 2·kvHeads)·d].
  for (const [S, T, heads, kvHeads, d, pos] of [
    [8, 1, 1, 1, 2, 0],
    [40, 5, 3, 1, 16, 20],
    [100, 33, 4, 2, 64, 67],
    [64, 1, 9, 3, 64, 63],
  ] as [number, number, number, number, number, number][]) {
    it(`T=${T} heads=${heads}/${kvHeads} d=${d} into caches of ${S} rows at pos ${pos}`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(S * 3 + T * 10 + pos + heads);
      const W = kvHeads * d;
      const R = (heads + 2 * kvHeads) * d;
      const kbuf = gpu.pool.create(S * W * 4); // zero-filled
      const vbuf = gpu.pool.create(S * W * 4);
      try {
        const g = new Graph();
        const cache = { k: g.state('k_cache', [S, W], 'f32', kbuf), v: g.state('v_cache', [S, W], 'f32', vbuf) };
        const xv = rng.array(T * R);
        // The q, k and v parts of every row.
        const part = (c0: number, w: number) => Float32Array.from({ length: T * w }, (_, i) => xv[Math.floor(i / w) * R + c0 + (i % w)]);
        const [qv, kv, vv] = [part(0, heads * d), part(heads * d, W), part(heads * d + W, W)];
        const inv = ropeInvFreq(10000, d);
        const x = g.input('qkv', [T, R], 'f32');
        const f = g.input('inv_freq', [d / 2], 'f32');
        const out = ropeQKV(g, x, f, heads, kvHeads, cache);
        const [qr] = await run(gpu, g, [out.q, out.k, out.v], [[x, xv], [f, inv]], { pos });
        const wantQ = rope64(qv, inv, T, heads, d, pos);
        assertWithin(qr, wantQ.y, wantQ.tol, 'rotated q');
        const wantK = rope64(kv, inv, T, kvHeads, d, pos);
        const kWant = new Float64Array(S * W);
        const kTol = new Float64Array(S * W); // exact zeros outside the written rows
        kWant.set(wantK.y, pos * W);
        kTol.set(wantK.tol, pos * W);
        assertWithin(await gpu.pool.readF32(kbuf, S * W), kWant, kTol, 'key cache');
        const vWant = new Float64Array(S * W);
        vWant.set(vv, pos * W);
        assertWithin(await gpu.pool.readF32(vbuf, S * W), vWant, new Float64Array(S * W), 'value cache (exact copy)');
      } finally {
        gpu.pool.destroy(kbuf);
        gpu.pool.destroy(vbuf);
      }
    });
  }
});
