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
    const [x, invFreq, kCache, vCache] = node.inputs;
    const T = x.dim(0);
    const { heads, kvHeads, d } = node.attrs;
    // RoPE alone (no keys) is the rope entry, with only the first three bindings.
    const alone = kvHeads === 0;
    return [
      {
        pipeline: { shader: 'rope', entry: alone ? 'rope' : 'rope_qkv' },
        bindings: [
          { binding: 1, buffer: buf(x) },
          { binding: 2, buffer: buf(invFreq) },
          { binding: 3, buffer: buf(node.output) },
          ...(alone
            ? []
            : [
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
 * The attention block's step between its fused projection and attention, in one dispatch: qkv is
 * [T, (heads + 2·kvHeads)·d], each row q | k | v. q and k are rotated for positions step.pos + t, the keys
 * and the values written to rows step.pos .. of the caches. Returns the rotated q [T, heads·d] and the
 * caches as left by this step.
 */
export function ropeQKV(
  g: Graph,
  qkv: Tensor,
  invFreq: Tensor,
  heads: number,
  kvHeads: number,
  cache: { k: Tensor; v: Tensor },
): { q: Tensor; k: Tensor; v: Tensor } {
  const d = check(qkv, invFreq, heads + 2 * kvHeads);
  const T = qkv.dim(0);
  expectShape('rope_qkv', 'key cache', cache.k, [null, kvHeads * d], ['f32']);
  expectShape('rope_qkv', 'value cache', cache.v, [cache.k.dim(0), kvHeads * d], ['f32']);
  const q = g.add(qkvKernel, [qkv, invFreq, cache.k, cache.v], { shape: [T, heads * d], dtype: 'f32' }, { heads, kvHeads, d });
  return { q, k: g.alsoWrites(q, cache.k), v: g.alsoWrites(q, cache.v) };
}
