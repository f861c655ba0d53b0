// The one seeded generator (src/random.ts) against the BigInt xorshift128+ step that sampling used before
// it (written out here as the specification, from the same seeding): the same numbers for the same seed,
// so that a seed given to generate() still draws the same reply. And its helpers' ranges.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRandom, seedState } from '../src/random.ts';

/** xorshift128+ over BigInt, its top 53 bits as a double. */
function* reference(seed: number): Generator<number> {
  let [a, b] = seedState(seed);
  for (;;) {
    let x = a;
    const y = b;
    a = y;
    x = BigInt.asUintN(64, x ^ (x << 23n));
    b = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    yield Number(BigInt.asUintN(64, b + y) >> 11n) / 2 ** 53;
  }
}

it('draws what the BigInt xorshift128+ draws, seed for seed', () => {
  for (const seed of [0, 1, 7, -5, 2 ** 40 + 3, 123456789.9]) {
    const r = new SeededRandom(seed);
    const ref = reference(seed);
    for (let i = 0; i < 20000; i++) assert.equal(r.next(), ref.next().value, `seed ${seed}, draw ${i}`);
  }
});

it('helpers stay in range and cover it', () => {
  const r = new SeededRandom(3);
  const seen = new Set<number>();
  let sum = 0;
  for (let i = 0; i < 10000; i++) {
    const u = r.next();
    assert.ok(u >= 0 && u < 1);
    sum += u;
    const k = r.between(-2, 2);
    assert.ok(Number.isInteger(k) && k >= -2 && k <= 2);
    seen.add(k);
    const w = r.u32();
    assert.ok(Number.isInteger(w) && w >= 0 && w < 2 ** 32);
  }
  assert.equal(seen.size, 5);
  assert.ok(Math.abs(sum / 10000 - 0.5) < 0.02, `mean ${sum / 10000}`);
  assert.equal(r.weighted([[0, 'never'], [1, 'always']] as const), 'always');
});
