// The rotary position embedding rows: RoPE over a prompt's queries, and the decode step's fused
// RoPE + KV cache append.
import { rope, ropeQKV, ropeInvFreq } from '../../src/ops/rope.ts';
import { rope64 } from '../../test/ops/reference.ts';
import { DT } from '../peers/onnx.ts';
import { MS, lazy, f32, type PeerCase, type Shapes } from './common.ts';

/** Rotary position embeddings over a prompt's queries. */
export function ropeCase(s: Shapes): PeerCase {
  const { tc, prefillT } = s;
  return {
    name: `rope ${prefillT}×${tc.num_attention_heads}×${tc.head_dim}`,
    kernel: 'rope',
    flops: 6 * prefillT * tc.num_attention_heads * tc.head_dim,
    bytes: 8 * prefillT * tc.num_attention_heads * tc.head_dim,
    async setup(_gpu, g, rng) {
      const [T, H, d] = [prefillT, tc.num_attention_heads, tc.head_dim];
      const xv = rng.array(T * H * d);
      const inv = ropeInvFreq(tc.rope_theta, d);
      const freq = g.input('inv_freq', [d / 2], 'f32');
      const x = g.input('x', [T, H * d], 'f32');
      const want = lazy(() => rope64(xv, inv, T, H, d, 0));
      const check = (y: ArrayLike<number>, who: string) => {
        const { y: r, tol } = want();
        let m = 0;
        // Per-element bound from the f32 angle (see test/ops/rope.test.ts).
        for (let i = 0; i < r.length; i++) {
          const e = Math.abs(y[i] - r[i]);
          if (!(e <= tol[i] + 1e-6)) throw new Error(`${who}rope: index ${i}: got ${y[i]}, expected ${r[i]}`);
          m = Math.max(m, e);
        }
        return m;
      };
      // onnxruntime takes cos/sin tables rather than inv_freq: computed here in float64 from the same
      // f32 inv_freq, for positions 0 .. T-1.
      const cos = new Float32Array(T * (d / 2));
      const sin = new Float32Array(T * (d / 2));
      for (let t = 0; t < T; t++)
        for (let i = 0; i < d / 2; i++) {
          cos[t * (d / 2) + i] = Math.cos(t * inv[i]);
          sin[t * (d / 2) + i] = Math.sin(t * inv[i]);
        }
      return {
        outputs: [rope(g, x, freq, H)],
        inputs: [[x, xv], [freq, inv]],
        check: ([y]) => check(y, ''),
        peer: {
          graph: 'com.microsoft RotaryEmbedding(x [1,T,H·d], position_ids, cos/sin tables [T, d/2])',
          model: {
            nodes: [{ op: 'RotaryEmbedding', domain: 'com.microsoft', inputs: ['x', 'pos', 'cos', 'sin'], outputs: ['y'], attrs: { interleaved: 0, num_heads: H } }],
            inputs: [
              { name: 'x', shape: [1, T, H * d] },
              { name: 'pos', shape: [1, T], type: DT.INT64 },
            ],
            outputs: [{ name: 'y', shape: [1, T, H * d] }],
            initializers: [
              { name: 'cos', shape: [T, d / 2], data: cos },
              { name: 'sin', shape: [T, d / 2], data: sin },
            ],
            opsets: MS,
          },
          feeds: { x: f32(xv, [1, T, H * d]), pos: { type: 'int64', data: BigInt64Array.from({ length: T }, (_, t) => BigInt(t)), dims: [1, T] } },
          output: 'y',
          check: (y) => check(y, 'ORT '),
        },
      };
    },
  };
}

/** The decode step's RoPE + KV append over a fused q|k|v projection. */
export function ropeQKVCase(s: Shapes): PeerCase {
  const { tc, prefillT } = s;
  return {
    // The decode step's RoPE + KV append (src/ops/rope.ts ropeQKV) over a fused q|k|v projection, at pos.
    name: `rope_qkv + KV append ${prefillT}×(${tc.num_attention_heads}+2·${tc.num_key_value_heads})×${tc.head_dim}`,
    kernel: 'rope',
    flops: 6 * prefillT * (tc.num_attention_heads + tc.num_key_value_heads) * tc.head_dim,
    bytes: 8 * prefillT * (tc.num_attention_heads + 2 * tc.num_key_value_heads) * tc.head_dim,
    async setup(gpu, g, rng) {
      const [T, H, KV, d] = [prefillT, tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim];
      const [R, W] = [(H + 2 * KV) * d, KV * d];
      const xv = rng.array(T * R);
      const inv = ropeInvFreq(tc.rope_theta, d);
      const freq = g.input('inv_freq', [d / 2], 'f32');
      const x = g.input('qkv', [T, R], 'f32');
      // Zeroed caches with room for the rows at pos .. pos + T (freed with the weights after the row).
      const pos = 7;
      const S = pos + T;
      const cache = { k: g.state('k_cache', [S, W], 'f32', gpu.pool.create(S * W * 4)), v: g.state('v_cache', [S, W], 'f32', gpu.pool.create(S * W * 4)) };
      const out = ropeQKV(g, x, freq, H, KV, cache);
      const part = (c0: number, w: number) => Float32Array.from({ length: T * w }, (_, i) => xv[Math.floor(i / w) * R + c0 + (i % w)]);
      const want = lazy(() => ({ q: rope64(part(0, H * d), inv, T, H, d, pos), k: rope64(part(H * d, W), inv, T, KV, d, pos), v: part(H * d + W, W) }));
      return {
        outputs: [out.q, out.k, out.v],
        inputs: [[x, xv], [freq, inv]],
        pos,
        check: ([q, k, v]) => {
          const w = want();
          let m = 0;
          // Per-element bound from the f32 angle (see test/ops/rope.test.ts); the values are copied exactly.
          const within = (got: ArrayLike<number>, at: number, r: ArrayLike<number>, tol: ArrayLike<number> | null, what: string) => {
            for (let i = 0; i < r.length; i++) {
              const e = Math.abs(got[at + i] - r[i]);
              if (!(e <= (tol ? tol[i] + 1e-6 : 0))) throw new Error(`rope_qkv ${what}: index ${i}: got ${got[at + i]}, expected ${r[i]}`);
              m = Math.max(m, e);
            }
          };
          within(q, 0, w.q.y, w.q.tol, 'q');
          within(k, pos * W, w.k.y, w.k.tol, 'key cache');
          within(v, pos * W, w.v, null, 'value cache');
          return m;
        },
      };
    },
  };
}
