// Scaled dot-product attention (shaders/attention.wgsl) against a float64 reference: softmax(q·kᵀ·scale)·v
// per head, bidirectional over [T] keys or causal over a KV cache, grouped-query when kvHeads < heads.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, Rng, assertClose, run, testGpu, weight } from '../helpers.ts';
import { attention, attentionOperand, type AttentionOptions } from '../../src/ops/attention.ts';
import { matmulNode } from '../../src/ops/matmul.ts';
import { TUNINGS } from '../../src/gpu/tuning.ts';
import { Executable } from '../../src/graph/execute.ts';
import { attention64, linear64 } from './reference.ts';

// Each output is a convex combination of |v| <~ 4 values. Scores are f32 dot products of d terms
// (relative error ~sqrt(d)·2^-24 of Σ|q·k|), the online softmax rescales in f32, and the weighted sum of
// up to 130 values accumulates in f32: measured errors are up to ~4e-6 on O(1) outputs. 2e-5 leaves a margin
// while still catching a wrong mask or a dropped key (which changes outputs by O(1e-2) or more).
const TOL = { atol: 2e-5, rtol: 1e-5 };

/**
 * q: [T, heads·d]; k, v: [S, kvHeads·d]. Query t sees keys first(t) .. last(t) inclusive: 0 .. T − 1 for
 * bidirectional, 0 .. pos + t for causal, its own block for block-diagonal. Query head h reads KV head
 * h / (heads / kvHeads).
 */

/** Bidirectional attention over T rows of random q (std qStd), k and v, run once: the inputs and the output. */
async function bidirectional(rng: Rng, T: number, heads: number, kvHeads: number, d: number, opts: Partial<AttentionOptions>, qStd: number) {
  const gpu = await testGpu();
  const g = new Graph();
  const qv = rng.array(T * heads * d, qStd);
  const kv = rng.array(T * kvHeads * d);
  const vv = rng.array(T * kvHeads * d);
  const q = g.input('q', [T, heads * d], 'f32');
  const k = g.input('k', [T, kvHeads * d], 'f32');
  const v = g.input('v', [T, kvHeads * d], 'f32');
  const [out] = await run(gpu, g, [attention(g, q, k, v, { heads, kvHeads, causal: false, ...opts })], [
    [q, qv],
    [k, kv],
    [v, vv],
  ]);
  return { qv, kv, vv, out };
}

describe('attention, bidirectional', () => {
  // [T, heads, kvHeads, d]
  for (const [T, heads, kvHeads, d] of [
    [1, 1, 1, 16],
    [7, 4, 2, 64],
    [65, 6, 1, 80],
    [130, 4, 2, 16],
    [7, 2, 2, 256],
    [65, 4, 4, 80],
  ] as [number, number, number, number][]) {
    // 'rows' = attention_rows, the kernel for SIMD-on-CPU devices (one query row per invocation);
    // 'lanes' = attention_lanes, their decode kernel (the lanes of a workgroup split the keys).
    for (const variant of ['single', 'rows', 'lanes'] as const)
    it(`${variant}: T=${T} heads=${heads} kvHeads=${kvHeads} d=${d}`, async () => {
      // q scaled by 2 so that the softmax is peaked enough for a wrong key to matter.
      const rng = new Rng(T * 7 + heads * 131 + kvHeads * 17 + d);
      const { qv, kv, vv, out } = await bidirectional(rng, T, heads, kvHeads, d, { variant }, 2);
      const ref = attention64(qv, kv, vv, T, heads, kvHeads, d, () => T - 1);
      assertClose(out, ref, TOL, `${variant} bidirectional T=${T} heads=${heads}/${kvHeads} d=${d}`);
    });
  }

  for (const variant of ['single', 'rows'] as const)
  it(`${variant}: a custom scale`, async () => {
    // scale = 1 (instead of 1/sqrt(d)) and q of unit variance: scores of std sqrt(d) = 4, very peaked.
    const [T, heads, kvHeads, d] = [9, 2, 1, 16];
    const { qv, kv, vv, out } = await bidirectional(new Rng(5), T, heads, kvHeads, d, { scale: 1, variant }, 1);
    // Same as the default scale with q multiplied by sqrt(d) (exact: sqrt(16) = 4).
    const q4 = qv.map((x) => x * 4);
    assertClose(out, attention64(q4, kv, vv, T, heads, kvHeads, d, () => T - 1), TOL, 'scale 1');
  });
});

