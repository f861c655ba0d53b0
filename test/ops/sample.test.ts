// Greedy argmax of the last row of logits (shaders/sample.wgsl) against a CPU reference (torch.argmax:
// the lowest index among equal maxima). The result is an index, compared exactly.
// Then sampling (sampleToken in src/generate.ts, on the host): temperature 0 and top-k 1 are that argmax;
// over many seeded draws top-k and top-p never leave the k largest logits or the nucleus, and the draws
// follow the softmax of what is kept (chi-square goodness of fit). And on the tiny model, the sampling
// path with top-k 1 or a tiny top-p generates the greedy tokens.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Graph, Rng, run, testGpu } from '../helpers.ts';
import { argmax } from '../../src/ops/sample.ts';
import { generateTokens, greedy, sampleToken, SeededRandom, type SamplingOptions } from '../../src/generate.ts';
import { SmolVLM } from '../../src/models/smolvlm.ts';
import { FIXTURES, openReference } from '../reference.ts';
import { argmax64 } from './reference.ts';


async function gpuArgmax(x: Float32Array, R: number, V: number): Promise<number> {
  const gpu = await testGpu();
  const g = new Graph();
  const logits = g.input('logits', [R, V], 'f32');
  const [out] = await run(gpu, g, [argmax(g, logits)], [[logits, x]]);
  assert.ok((out as unknown) instanceof Uint32Array, 'argmax output is u32');
  assert.equal(out.length, 1);
  return out[0];
}

/**
 * R rows of N(0, 4) logits; rows before the last hold a larger maximum elsewhere, so that reading the
 * wrong row gives a different answer.
 */
function logits(rng: Rng, R: number, V: number): Float32Array {
  const x = rng.array(R * V, 2);
  for (let r = 0; r < R - 1; r++) x[r * V + ((r * 7919 + 13) % V)] = 1e3;
  return x;
}

describe('argmax', () => {
  for (const V of [1, 300, 49280]) {
    for (const R of [1, 3]) {
      it(`V=${V}, ${R} row(s): the last row's argmax`, async () => {
        const rng = new Rng(V + R);
        const x = logits(rng, R, V);
        assert.equal(await gpuArgmax(x, R, V), argmax64(x, R, V));
      });
    }

    it(`V=${V}: the maximum at the first and at the last index`, async () => {
      const rng = new Rng(V * 3);
      for (const at of [0, V - 1]) {
        const x = logits(rng, 2, V);
        x[V + at] = 50;
        assert.equal(await gpuArgmax(x, 2, V), at, `max placed at ${at}`);
      }
    });

    it(`V=${V}: negative-only logits`, async () => {
      // All logits in [−1e4 − 8, −1e4]: the kernel's starting "best" must not win over real values.
      const rng = new Rng(V * 5);
      const x = new Float32Array(2 * V);
      for (let i = 0; i < x.length; i++) x[i] = -1e4 - Math.abs(rng.normal()) * 2;
      assert.equal(await gpuArgmax(x, 2, V), argmax64(x, 2, V));
    });
  }

  it('ties resolve to the lowest index', async () => {
    const V = 49280;
    const rng = new Rng(11);
    // Pairs of tied maxima: within one invocation's stride (i, i + 256), across invocations where the
    // lower index belongs to a higher invocation (300 is invocation 44, 50 is invocation 50), and far apart.
    for (const ties of [
      [5, 261],
      [300, 50],
      [49279, 7, 30000],
      [256, 255],
      [1, 0],
    ]) {
      const x = logits(rng, 2, V);
      for (const i of ties) x[V + i] = 20;
      assert.equal(await gpuArgmax(x, 2, V), Math.min(...ties), `ties at ${ties.join(', ')}`);
    }
  });

  it('a row of equal values gives index 0', async () => {
    for (const [V, value] of [
      [300, 0],
      [49280, -3],
      [300, -Infinity],
      [5, -3.4028234663852886e38], // −FLT_MAX, the kernel's starting value
    ] as [number, number][]) {
      const x = new Float32Array(V).fill(value);
      assert.equal(await gpuArgmax(x, 1, V), 0, `V=${V} all ${value}`);
    }
  });

  it('a single finite value among −Infinity', async () => {
    const V = 1000;
    const x = new Float32Array(V).fill(-Infinity);
    x[777] = -1e30;
    assert.equal(await gpuArgmax(x, 1, V), 777);
  });
});

/** Probabilities of `logits` / T in float64, as HF's temperature warper then softmax give them. */
function softmaxAt(logits: Float32Array, T: number): Float64Array {
  let m = -Infinity;
  for (const v of logits) m = Math.max(m, v);
  const p = Float64Array.from(logits, (v) => Math.exp((v - m) / T));
  const sum = p.reduce((a, b) => a + b, 0);
  return p.map((v) => v / sum);
}

