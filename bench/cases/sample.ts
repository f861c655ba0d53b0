// The token selection rows over the vocabulary: argmax (greedy decoding) and top_k's candidates (what a
// sampled decode step reads back for top-k / top-p sampling).
import { argmax, candidatesOf, topK, MAX_CANDIDATES } from '../../src/ops/sample.ts';
import { argmax64, topK64 } from '../../test/ops/reference.ts';
import { DT } from '../peers/onnx.ts';
import { lazy, f32, maxAbs, type PeerCase, type Shapes } from './common.ts';

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

/**
 * Sampling's candidates over the vocabulary: the k largest logits in order with their ids and the row's
 * softmax mass at a temperature (topK). k is what a sampled decode step asks for (MAX_CANDIDATES: the
 * model's graph reads them whatever the request's top_k), at most V. Checked as test/ops/sample.test.ts
 * checks it: the ids of the float64 reference (topK64) in order, their logits exactly, the mass within
 * 1e-5 relative (a tenth of the sampler's MASS_TOLERANCE). The peer is ONNX TopK: its values only (no
 * softmax mass).
 */
export function topKCase(s: Shapes): PeerCase {
  const { tc } = s;
  const [V, k] = [tc.vocab_size, Math.min(MAX_CANDIDATES, tc.vocab_size)];
  return {
    name: `top-k ${k} over ${V}`,
    kernel: 'top_k',
    // A compare per logit (as argmax) and the mass's subtract, scale, exp and add.
    flops: 5 * V,
    bytes: 4 * V + 4 + 4 * (2 * k + 1),
    async setup(_gpu, g, rng) {
      // A usual sampling temperature; logits spread as test/ops/sample.test.ts draws them.
      const T = 0.7;
      const xv = rng.array(V, 2);
      const x = g.input('logits', [1, V], 'f32');
      const temperature = g.input('temperature', [1], 'f32');
      const want = lazy(() => {
        const { ids, mass } = topK64(xv, 1, V, k, T);
        return { ids, values: Float64Array.from(ids, (i) => xv[i]), mass };
      });
      return {
        outputs: [topK(g, x, temperature, k)],
        inputs: [[x, xv], [temperature, Float32Array.of(T)]],
        // Returns the mass's relative error (ids and values are exact).
        check: ([y]) => {
          const c = candidatesOf(y as Uint32Array, V);
          const w = want();
          if (c.ids.length !== k) throw new Error(`top_k: ${c.ids.length} candidates, expected ${k}`);
          const at = c.ids.findIndex((id, j) => id !== w.ids[j]);
          if (at >= 0) throw new Error(`top_k: candidate ${at}: got id ${c.ids[at]}, expected ${w.ids[at]}`);
          maxAbs(c.values, w.values, { atol: 0 }, 'top_k values');
          const err = Math.abs(c.mass - w.mass) / w.mass;
          if (!(err <= 1e-5)) throw new Error(`top_k: mass ${c.mass}, expected ${w.mass} (relative error ${err.toExponential(2)})`);
          return err;
        },
        peer: {
          graph: `TopK(axis -1, K = ${k} int64 initializer) → values (ours: also the ids and the softmax mass)`,
          model: {
            nodes: [{ op: 'TopK', inputs: ['x', 'k'], outputs: ['y', 'ids'], attrs: { axis: -1, largest: 1, sorted: 1 } }],
            inputs: [{ name: 'x', shape: [1, V] }],
            outputs: [{ name: 'y', shape: [1, k] }],
            initializers: [{ name: 'k', shape: [1], type: DT.INT64, data: BigInt64Array.of(BigInt(k)) }],
          },
          feeds: { x: f32(xv, [1, V]) },
          output: 'y',
          check: (y) => maxAbs(y, want().values, { atol: 0 }, 'ORT top_k values'),
        },
      };
    },
  };
}
