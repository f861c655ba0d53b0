// The attention rows: the vision tower's bidirectional attention, the decoder's causal prefill (with
// and without a sliding window) and decode over the KV cache (single pass, split-KV, and split-KV merged by
// o_proj's gemv); the grouped-query rows' peer is com.microsoft GroupQueryAttention (gqa).
import type { Graph } from '../../src/graph/graph.ts';
import { matmulNode } from '../../src/ops/matmul.ts';
import { attention, attentionOperand } from '../../src/ops/attention.ts';
import { type Rng, weight } from '../../test/data.ts';
import { linear64, attention64 } from '../../test/ops/reference.ts';
import { DT } from '../peers/onnx.ts';
import { TOL, MS, lazy, f32, maxAbs, type HostTensor, type PeerCase, type PeerSide, type Setup, type Shapes } from './common.ts';

/** Seeded queries [Tq, H·d] and keys and values [Tk, KV·d], as the graph inputs q, k, v and their data. */
function qkv(g: Graph, rng: Rng, Tq: number, Tk: number, H: number, KV: number, d: number) {
  const [qv, kv, vv] = [rng.array(Tq * H * d), rng.array(Tk * KV * d), rng.array(Tk * KV * d)];
  const q = g.input('q', [Tq, H * d], 'f32');
  const k = g.input('k', [Tk, KV * d], 'f32');
  const v = g.input('v', [Tk, KV * d], 'f32');
  const inputs: Setup['inputs'] = [[q, qv], [k, kv], [v, vv]];
  return { qv, kv, vv, q, k, v, inputs };
}

/** The vision tower's attention over all patches, bidirectional. */
export function vitAttentionCase(s: Shapes): PeerCase {
  const { vc, patches } = s;
  return {
    name: `vit attention T=${patches} ${vc.num_attention_heads}×${vc.hidden_size / vc.num_attention_heads} bidirectional`,
    kernel: 'attention',
    flops: 4 * patches * patches * vc.hidden_size,
    bytes: 4 * 4 * patches * vc.hidden_size,
    async setup(_gpu, g, rng) {
      const [T, D, H] = [patches, vc.hidden_size, vc.num_attention_heads];
      const { qv, kv, vv, q, k, v, inputs } = qkv(g, rng, T, T, H, H, D / H);
      const ref = lazy(() => attention64(qv, kv, vv, T, H, H, D / H, () => T - 1));
      return {
        outputs: [attention(g, q, k, v, { heads: H, kvHeads: H, causal: false })],
        inputs,
        check: ([y]) => maxAbs(y, ref(), TOL, 'vit attention'),
        peer: {
          graph: 'com.microsoft MultiHeadAttention(q, k, v [1,T,D], num_heads)',
          model: {
            nodes: [{ op: 'MultiHeadAttention', domain: 'com.microsoft', inputs: ['q', 'k', 'v'], outputs: ['y'], attrs: { num_heads: H } }],
            inputs: ['q', 'k', 'v'].map((name) => ({ name, shape: [1, T, D] })),
            outputs: [{ name: 'y', shape: [1, T, D] }],
            opsets: MS,
          },
          feeds: { q: f32(qv, [1, T, D]), k: f32(kv, [1, T, D]), v: f32(vv, [1, T, D]) },
          output: 'y',
          check: (y) => maxAbs(y, ref(), TOL, 'ORT vit attention'),
        },
      };
    },
  };
}

/** The decoder's causal attention over a prompt, grouped-query. */
export function prefillAttentionCase(s: Shapes): PeerCase {
  const { tc, prefillT } = s;
  return {
    name: `prefill attention T=${prefillT} ${tc.num_attention_heads}/${tc.num_key_value_heads} heads ×${tc.head_dim} causal`,
    kernel: 'attention',
    flops: 2 * prefillT * prefillT * tc.num_attention_heads * tc.head_dim /* causal: half of 4·T²·H·d */,
    bytes: 4 * prefillT * (2 * tc.num_attention_heads + 2 * tc.num_key_value_heads) * tc.head_dim,
    async setup(_gpu, g, rng) {
      const [T, H, KV, d] = [prefillT, tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim];
      const { qv, kv, vv, q, k, v, inputs } = qkv(g, rng, T, T, H, KV, d);
      const ref = lazy(() => attention64(qv, kv, vv, T, H, KV, d, (t) => t));
      return {
        outputs: [attention(g, q, k, v, { heads: H, kvHeads: KV, causal: true })],
        inputs,
        check: ([y]) => maxAbs(y, ref(), TOL, 'prefill attention'),
        peer: gqa(H, KV, d, T, 0, qv, kv, vv, (y) => maxAbs(y, ref(), TOL, 'ORT prefill attention')),
      };
    },
  };
}

