// Greedy argmax of the last row of logits (shaders/sample.wgsl) against a CPU reference (torch.argmax:
// the lowest index among equal maxima, the first NaN above every number). The result is an index, compared
// exactly. top_k's candidates (the k largest in order, and the row's softmax mass) against a float64
// reference at sizes that are not multiples of the workgroup, with ties, infinities, ±0 and NaN.
// Then sampling (sampleToken in src/generate.ts, on the host): temperature 0 and top-k 1 are that argmax;
// over many seeded draws top-k and top-p never leave the k largest logits or the nucleus, and the draws
// follow the softmax of what is kept (chi-square goodness of fit). sampleCandidates draws what sampleToken
// draws, seed for seed, from the GPU's candidates, or declines when they cannot decide. And on the tiny
// model, the sampling path with top-k 1 or a tiny top-p generates the greedy tokens, and sampling reads
// the logits row only when the candidates cannot decide, with the same tokens as reading it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Graph, Rng, run, testGpu } from '../helpers.ts';
import { argmax, candidatesOf, MAX_CANDIDATES, topK, type Candidates } from '../../src/ops/sample.ts';
import { argmaxHost, generateTokens, greedy, MASS_TOLERANCE, sampleCandidates, sampleToken, type SamplingOptions } from '../../src/generate.ts';
import { SeededRandom } from '../../src/random.ts';
import { SmolVLM } from '../../src/models/smolvlm.ts';
import { FIXTURES, openReference } from '../reference.ts';
import { argmax64, topK64 } from './reference.ts';


async function gpuArgmax(x: Float32Array, R: number, V: number): Promise<number> {
  const gpu = await testGpu();
  const g = new Graph();
  const logits = g.input('logits', [R, V], 'f32');
  const [out] = await run(gpu, g, [argmax(g, logits)], [[logits, x]]);
  assert.ok((out as unknown) instanceof Uint32Array, 'argmax output is u32');
  assert.equal(out.length, 1);
  return out[0];
}

/** Runs `f` on the tiny SmolVLM with its reference prompt ids and pixels, then frees them. */
async function withTinySmolVLM(f: (model: SmolVLM, ids: number[], pixels: Float32Array) => Promise<void>): Promise<void> {
  const dir = join(FIXTURES, 'smolvlm-tiny');
  const model = await SmolVLM.load(await testGpu(), dir);
  const ref = await openReference(join(dir, 'reference.safetensors'));
  try {
    await f(model, [...(await ref.i32('input_ids'))], (await ref.f32('pixel_values')).data);
  } finally {
    model.dispose();
    await ref.close();
  }
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

  it('NaN counts above every number: the first NaN wins, wherever the invocations meet it', async () => {
    const V = 49281;
    const rng = new Rng(12);
    const negNaN = new Float32Array(new Uint32Array([0xffc00001]).buffer)[0]; // a NaN with the sign bit set
    for (const [nans, value] of [
      [[0], NaN],
      [[V - 1], NaN],
      [[300, 50], NaN], // the lower index in a higher invocation
      [[5, 261, 40000], NaN],
      [[1234], negNaN],
      [[17, 16], negNaN],
    ] as [number[], number][]) {
      const x = logits(rng, 2, V);
      x[V + 99] = Infinity;
      for (const i of nans) x[V + i] = value;
      const want = Math.min(...nans);
      assert.equal(argmax64(x, 2, V), want, 'reference');
      assert.equal(argmaxHost(x.subarray(V)), want, 'argmaxHost');
      assert.equal(await gpuArgmax(x, 2, V), want, `NaN at ${nans.join(', ')}`);
    }
  });

  it('−0 and +0 tie (the lower index wins), and +Infinity wins over numbers', async () => {
    for (const [row, want] of [
      [[-1, -0, 0, -2], 1],
      [[-1, 0, -0, -2], 1],
      [[-5, Infinity, 3, Infinity], 1],
    ] as [number[], number][]) {
      const x = Float32Array.from(row);
      assert.equal(await gpuArgmax(x, 1, row.length), want, JSON.stringify(row));
      assert.equal(argmax64(x, 1, row.length), want);
      assert.equal(argmaxHost(x), want);
    }
  });
});