/**
 * What top-k then top-p keep of `p`, renormalised (zero elsewhere): the k most likely, then the fewest
 * most likely whose mass reaches topP (transformers' TopKLogitsWarper, TopPLogitsWarper). Also the margin
 * by which the nucleus' cumulative masses miss topP, so that data too close to the edge can be refused.
 */
function kept(p: Float64Array, topK?: number, topP?: number): { q: Float64Array; margin: number } {
  const order = Array.from(p.keys()).sort((a, b) => p[b] - p[a] || a - b);
  let keep = order.slice(0, topK ?? order.length);
  let margin = Infinity;
  if (topP !== undefined) {
    const mass = keep.reduce((a, i) => a + p[i], 0);
    let acc = 0;
    let n = 0;
    while (n < keep.length && acc < topP) {
      acc += p[keep[n++]] / mass;
      margin = Math.min(margin, Math.abs(acc - topP));
    }
    keep = keep.slice(0, n);
  }
  const q = new Float64Array(p.length);
  const mass = keep.reduce((a, i) => a + p[i], 0);
  for (const i of keep) q[i] = p[i] / mass;
  return { q, margin };
}

/** Counts of `n` draws of sampleToken with one seeded generator. */
function draw(logits: Float32Array, o: SamplingOptions, n: number, seed: number): Float64Array {
  const rng = new SeededRandom(seed);
  const counts = new Float64Array(logits.length);
  for (let i = 0; i < n; i++) counts[sampleToken(logits, o, rng)]++;
  return counts;
}

/**
 * Pearson's chi-square of `counts` against probabilities `q`, over the tokens q keeps (q > 0), those
 * expected fewer than 5 times pooled into one bin; and its critical value at significance 1e-3 (Wilson and
 * Hilferty's approximation, within 1% for these degrees of freedom and a little above the exact value at 1).
 * A correct sampler exceeds it with probability 1e-3; the draws are seeded, so a pass is reproducible.
 */
function chiSquare(counts: Float64Array, q: Float64Array): { chi2: number; critical: number; df: number } {
  const n = counts.reduce((a, b) => a + b, 0);
  const bins: [number, number][] = [];
  let pooled: [number, number] = [0, 0];
  q.forEach((qi, i) => {
    if (qi === 0) return;
    if (n * qi >= 5) bins.push([counts[i], n * qi]);
    else pooled = [pooled[0] + counts[i], pooled[1] + n * qi];
  });
  if (pooled[1] > 0) bins.push(pooled);
  const chi2 = bins.reduce((a, [o, e]) => a + (o - e) ** 2 / e, 0);
  const df = bins.length - 1;
  const z = 3.0902; // standard normal quantile at 1 − 1e-3
  const critical = df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
  return { chi2, critical, df };
}