/** The prefill attention under a sliding window (Mistral's). */
export function slidingWindowAttentionCase(s: Shapes): PeerCase {
  const { tc, prefillT } = s;
  // Mistral's sliding window, a quarter of the prompt: each query sees at most W keys.
  const W = Math.max(1, Math.floor(prefillT / 4));
  const seen = Array.from({ length: prefillT }, (_, t) => Math.min(t + 1, W)).reduce((a, b) => a + b, 0);
  return {
    name: `prefill attention T=${prefillT} ${tc.num_attention_heads}/${tc.num_key_value_heads} heads ×${tc.head_dim} causal, sliding window ${W}`,
    kernel: 'attention',
    flops: 4 * seen * tc.num_attention_heads * tc.head_dim,
    bytes: 4 * prefillT * (2 * tc.num_attention_heads + 2 * tc.num_key_value_heads) * tc.head_dim,
    async setup(_gpu, g, rng) {
      const [T, H, KV, d] = [prefillT, tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim];
      const { qv, kv, vv, q, k, v, inputs } = qkv(g, rng, T, T, H, KV, d);
      const ref = lazy(() => attention64(qv, kv, vv, T, H, KV, d, (t) => t, (t) => Math.max(0, t + 1 - W)));
      return {
        outputs: [attention(g, q, k, v, { heads: H, kvHeads: KV, causal: true, window: W })],
        inputs,
        check: ([y]) => maxAbs(y, ref(), TOL, 'sliding-window attention'),
      };
    },
  };
}

/** Decode attention as split-KV partials merged by o_proj's gemv as it reads them. */
export function splitKVOProjCase(s: Shapes): PeerCase {
  const { tc, kvLen } = s;
  return {
    // Decode on a GPU: o_proj's gemv merging split-KV partials as it reads them (matmul.wgsl a_mode 3),
    // the partials from attention_partial in the same graph; against o_proj of the float64 attention.
    name: `decode split-KV attention kv=${kvLen} + o_proj merging the partials ${tc.num_attention_heads}×${tc.head_dim} → ${tc.hidden_size}`,
    kernel: 'gemv',
    flops: 4 * kvLen * tc.num_attention_heads * tc.head_dim + 2 * tc.num_attention_heads * tc.head_dim * tc.hidden_size,
    bytes: 4 * 2 * kvLen * tc.num_key_value_heads * tc.head_dim + 4 * tc.num_attention_heads * tc.head_dim * tc.hidden_size,
    async setup(gpu, g, rng) {
      const [H, KV, d, D] = [tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim, tc.hidden_size];
      const { qv, kv, vv, q, k, v, inputs } = qkv(g, rng, 1, kvLen, H, KV, d);
      const wo = await weight(gpu, g, 'o_proj', [D, H * d], rng.array(D * H * d, 1 / Math.sqrt(H * d)));
      const o = attentionOperand(g, q, k, v, { heads: H, kvHeads: KV, causal: true, variant: 'split' });
      const ref = lazy(() => linear64(Float32Array.from(attention64(qv, kv, vv, 1, H, KV, d, () => kvLen - 1)), wo.v, 1, D, H * d));
      return {
        outputs: [matmulNode(g, o.x, wo.t, 1, o.a)],
        inputs,
        pos: kvLen - 1,
        check: ([y]) => maxAbs(y, ref(), TOL, 'o_proj over split-KV partials'),
      };
    },
  };
}

