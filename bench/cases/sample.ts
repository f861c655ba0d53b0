// The token selection rows over the vocabulary: argmax (greedy decoding).
import { argmax } from '../../src/ops/sample.ts';
import { argmax64 } from '../../test/ops/reference.ts';
import { DT } from '../peers/onnx.ts';
import { f32, type PeerCase, type Shapes } from './common.ts';

/** Greedy token selection over the vocabulary. */
export function argmaxCase(s: Shapes): PeerCase {
  const { tc } = s;
  return {
    name: `argmax over ${tc.vocab_size}`,
    kernel: 'argmax',
    flops: tc.vocab_size,
    bytes: 4 * tc.vocab_size,
    async setup(_gpu, g, rng) {
      const V = tc.vocab_size;
      const xv = rng.array(V);
      const x = g.input('logits', [1, V], 'f32');
      const check = (y: ArrayLike<number>, who: string) => {
        const want = argmax64(xv, 1, V);
        if (y[0] !== want) throw new Error(`${who}argmax: got ${y[0]}, expected ${want}`);
        return 0;
      };
      return {
        outputs: [argmax(g, x)],
        inputs: [[x, xv]],
        check: ([y]) => check(y, ''),
        peer: {
          graph: 'ArgMax(axis -1, keepdims 0) → int64',
          model: {
            nodes: [{ op: 'ArgMax', inputs: ['x'], outputs: ['y'], attrs: { axis: -1, keepdims: 0 } }],
            inputs: [{ name: 'x', shape: [1, V] }],
            outputs: [{ name: 'y', shape: [1], type: DT.INT64 }],
          },
          feeds: { x: f32(xv, [1, V]) },
          output: 'y',
          check: (y) => check(y, 'ORT '),
        },
      };
    },
  };
}