/** top_k on the GPU: the candidates of the last row of [R, V] logits at temperature T. */
async function gpuTopK(x: Float32Array, R: number, V: number, k: number, T: number): Promise<Candidates> {
  const gpu = await testGpu();
  const g = new Graph();
  const l = g.input('logits', [R, V], 'f32');
  const t = g.input('temperature', [1], 'f32');
  const [out] = await run(gpu, g, [topK(g, l, t, k)], [[l, x], [t, Float32Array.of(T)]]);
  assert.ok((out as unknown) instanceof Uint32Array, 'top_k output is u32');
  assert.equal(out.length, 2 * k + 1);
  return candidatesOf(out as unknown as Uint32Array, V);
}

/** Candidates checked against topK64: the same ids in order, their exact values, the mass within `tol` (relative). */
function checkCandidates(c: Candidates, x: Float32Array, R: number, V: number, k: number, T: number, label: string, tol = 1e-5): number {
  const want = topK64(x, R, V, k, T);
  assert.equal(c.ids.length, Math.min(k, V), `${label}: count`);
  assert.deepEqual(Array.from(c.ids), want.ids, `${label}: ids`);
  const row = x.subarray((R - 1) * V);
  c.ids.forEach((id, j) => assert.ok(Object.is(c.values[j], row[id]) || (Number.isNaN(c.values[j]) && Number.isNaN(row[id])), `${label}: value ${j}`));
  if (Number.isNaN(want.mass)) return 0;
  const err = Math.abs(c.mass - want.mass) / want.mass;
  assert.ok(err <= tol, `${label}: mass ${c.mass} vs ${want.mass} (relative error ${err.toExponential(2)})`);
  return err;
}

