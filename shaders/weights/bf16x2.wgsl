// Weight format bf16x2: bfloat16 as the checkpoint stores it, two per u32 (element e = n·K + k in word
// e / 2, the even element in the low half). A bf16 is the high half of an f32, so widening is a shift
// or a mask: exact, core WGSL.
struct W8 { lo: vec4f, hi: vec4f }
fn w_group(K: u32) -> u32 { return K; }
fn bf16_pair(w: u32) -> vec2f { return vec2f(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u)); }
//#per-binding
@group(0) @binding($B) var<storage, read> $W: array<u32>;
fn $W_at(n: u32, k: u32, K: u32, R: u32) -> f32 {
  let e = n * K + k;
  return bf16_pair($W[e >> 1u])[e & 1u];
}
/** Needs K % 4 == 0 (so that the four elements start a word). */
fn $W_at4(n: u32, k4: u32, K: u32, R: u32) -> vec4f {
  let i = (n * K + 4u * k4) >> 1u;
  return vec4f(bf16_pair($W[i]), bf16_pair($W[i + 1u]));
}
fn $W_raw8(n: u32, k8: u32, K: u32) -> W8 {
  let i = (n * K + 8u * k8) >> 1u;
  return W8(vec4f(bf16_pair($W[i]), bf16_pair($W[i + 1u])), vec4f(bf16_pair($W[i + 2u]), bf16_pair($W[i + 3u])));
}
fn $W_scale(n: u32, g: u32, K: u32, R: u32) -> f32 { return 1.0; }
fn $W_zero(n: u32, g: u32, K: u32, R: u32) -> f32 { return 0.0; }
