// The fuzzer's case seeds: every case draws from the one generator (src/random.ts) seeded by a hash
// (murmur3-style mixing) of (run seed, case number) alone, so that one case can be replayed.
import { SeededRandom } from '../../src/random.ts';

function mix32(x: number): number {
  let z = x >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** The PRNG seed of one case: a function of (run seed, case number) only. */
export function caseSeed(seed: number, caseNo: number): number {
  return mix32(mix32(seed >>> 0) ^ mix32(Math.imul(caseNo + 1, 0x9e3779b1) ^ 0x5bd1e995));
}

/** The generator of one case. */
export function caseRandom(seed: number, caseNo: number): SeededRandom {
  return new SeededRandom(caseSeed(seed, caseNo));
}
