// Weight format q4 / q8: affine-quantized, W[n, k] = (q[n, k] − z[n, g]) · s[n, g] with g = k / QG, in
// f32 (exact). One buffer per weight chunk of R rows holds, as u32 words one after the other:
//   codes   R·K·QBITS/32 words: element e = n·K + k in word e / (32/QBITS), bits (e % (32/QBITS))·QBITS
//           upwards (the lowest k in the low bits);
//   scales  ⌈R·K/QG / 2⌉ words of f16 pairs: scale i = n·(K/QG) + g in word i / 2, the even one low;
//   zeros   (QZ = 1) ⌈R·K/QG · QBITS / 32⌉ words, zero i packed as the codes are.
// Bound as plain u32s: a word taken out of a vec4 at a dynamic index costs a SIMD-on-CPU driver the
// whole vec4's gathers (q8 lm_head on lavapipe 15 ms bound as u32, 18 ms as vec4<u32>).
// With QZ = 0 the zero point is 2^(QBITS−1) (symmetric). K % QG == 0 and QG % 8 == 0.
//
// Every weight format (shaders/weights/*.wgsl) defines, for a weight bound as $W (K its row length, R
// its rows in this chunk): $W_at(n, k) the dequantized element; $W_at4(n, k4) elements 4·k4 .. +3;
// $W_raw8(e) the eight codes of elements e = n·K + 8·j .. e + 7 before scaling (the values themselves
// for float formats);
// $W_scale(n, g) and $W_zero(n, g) of group g; and w_group(K), the group length (K for float formats),
// so that a kernel may sum x·(q − z) over a group and scale once.
override QBITS: u32 = 4u;
override QG: u32 = 32u;
override QZ: u32 = 0u;
struct W8 { lo: vec4f, hi: vec4f }
/** Whether elements are (q − z)·s: a kernel keeps Σx for the zero only then. */
const W_AFFINE = true;
fn w_group(K: u32) -> u32 { return QG; }
const Q_SHIFTS = vec4u(0u, 1u, 2u, 3u);
/** The four codes from element e (e % 4 == 0) of the packed words in `word`. */
fn q_codes4(word: u32, e: u32) -> vec4f {
  let per = 32u / QBITS;
  return vec4f((vec4u(word >> ((e % per) * QBITS)) >> (Q_SHIFTS * QBITS)) & vec4u((1u << QBITS) - 1u));
}
//#per-binding
@group(0) @binding($B) var<storage, read> $W: array<u32>;
fn $W_word(i: u32) -> u32 { return $W[i]; }
fn $W_code(e: u32) -> u32 {
  let per = 32u / QBITS;
  return ($W_word(e / per) >> ((e % per) * QBITS)) & ((1u << QBITS) - 1u);
}
fn $W_scale(n: u32, g: u32, K: u32, R: u32) -> f32 {
  let i = n * (K / QG) + g;
  return unpack2x16float($W_word(R * (K / (32u / QBITS)) + (i >> 1u)))[i & 1u];
}
fn $W_zero(n: u32, g: u32, K: u32, R: u32) -> f32 {
  if (QZ == 0u) { return f32(1u << (QBITS - 1u)); }
  let per = 32u / QBITS;
  let groups = K / QG;
  let base = R * (K / per) + (R * groups + 1u) / 2u;
  let i = n * groups + g;
  return f32(($W_word(base + i / per) >> ((i % per) * QBITS)) & ((1u << QBITS) - 1u));
}
fn $W_at(n: u32, k: u32, K: u32, R: u32) -> f32 {
  let g = k / QG;
  return (f32($W_code(n * K + k)) - $W_zero(n, g, K, R)) * $W_scale(n, g, K, R);
}
fn $W_at4(n: u32, k4: u32, K: u32, R: u32) -> vec4f {
  let e = n * K + 4u * k4;
  let g = (4u * k4) / QG;
  return (q_codes4($W_word(e / (32u / QBITS)), e) - $W_zero(n, g, K, R)) * $W_scale(n, g, K, R);
}
/** The codes of elements e .. e + 7 (e % 8 == 0): one word of q4, two of q8. */
fn $W_raw8(e: u32) -> W8 {
  if (QBITS == 4u) {
    let word = $W_word(e / 8u);
    return W8(q_codes4(word, 0u), q_codes4(word, 4u));
  }
  return W8(q_codes4($W[e / 4u], 0u), q_codes4($W[e / 4u + 1u], 0u));
}
