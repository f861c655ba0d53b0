// Rotary position embedding in the HF Llama rotate_half convention (shaders/rope.wgsl).
import type { Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { uniforms, grid1d } from './common.ts';

/** inv_freq[i] = 1 / theta^(2i/d), rounded to f32 as transformers computes it. */
export function ropeInvFreq(theta: number, headDim: number): Float32Array {
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) out[i] = 1 / Math.pow(theta, (2 * i) / headDim);
  return out;
}

function check(x: Tensor, invFreq: Tensor, heads: number): number {
  const d = x.dim(1) / heads;
  if (!Number.isInteger(d) || d % 2 !== 0) throw new Error(`rope: width ${x.dim(1)} is not heads (${heads}) × an even head_dim`);
  expectShape('rope', 'inv_freq', invFreq, [d / 2], ['f32']);
  return d;
}

interface QkvAttrs {
  heads: number;
  kvHeads: number;
  d: number;
}

const qkvKernel: Kernel<QkvAttrs> = {
  name: 'rope_qkv',
  encode(node, buf) {
    const [q, invFreq, k, v, kCache, vCache] = node.inputs;
    const T = q.dim(0);
    const { heads, kvHeads, d } = node.attrs;
    // RoPE alone (no keys) is the rope entry, with only the first three bindings.
    const alone = kvHeads === 0;
    return [
      {
        pipeline: { shader: 'rope', entry: alone ? 'rope' : 'rope_qkv' },
        bindings: [
          { binding: 1, buffer: buf(q) },
          { binding: 2, buffer: buf(invFreq) },
          { binding: 3, buffer: buf(node.output) },
          ...(alone
            ? []
            : [
                { binding: 4, buffer: buf(k) },
                { binding: 5, buffer: buf(v) },
                { binding: 6, buffer: buf(kCache) },
                { binding: 7, buffer: buf(vCache) },
              ]),
        ],
        uniforms: (step) => uniforms(T, heads, d, step.pos, 0, kvHeads),
        workgroups: grid1d((T * (heads + 2 * kvHeads) * d) / 2, 64),
      },
    ];
  },
};

/** x: [T, heads·d] at positions step.pos + t; returns the rotated [T, heads·d] (rope_qkv with no keys). */
export function rope(g: Graph, x: Tensor, invFreq: Tensor, heads: number): Tensor {
  const d = check(x, invFreq, heads);
  return g.add(qkvKernel, [x, invFreq], { shape: [...x.shape], dtype: 'f32' }, { heads, kvHeads: 0, d });
}

/**
 * The attention block's step between projections and attention, in one dispatch: q [T, heads·d] and
 * k [T, kvHeads·d] rotated for positions step.pos + t, the keys and the values v [T, kvHeads·d] written
 * to rows step.pos .. of the caches. Returns the rotated q and the caches as left by this step.
 */
export function ropeQKV(
  g: Graph,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  invFreq: Tensor,
  heads: number,
  kvHeads: number,
  cache: { k: Tensor; v: Tensor },
): { q: Tensor; k: Tensor; v: Tensor } {
  const d = check(q, invFreq, heads);
  const T = q.dim(0);
  expectShape('rope_qkv', 'keys', k, [T, kvHeads * d], ['f32']);
  expectShape('rope_qkv', 'values', v, [T, kvHeads * d], ['f32']);
  expectShape('rope_qkv', 'key cache', cache.k, [null, kvHeads * d], ['f32']);
  expectShape('rope_qkv', 'value cache', cache.v, [cache.k.dim(0), kvHeads * d], ['f32']);
  const qr = g.add(qkvKernel, [q, invFreq, k, v, cache.k, cache.v], { shape: [...q.shape], dtype: 'f32' }, { heads, kvHeads, d });
  return { q: qr, k: g.alsoWrites(qr, cache.k), v: g.alsoWrites(qr, cache.v) };
}