/** One query's attention over the KV cache (decode). */
export function decodeAttentionCase(s: Shapes, variant: 'auto' | 'single'): PeerCase {
  const { tc, kvLen } = s;
  return {
    name: `decode attention kv=${kvLen} ${tc.num_attention_heads}/${tc.num_key_value_heads} heads ×${tc.head_dim}${variant === 'single' ? ' (single pass, reference variant)' : ''}`,
    kernel: 'attention',
    flops: 4 * kvLen * tc.num_attention_heads * tc.head_dim,
    bytes: 4 * 2 * kvLen * tc.num_key_value_heads * tc.head_dim,
    async setup(_gpu, g, rng) {
      const [H, KV, d] = [tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim];
      const { qv, kv, vv, q, k, v, inputs } = qkv(g, rng, 1, kvLen, H, KV, d);
      const ref = lazy(() => attention64(qv, kv, vv, 1, H, KV, d, () => kvLen - 1));
      return {
        outputs: [attention(g, q, k, v, { heads: H, kvHeads: KV, causal: true, variant })],
        inputs,
        pos: kvLen - 1,
        check: ([y]) => maxAbs(y, ref(), TOL, 'decode attention'),
        peer: variant !== 'auto' ? undefined : gqa(H, KV, d, 1, kvLen - 1, qv, kv, vv, (y) => maxAbs(y, ref(), TOL, 'ORT decode attention')),
      };
    },
  };
}

/**
 * com.microsoft GroupQueryAttention over the rows of q ([T, H·d]) and k, v ([past + T, KV·d], our KV
 * cache layout). The first `past` key/value rows go in as past_key/past_value, which the op takes as
 * [1, KV, past, d] (so they are transposed here, once, on the host); the last T rows as the new keys.
 * Queries sit at positions past .. past + T − 1, causal. present_key/present_value are left as
 * intermediates, so they are not copied back.
 */
function gqa(
  H: number,
  KV: number,
  d: number,
  T: number,
  past: number,
  qv: Float32Array,
  kv: Float32Array,
  vv: Float32Array,
  check: (y: ArrayLike<number>) => number,
): PeerSide {
  const total = past + T;
  const bnsh = (a: Float32Array) => {
    const out = new Float32Array(KV * past * d);
    for (let s = 0; s < past; s++) for (let h = 0; h < KV; h++) for (let i = 0; i < d; i++) out[(h * past + s) * d + i] = a[(s * KV + h) * d + i];
    return out;
  };
  const newRows = (a: Float32Array) => a.slice(past * KV * d);
  const feeds: Record<string, HostTensor> = {
    q: f32(qv, [1, T, H * d]),
    k: f32(newRows(kv), [1, T, KV * d]),
    v: f32(newRows(vv), [1, T, KV * d]),
  };
  const inputs = [
    { name: 'q', shape: [1, T, H * d] },
    { name: 'k', shape: [1, T, KV * d] },
    { name: 'v', shape: [1, T, KV * d] },
  ];
  if (past) {
    feeds.past_k = f32(bnsh(kv), [1, KV, past, d]);
    feeds.past_v = f32(bnsh(vv), [1, KV, past, d]);
    inputs.push({ name: 'past_k', shape: [1, KV, past, d] }, { name: 'past_v', shape: [1, KV, past, d] });
  }
  return {
    graph: `com.microsoft GroupQueryAttention(num_heads ${H}, kv_num_heads ${KV}${past ? `, past_key/value [1,KV,${past},d]` : ''})`,
    model: {
      nodes: [
        {
          op: 'GroupQueryAttention',
          domain: 'com.microsoft',
          inputs: ['q', 'k', 'v', past ? 'past_k' : '', past ? 'past_v' : '', 'seqlens_k', 'total_len'],
          outputs: ['y', 'present_k', 'present_v'],
          attrs: { num_heads: H, kv_num_heads: KV },
        },
      ],
      inputs,
      outputs: [{ name: 'y', shape: [1, T, H * d] }],
      initializers: [
        { name: 'seqlens_k', shape: [1], type: DT.INT32, data: Int32Array.from([total - 1]) },
        { name: 'total_len', shape: [], type: DT.INT32, data: Int32Array.from([total]) },
      ],
      opsets: MS,
    },
    feeds,
    output: 'y',
    check,
  };
}
