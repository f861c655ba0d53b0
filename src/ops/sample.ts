// Token selection on the GPU (shaders/sample.wgsl), over the last row of logits, so that a decode step
// reads back little: argmax for greedy decoding (4 bytes), and topK's candidates for top-k / top-p
// sampling (the k largest logits with their ids and the row's softmax mass: 8k + 4 bytes, not the row).
import type { Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { uniforms } from './common.ts';

/** The kernels' workgroup size, and so the most candidates topK returns. */
export const SAMPLE_WG = 256;
export const MAX_CANDIDATES = SAMPLE_WG;

/**
 * A kernel of shaders/sample.wgsl over the last row of its first input, [R, V]: the output at binding 2,
 * a second input (top_k's temperature) at binding 3; `k` candidates (0 for argmax).
 */
function sampleKernel<A>(entry: 'argmax' | 'top_k', k: (attrs: A) => number): Kernel<A> {
  return {
    name: entry,
    encode(node, buf) {
      const [x, temperature] = node.inputs;
      const [R, V] = x.shape;
      return [
        {
          pipeline: { shader: 'sample', entry, constants: { WG: SAMPLE_WG } },
          bindings: [
            { binding: 1, buffer: buf(x) },
            { binding: 2, buffer: buf(node.output) },
            ...(temperature ? [{ binding: 3, buffer: buf(temperature) }] : []),
          ],
          uniforms: uniforms(R - 1, V, k(node.attrs)),
          workgroups: [1],
        },
      ];
    },
  };
}

const argmaxKernel = sampleKernel<null>('argmax', () => 0);
const topKKernel = sampleKernel<{ k: number }>('top_k', (a) => a.k);

/**
 * logits: [R, V]; returns [1] u32, the argmax of row R − 1: the lowest index of the largest logit, a NaN
 * counting above every number (torch.argmax: the first NaN).
 */
export function argmax(g: Graph, logits: Tensor): Tensor {
  expectShape('argmax', 'logits', logits, [null, null], ['f32']);
  return g.add(argmaxKernel, [logits], { shape: [1], dtype: 'u32' }, null);
}

/**
 * logits: [R, V], temperature: [1] f32; returns [2k + 1] u32 (read it with candidatesOf): the k largest
 * logits of row R − 1 largest first (ties to the lowest index, NaN first), their indices, and the row's
 * softmax mass at the temperature, Σ exp((l − max) / T), summed in f32.
 */
export function topK(g: Graph, logits: Tensor, temperature: Tensor, k: number): Tensor {
  expectShape('topK', 'logits', logits, [null, null], ['f32']);
  expectShape('topK', 'temperature', temperature, [1], ['f32']);
  if (!(Number.isInteger(k) && k >= 1 && k <= MAX_CANDIDATES)) throw new RangeError(`topK: k must be an integer in [1, ${MAX_CANDIDATES}], got ${k}`);
  return g.add(topKKernel, [logits, temperature], { shape: [2 * k + 1], dtype: 'u32' }, { k });
}

/** What topK read back: the largest logits of a row in order, with their token ids. */
export interface Candidates {
  /** Logits, largest first (min(k, V) of them). */
  values: Float32Array;
  /** Their token ids. */
  ids: Uint32Array;
  /** Σ exp((l − max) / T) over the whole row at the temperature the kernel was given (f32 sums). */
  mass: number;
  /** The row's length. */
  vocab: number;
}

/** The candidates in topK's output `raw` ([2k + 1] u32) of a row of V logits. */
export function candidatesOf(raw: Uint32Array, V: number): Candidates {
  const k = (raw.length - 1) / 2;
  const n = Math.min(k, V);
  const bits = raw.slice(0, n);
  return {
    values: new Float32Array(bits.buffer),
    ids: raw.slice(k, k + n),
    mass: new Float32Array(raw.slice(2 * k, 2 * k + 1).buffer)[0],
    vocab: V,
  };
}