describe('attention, block-diagonal bidirectional (several images at once)', () => {
  // [T, block, heads, kvHeads, d]: query t sees keys ⌊t / block⌋·block .. + block − 1 only.
  for (const [T, block, heads, kvHeads, d] of [
    [12, 4, 2, 1, 16],
    [130, 65, 4, 2, 80], // each block crosses the kernel's 64-key block
    [7, 7, 2, 2, 64], // one block = plain bidirectional
    [130, 65, 4, 2, 16], // rows: workgroups of 16 rows straddle the blocks
  ] as [number, number, number, number, number][]) {
    for (const variant of ['single', 'rows'] as const)
    it(`${variant}: T=${T} block=${block} heads=${heads} kvHeads=${kvHeads} d=${d}`, async () => {
      const { qv, kv, vv, out } = await bidirectional(new Rng(T * 11 + block), T, heads, kvHeads, d, { block, variant }, 2);
      const first = (t: number) => Math.floor(t / block) * block;
      const ref = attention64(qv, kv, vv, T, heads, kvHeads, d, (t) => first(t) + block - 1, first);
      assertClose(out, ref, TOL, `${variant} block-diagonal T=${T} block=${block}`);
    });
  }
});

/**
 * Causal attention of T new queries at positions pos.. over a KV cache of S rows (rows pos + T .. S hold
 * NaN: reading any of them, even times a zero weight, fails), with a sliding window when `window` > 0.
 */
async function checkCausal(variant: 'single' | 'split' | 'rows' | 'lanes', T: number, S: number, pos: number, heads: number, kvHeads: number, d: number, window: number) {
  const gpu = await testGpu();
  const rng = new Rng(T * 7 + S * 3 + pos * 5 + heads * 131 + kvHeads * 17 + d + window * 11);
  const W = kvHeads * d;
  const qv = rng.array(T * heads * d, 2);
  const kv = rng.array(S * W);
  const vv = rng.array(S * W);
  kv.fill(NaN, (pos + T) * W);
  vv.fill(NaN, (pos + T) * W);
  const kbuf = gpu.pool.upload(kv, 'k_cache');
  const vbuf = gpu.pool.upload(vv, 'v_cache');
  try {
    const g = new Graph();
    const q = g.input('q', [T, heads * d], 'f32');
    const k = g.state('k_cache', [S, W], 'f32', kbuf);
    const v = g.state('v_cache', [S, W], 'f32', vbuf);
    // 'split' = split-KV (flash decoding): partial softmax per chunk of keys, then a merge.
    const y = attention(g, q, k, v, { heads, kvHeads, causal: true, variant, window });
    const [out] = await run(gpu, g, [y], [[q, qv]], { pos });
    const first = (t: number) => (window ? Math.max(0, pos + t + 1 - window) : 0);
    const ref = attention64(qv, kv, vv, T, heads, kvHeads, d, (t) => pos + t, first);
    assertClose(out, ref, TOL, `${variant} causal T=${T} pos=${pos} heads=${heads}/${kvHeads} d=${d}${window ? ` window ${window}` : ''}`);
  } finally {
    gpu.pool.destroy(kbuf);
    gpu.pool.destroy(vbuf);
  }
}

