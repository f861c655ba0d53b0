// The one seeded random-number generator, of sampling (generate.ts: a seed reproduces a reply), the
// tests' data, the loader fuzzer and the load bench: xorshift128+ (Vigna, "Further scramblings of
// Marsaglia's xorshift generators") seeded through splitmix64, its top 53 bits as a double in [0, 1).
// The 64-bit state words are held as 32-bit halves: BigInt arithmetic made test data ~20× slower.

/** The two 64-bit state words for a seed: splitmix64 outputs from the seed times the golden ratio. */
export function seedState(seed: number): [bigint, bigint] {
  let s = BigInt.asUintN(64, BigInt(Math.floor(seed)) * 0x9e3779b97f4a7c15n + 0x632be59bd9b4e019n);
  const mix = () => {
    s = BigInt.asUintN(64, s + 0x9e3779b97f4a7c15n);
    let z = s;
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
    return z ^ (z >> 31n);
  };
  return [mix(), mix()];
}

export class SeededRandom {
  // State words a = (ah, al) and b = (bh, bl), unsigned 32-bit halves.
  private ah: number;
  private al: number;
  private bh: number;
  private bl: number;

  constructor(seed: number) {
    const [a, b] = seedState(seed);
    this.ah = Number(a >> 32n);
    this.al = Number(a & 0xffffffffn);
    this.bh = Number(b >> 32n);
    this.bl = Number(b & 0xffffffffn);
  }

  /** Uniform in [0, 1), 53 random bits. */
  next(): number {
    // x = a; y = b; a = y; x ^= x << 23; b = x ^ y ^ (x >> 17) ^ (y >> 26); out = b + y.
    let xh = this.ah;
    let xl = this.al;
    const yh = this.bh;
    const yl = this.bl;
    this.ah = yh;
    this.al = yl;
    xh = (xh ^ ((xh << 23) | (xl >>> 9))) >>> 0;
    xl = (xl ^ (xl << 23)) >>> 0;
    const bh = (xh ^ yh ^ (xh >>> 17) ^ (yh >>> 26)) >>> 0;
    const bl = (xl ^ yl ^ ((xl >>> 17) | (xh << 15)) ^ ((yl >>> 26) | (yh << 6))) >>> 0;
    this.bh = bh;
    this.bl = bl;
    const lo = bl + yl;
    const hi = (bh + yh + (lo > 0xffffffff ? 1 : 0)) >>> 0;
    // (b + y) >> 11: the top 21 bits of the high half above the top 32 − 11 of the low half.
    return (hi * 2 ** 21 + ((lo >>> 0) >>> 11)) / 2 ** 53;
  }

  /** Uniform integer in [0, 2^32). */
  u32(): number {
    return Math.floor(this.next() * 2 ** 32);
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Uniform integer in [lo, hi]. */
  between(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  bool(p = 0.5): boolean {
    return this.next() < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }

  /** One of the values, each with probability proportional to its weight. */
  weighted<T>(xs: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of xs) total += w;
    let r = this.next() * total;
    for (const [w, v] of xs) {
      if ((r -= w) < 0) return v;
    }
    return xs[xs.length - 1][1];
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    const u = Math.max(this.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** n normal values times `scale`, as f32. */
  array(n: number, scale = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.normal() * scale;
    return a;
  }
}