describe('topK', () => {
  it('the k largest in order and the softmax mass, against float64, at sizes off the workgroup', async () => {
    const rng = new Rng(21);
    let worst = 0;
    for (const V of [1, 7, 255, 257, 1000, 4099, 49281]) {
      for (const k of [1, 3, 64, 200, 256]) {
        for (const R of [1, 3]) {
          const T = [0.3, 1, 2.5][(V + k + R) % 3];
          const x = logits(rng, R, V);
          worst = Math.max(worst, checkCandidates(await gpuTopK(x, R, V, k, T), x, R, V, k, T, `V=${V} k=${k} R=${R} T=${T}`));
        }
      }
    }
    // The sampler's tolerance for the mass holds with room.
    assert.ok(worst < MASS_TOLERANCE / 10, `worst relative error of the mass ${worst}`);
  });

  it('ties at the k-th value take the lowest indices (few distinct values, −Infinity runs, ±0)', async () => {
    const rng = new Rng(22);
    for (const V of [300, 1000, 49281]) {
      for (const k of [1, 5, 100, 256]) {
        // Values on a coarse grid: hundreds of ties at every value.
        const x = Float32Array.from({ length: V }, () => Math.round(rng.normal() * 2) / 2);
        checkCandidates(await gpuTopK(x, 1, V, k, 1), x, 1, V, k, 1, `grid V=${V} k=${k}`);
        // Fewer finite values than k: the rest is −Infinity, taken from the lowest indices.
        const y = new Float32Array(V).fill(-Infinity);
        for (let j = 0; j < Math.min(3, V); j++) y[Math.floor(rng.next() * V)] = rng.normal();
        checkCandidates(await gpuTopK(y, 1, V, k, 0.7), y, 1, V, k, 0.7, `-inf V=${V} k=${k}`);
        // Zeros of both signs.
        const z = Float32Array.from({ length: V }, (_, i) => (i % 3 === 0 ? -0 : i % 3 === 1 ? 0 : -1));
        checkCandidates(await gpuTopK(z, 1, V, k, 1), z, 1, V, k, 1, `±0 V=${V} k=${k}`);
      }
    }
  });

  it('NaN and +Infinity come first (the sampler refuses them), and k beyond V pads with none', async () => {
    const V = 1000;
    const rng = new Rng(23);
    const x = logits(rng, 1, V);
    x[700] = NaN;
    x[20] = Infinity;
    x[30] = NaN;
    const c = await gpuTopK(x, 1, V, 8, 1);
    checkCandidates(c, x, 1, V, 8, 1, 'NaN');
    assert.deepEqual(Array.from(c.ids.slice(0, 3)), [30, 700, 20]);
    const small = logits(rng, 2, 7);
    const d = await gpuTopK(small, 2, 7, 256, 1);
    assert.equal(d.ids.length, 7);
    checkCandidates(d, small, 2, 7, 256, 1, 'k > V');
  });

  it('refuses k outside [1, MAX_CANDIDATES]', () => {
    const g = new Graph();
    const l = g.input('logits', [1, 10], 'f32');
    const t = g.input('temperature', [1], 'f32');
    assert.throws(() => topK(g, l, t, 0), /k must be an integer/);
    assert.throws(() => topK(g, l, t, MAX_CANDIDATES + 1), /k must be an integer/);
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

  it('a NaN or +Infinity logit, or no finite one, is refused; greedy takes the first NaN as torch.argmax does', () => {
    const rng = new SeededRandom(1);
    const x = Float32Array.from([1, 2, NaN, 3]);
    assert.throws(() => sampleToken(x, { temperature: 1 }, rng), /logit of token 2 is NaN/);
    assert.throws(() => sampleToken(Float32Array.from([1, Infinity]), { temperature: 1, topK: 1 }, rng), /Infinity/);
    assert.throws(() => sampleToken(new Float32Array(4).fill(-Infinity), { temperature: 1 }, rng), /every logit is -Infinity/);
    assert.equal(sampleToken(x, { temperature: 0 }, rng), 2);
  });

  it('on the tiny SmolVLM, sampling with top-k 1 or a tiny top-p generates the greedy tokens', () =>
    withTinySmolVLM(async (model, ids, pixels) => {
      const tokens = async (it: AsyncIterable<{ token: number }>) => {
        const out: number[] = [];
        for await (const s of it) out.push(s.token);
        return out;
      };
      const base = { maxNewTokens: 8, stopAtEos: false };
      const want = await tokens(greedy(model, ids, pixels, base));
      // greedy() reads back the GPU argmax; temperature > 0 reads back the candidates and samples on the host.
      for (const o of [{ temperature: 1, topK: 1 }, { temperature: 3, topP: 1e-9, seed: 5 }]) {
        assert.deepEqual(await tokens(generateTokens(model, ids, pixels, { ...base, ...o })), want, JSON.stringify(o));
      }
    }));
});

describe('sampleCandidates', () => {
  /** Tokens drawn with one seed: from the candidates (null where they decline) and from the row. */
  const both = (x: Float32Array, c: Candidates, o: SamplingOptions, n: number, seed: number) => {
    const a = new SeededRandom(seed);
    const b = new SeededRandom(seed);
    const fromCandidates: (number | null)[] = [];
    const fromRow: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = sampleCandidates(c, o, a);
      fromCandidates.push(t);
      fromRow.push(sampleToken(x, o, b));
      if (t === null) b.next(); // a declined draw used no number; keep the two generators in step
    }
    return { fromCandidates, fromRow };
  };

  it('draws what sampleToken draws on the row, seed for seed, where the candidates decide (top-k within them, top-p with top-k, top-p alone)', async () => {
    const rng = new Rng(31);
    const varied: string[] = [];
    for (const V of [1000, 49281]) {
      for (const [o, scale] of [
        [{ temperature: 1, topK: 1 }, 2],
        [{ temperature: 0.7, topK: 40 }, 2],
        [{ temperature: 1.3, topK: 256 }, 1],
        [{ temperature: 1, topK: 50, topP: 0.9 }, 2],
        [{ temperature: 0.8, topP: 0.9 }, 4],
        [{ temperature: 1, topP: 0.5 }, 3],
        [{ temperature: 0.5, topK: V + 5, topP: 0.6 }, 3],
      ] as [SamplingOptions, number][]) {
        const x = rng.array(V, scale);
        const c = await gpuTopK(x, 1, V, MAX_CANDIDATES, o.temperature!);
        const { fromCandidates, fromRow } = both(x, c, o, 300, V);
        assert.ok(fromCandidates.every((t) => t !== null), `V=${V} ${JSON.stringify(o)}: the candidates declined ${fromCandidates.filter((t) => t === null).length} draws`);
        assert.deepEqual(fromCandidates, fromRow, `V=${V} ${JSON.stringify(o)}`);
        if (new Set(fromRow).size > 1) varied.push(`V=${V} ${JSON.stringify(o)}`);
      }
    }
    // Agreement on draws that never vary would show little: most cases draw several tokens.
    assert.ok(varied.length >= 10, `only ${varied.length} cases drew more than one token: ${varied.join('; ')}`);
  });

  it('declines, without drawing, where the candidates cannot decide: temperature alone, top-k beyond them, a nucleus wider than them', async () => {
    const rng = new Rng(32);
    const V = 5000;
    const x = rng.array(V, 0.2); // nearly flat: a 0.9 nucleus holds thousands of tokens
    const c = await gpuTopK(x, 1, V, MAX_CANDIDATES, 1);
    for (const o of [{ temperature: 1 }, { temperature: 1, topK: 300 }, { temperature: 1, topP: 0.9 }, { temperature: 1, topK: 1000, topP: 0.01 }]) {
      const g = new SeededRandom(3);
      assert.equal(sampleCandidates(c, o, g), null, JSON.stringify(o));
      assert.equal(g.next(), new SeededRandom(3).next(), `${JSON.stringify(o)}: no number drawn`);
    }
  });

  it('declines a nucleus that ends within the mass tolerance of top-p', () => {
    // Two tokens, probabilities 1/3 and 2/3 (logits log 1, log 2): a top-p at the first token's mass, to
    // within the tolerance, is undecided by a mass known to within it; well away from it, decided.
    const values = Float32Array.from([Math.log(2), 0, -30, -30]);
    const c: Candidates = { values: values.subarray(0, 2), ids: Uint32Array.of(1, 0), mass: 1.5, vocab: 4 };
    const edge = 2 / 3;
    assert.equal(sampleCandidates(c, { temperature: 1, topP: edge * (1 + MASS_TOLERANCE / 4) }, new SeededRandom(1)), null);
    assert.equal(sampleCandidates(c, { temperature: 1, topP: 0.5 }, new SeededRandom(1)), 1);
  });
});

describe('sampling on the tiny SmolVLM', () => {
  it('reads the logits row only where the candidates cannot decide, and draws the same tokens as reading it', () =>
    withTinySmolVLM(async (model, ids, pixels) => {
      // Count the steps that read their logits row.
      let rowReads = 0;
      const forward = model.forward.bind(model);
      model.forward = async (...a: Parameters<typeof model.forward>) => {
        const r = await forward(...a);
        return { ...r, logits: () => (rowReads++, r.logits()) };
      };
      const tokens = async (o: object) => {
        const out: number[] = [];
        for await (const s of generateTokens(model, ids, pixels, { maxNewTokens: 10, stopAtEos: false, ...o })) out.push(s.token);
        return out;
      };
      for (const [o, reads] of [
        [{ temperature: 1, topK: 20, seed: 1 }, 0],
        [{ temperature: 1.5, topK: 5, topP: 0.7, seed: 2 }, 0],
        [{ temperature: 0.05, topP: 0.9, seed: 3 }, 0], // a sharp distribution: the nucleus is a few tokens
        [{ temperature: 1, seed: 4 }, 10], // temperature alone needs the row
      ] as [SamplingOptions, number][]) {
        rowReads = 0;
        const got = await tokens(o);
        assert.equal(rowReads, reads, `${JSON.stringify(o)}: steps that read the row`);
        // withLogits reads every row and samples it on the host: the same draws.
        assert.deepEqual(got, await tokens({ ...o, withLogits: true }), JSON.stringify(o));
      }
    }));
});