describe('sampleToken', () => {
  // Logits with ties at the maximum, as an argmax test wants them.
  const tied = (rng: Rng, V: number) => {
    const x = rng.array(V, 3);
    x[V - 7] = x[V - 3] = x[11 % V] = 9;
    return x;
  };

  it('temperature 0 (or none) is greedy: the GPU argmax, ties to the lowest index, whatever top-k and top-p say', async () => {
    const rng = new Rng(5);
    for (const V of [300, 49280]) {
      for (let trial = 0; trial < 3; trial++) {
        const x = trial === 0 ? tied(rng, V) : rng.array(V, 2);
        const want = argmax64(x, 1, V);
        assert.equal(await gpuArgmax(x, 1, V), want);
        for (const o of [{}, { temperature: 0 }, { temperature: 0, topK: 5, topP: 0.5, seed: 9 }]) {
          assert.equal(sampleToken(x, o, new SeededRandom(trial)), want, `V=${V} ${JSON.stringify(o)}`);
        }
      }
    }
  });

  it('top-k 1 is greedy at any temperature (2,000 draws each)', () => {
    const rng = new Rng(6);
    const x = tied(rng, 300);
    const want = argmax64(x, 1, 300);
    for (const temperature of [0.05, 1, 20]) {
      const counts = draw(x, { temperature, topK: 1 }, 2000, 1);
      assert.equal(counts[want], 2000, `T=${temperature}: every draw is token ${want}`);
    }
  });

  it('top-k k never draws outside the k largest logits, and follows their softmax (5,000 draws each)', () => {
    const rng = new Rng(7);
    const V = 200;
    for (const [k, temperature] of [[2, 1], [5, 0.7], [40, 2], [40, 1]] as const) {
      const x = rng.array(V, 2);
      const largest = new Set(Array.from(x.keys()).sort((a, b) => x[b] - x[a]).slice(0, k));
      const counts = draw(x, { temperature, topK: k }, 5000, k);
      counts.forEach((c, i) => assert.ok(c === 0 || largest.has(i), `k=${k} T=${temperature}: token ${i} (logit ${x[i]}) drawn ${c} times, outside the ${k} largest`));
      const { q } = kept(softmaxAt(x, temperature), k);
      const { chi2, critical, df } = chiSquare(counts, q);
      assert.ok(chi2 < critical, `k=${k} T=${temperature}: chi-square ${chi2.toFixed(1)} ≥ ${critical.toFixed(1)} (${df} df)`);
    }
  });

  it('top-p never draws outside the nucleus, and follows the softmax of the nucleus (5,000 draws each)', () => {
    const rng = new Rng(8);
    const V = 200;
    for (const [topP, temperature, topK] of [[0.3, 1, undefined], [0.9, 1, undefined], [0.75, 0.5, undefined], [0.8, 1.5, 30]] as const) {
      const x = rng.array(V, 1.5);
      const { q, margin } = kept(softmaxAt(x, temperature), topK, topP);
      assert.ok(margin > 1e-6, `test data: a cumulative mass within ${margin} of top-p ${topP}`);
      const nucleus = q.reduce((a, qi) => a + (qi > 0 ? 1 : 0), 0);
      assert.ok(nucleus >= 2 && nucleus < (topK ?? V), `a nucleus of ${nucleus} tokens tests nothing`);
      const counts = draw(x, { temperature, topK, topP }, 5000, Math.round(topP * 100));
      counts.forEach((c, i) => assert.ok(c === 0 || q[i] > 0, `top-p ${topP} T=${temperature}: token ${i} drawn ${c} times, outside the ${nucleus}-token nucleus`));
      const { chi2, critical, df } = chiSquare(counts, q);
      assert.ok(chi2 < critical, `top-p ${topP} T=${temperature}: chi-square ${chi2.toFixed(1)} ≥ ${critical.toFixed(1)} (${df} df)`);
    }
  });

  it('at temperature 1 the draws follow the softmax: chi-square over 20 tokens, 100,000 draws, significance 1e-3', () => {
    // Logits spread over [−2, 2]: the least likely token is still expected about 1,000 times.
    const x = Float32Array.from({ length: 20 }, (_, i) => -2 + (4 * ((i * 7) % 20)) / 19);
    const n = 100_000;
    const counts = draw(x, { temperature: 1 }, n, 42);
    const p = softmaxAt(x, 1);
    const { chi2, critical, df } = chiSquare(counts, p);
    assert.equal(df, 19);
    assert.ok(Math.abs(critical - 43.82) < 0.2, `critical value ${critical} (tables: 43.82 for 19 df at 1e-3)`);
    assert.ok(chi2 < critical, `chi-square ${chi2.toFixed(1)} ≥ ${critical.toFixed(1)}`);
    // The test has the power to see a sampler that is slightly off: the same draws fail against temperature 1.05.
    assert.ok(chiSquare(counts, softmaxAt(x, 1.05)).chi2 > critical, 'the draws also fit temperature 1.05: the test could not fail');
    // Per token, in plain terms: every frequency within 5 standard deviations of its probability.
    counts.forEach((c, i) => assert.ok(Math.abs(c / n - p[i]) < 5 * Math.sqrt((p[i] * (1 - p[i])) / n), `token ${i}: ${c / n} vs ${p[i]}`));
  });

  it('the same seed draws the same tokens; another seed, others', () => {
    const x = new Rng(10).array(100, 1);
    const seq = (seed: number) => {
      const rng = new SeededRandom(seed);
      return Array.from({ length: 50 }, () => sampleToken(x, { temperature: 1, topP: 0.95 }, rng));
    };
    assert.deepEqual(seq(3), seq(3));
    assert.notDeepEqual(seq(3), seq(4));
  });

  it('on the tiny SmolVLM, sampling with top-k 1 or a tiny top-p generates the greedy tokens', async () => {
    const gpu = await testGpu();
    const dir = join(FIXTURES, 'smolvlm-tiny');
    const model = await SmolVLM.load(gpu, dir);
    const ref = await openReference(join(dir, 'reference.safetensors'));
    try {
      const ids = [...(await ref.i32('input_ids'))];
      const pixels = (await ref.f32('pixel_values')).data;
      const tokens = async (it: AsyncIterable<{ token: number }>) => {
        const out: number[] = [];
        for await (const s of it) out.push(s.token);
        return out;
      };
      const base = { maxNewTokens: 8, stopAtEos: false };
      const want = await tokens(greedy(model, ids, pixels, base));
      // greedy() reads back the GPU argmax; temperature > 0 reads back the logits and samples on the host.
      for (const o of [{ temperature: 1, topK: 1 }, { temperature: 3, topP: 1e-9, seed: 5 }]) {
        assert.deepEqual(await tokens(generateTokens(model, ids, pixels, { ...base, ...o })), want, JSON.stringify(o));
      }
    } finally {
      model.dispose();
      await ref.close();
    }
  });
});