describe('attention, causal over a KV cache', () => {
  // [T new tokens, cache rows S, pos = tokens already in the cache, heads, kvHeads, d]. Rows pos + T .. S
  // of the cache are not valid yet and hold NaN: reading any of them (even times a zero weight) fails.
  for (const [T, S, pos, heads, kvHeads, d] of [
    [1, 1, 0, 1, 1, 16], // first token
    [7, 7, 0, 4, 2, 64], // prefill, GQA 2:1
    [65, 80, 0, 6, 1, 80], // prefill crossing the 64-key block, MQA, d not a power of two
    [130, 140, 0, 4, 2, 16], // prefill, three key blocks
    [5, 90, 60, 4, 2, 256], // a chunk at pos 60: keys 0..64 cross the block boundary
    [1, 128, 99, 4, 2, 64], // decode at pos 99
    [1, 100, 99, 6, 1, 80], // decode filling the cache exactly
    [1, 130, 129, 2, 1, 256], // decode, d = 256
  ] as [number, number, number, number, number, number][]) {
    for (const variant of ['single', 'split', 'rows', 'lanes'] as const)
      it(`${variant}: T=${T} S=${S} pos=${pos} heads=${heads} kvHeads=${kvHeads} d=${d}`, () => checkCausal(variant, T, S, pos, heads, kvHeads, d, 0));
  }

  // Mistral's sliding window: [T, S, pos, heads, kvHeads, d, window], windows shorter than, across and
  // longer than the keys a query sees, prefill and decode.
  for (const [T, S, pos, heads, kvHeads, d, window] of [
    [70, 80, 0, 4, 2, 16, 5], // prefill: each query sees its last 5 keys
    [9, 140, 120, 4, 1, 64, 50], // a chunk deep in the cache, window crossing a key block
    [1, 128, 99, 4, 2, 64, 17], // decode
    [1, 40, 30, 2, 1, 16, 64], // a window longer than the sequence: plain causal
  ] as [number, number, number, number, number, number, number][]) {
    for (const variant of ['single', 'split', 'rows', 'lanes'] as const)
      it(`${variant}: sliding window ${window}, T=${T} S=${S} pos=${pos} heads=${heads}/${kvHeads} d=${d}`, () =>
        checkCausal(variant, T, S, pos, heads, kvHeads, d, window),
      );
  }

  for (const variant of ['single', 'split', 'rows', 'lanes'] as const)
  it(`${variant}: one plan reused at successive decode positions`, async () => {
    // The same compiled graph (T = 1) run at pos 3, 64 and 65: kv_len and the mask follow step.pos.
    const gpu = await testGpu();
    const rng = new Rng(64);
    const [S, heads, kvHeads, d] = [70, 4, 2, 64];
    const W = kvHeads * d;
    const kv = rng.array(S * W);
    const vv = rng.array(S * W);
    const kbuf = gpu.pool.upload(kv);
    const vbuf = gpu.pool.upload(vv);
    try {
      const g = new Graph();
      const q = g.input('q', [1, heads * d], 'f32');
      const k = g.state('k_cache', [S, W], 'f32', kbuf);
      const v = g.state('v_cache', [S, W], 'f32', vbuf);
      const y = attention(g, q, k, v, { heads, kvHeads, causal: true, variant });
      const exe = await Executable.compile(gpu, g, [y]);
      try {
        for (const pos of [3, 64, 65]) {
          const qv = rng.array(heads * d, 2);
          exe.write(q, qv);
          exe.run({ pos });
          const out = (await exe.read(y)) as Float32Array;
          assertClose(out, attention64(qv, kv, vv, 1, heads, kvHeads, d, () => pos), TOL, `decode pos ${pos}`);
        }
      } finally {
        exe.dispose();
      }
    } finally {
      gpu.pool.destroy(kbuf);
      gpu.pool.destroy(vbuf);
    }
  });
});

describe('split-KV partials merged by the gemv that reads them (o_proj in decode)', () => {
  // attentionOperand with the gpu tuning in decode returns the partials and matmul.wgsl's a_mode 3;
  // the gemv's product must equal o_proj applied to the attention output.
  for (const [T, S, pos, heads, kvHeads, d, N] of [
    [1, 200, 150, 9, 3, 64, 70],
    [3, 300, 260, 4, 2, 16, 33],
  ] as [number, number, number, number, number, number, number][]) {
    it(`T=${T} over ${pos + T} cached keys, heads=${heads}/${kvHeads} d=${d} → N=${N}`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(T * 13 + S + N);
      const W = kvHeads * d;
      const [qv, kv, vv] = [rng.array(T * heads * d, 2), rng.array(S * W), rng.array(S * W)];
      const kbuf = gpu.pool.upload(kv);
      const vbuf = gpu.pool.upload(vv);
      try {
        const g = new Graph(TUNINGS.gpu);
        const q = g.input('q', [T, heads * d], 'f32');
        const k = g.state('k', [S, W], 'f32', kbuf);
        const v = g.state('v', [S, W], 'f32', vbuf);
        const wo = await weight(gpu, g, 'o_proj', [N, heads * d], rng.array(N * heads * d, 0.1));
        const o = attentionOperand(g, q, k, v, { heads, kvHeads, causal: true });
        assert.equal(o.a.mode, 'attn_partials');
        const y = matmulNode(g, o.x, wo.t, T, o.a);
        const [out] = await run(gpu, g, [y], [[q, qv]], { pos });
        const att = attention64(qv, kv, vv, T, heads, kvHeads, d, (t) => pos + t);
        assertClose(out, linear64(Float32Array.from(att), wo.v, T, N, heads * d), TOL, 'o_proj over merged partials');
      } finally {
        gpu.pool.destroy(kbuf);
        gpu.pool.destroy(vbuf);
      }
    });
  }
});
