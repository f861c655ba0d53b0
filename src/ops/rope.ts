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

interface Attrs {
  heads: number;
  d: number;
  /** Destination row of this step's first token (KV cache), as a function of the step position. */
  dstRow0: (pos: number) => number;
}

const kernel: Kernel<Attrs> = {
  name: 'rope',
  encode(node, buf) {
    const [x, invFreq] = node.inputs;
    const T = x.dim(0);
    const { heads, d, dstRow0 } = node.attrs;
    return [
      {
        pipeline: { shader: 'rope', entry: 'rope' },
        bindings: [
          { binding: 1, buffer: buf(x) },
          { binding: 2, buffer: buf(invFreq) },
          { binding: 3, buffer: buf(node.output) },
        ],
        uniforms: (step) => uniforms(T, heads, d, step.pos, dstRow0(step.pos)),
        workgroups: grid1d((T * heads * d) / 2, 64),
      },
    ];
  },
};

function check(x: Tensor, invFreq: Tensor, heads: number): number {
  const d = x.dim(1) / heads;
  if (!Number.isInteger(d) || d % 2 !== 0) throw new Error(`rope: width ${x.dim(1)} is not heads (${heads}) × an even head_dim`);
  expectShape('rope', 'inv_freq', invFreq, [d / 2], ['f32']);
  return d;
}

/** x: [T, heads·d] at positions step.pos + t; returns the rotated [T, heads·d]. */
export function rope(g: Graph, x: Tensor, invFreq: Tensor, heads: number): Tensor {
  const d = check(x, invFreq, heads);
  return g.add(kernel, [x, invFreq], { shape: [...x.shape], dtype: 'f32' }, { heads, d, dstRow0: () => 0 });
}

/** Rotates x and writes it into rows step.pos .. step.pos + T of `cache` (the K cache); returns the cache. */
export function ropeInto(g: Graph, x: Tensor, invFreq: Tensor, heads: number, cache: Tensor): Tensor {
  const d = check(x, invFreq, heads);
  expectShape('rope', 'cache', cache, [null, x.dim(1)], ['f32']);
  return g.add(kernel, [x, invFreq], { shape: [...cache.shape], dtype: 'f32' }, { heads, d, dstRow0: (pos) => pos }, cache);
}
