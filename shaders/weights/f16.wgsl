// Weight format f16, native (needs shader-f16; an opt-in variant): W[n, k] at n·K + k, bound as vec4<f16>
// (buffers are sized in 16-byte multiples).
struct W8 { lo: vec4f, hi: vec4f }
/** Not affine-quantized: no zero point, so a kernel needs no Σx. */
const W_AFFINE = false;
fn w_group(K: u32) -> u32 { return K; }
//#per-binding
@group(0) @binding($B) var<storage, read> $W: array<vec4<f16>>;
fn $W_at(n: u32, k: u32, K: u32, R: u32) -> f32 {
  let e = n * K + k;
  return f32($W[e >> 2u][e & 3u]);
}
/** Needs K % 4 == 0. */
fn $W_at4(n: u32, k4: u32, K: u32, R: u32) -> vec4f { return vec4f($W[(n * K) / 4u + k4]); }
/** Elements e .. e + 7 (e % 8 == 0). */
fn $W_raw8(e: u32) -> W8 { return W8(vec4f($W[e >> 2u]), vec4f($W[(e >> 2u) + 1u])); }
fn $W_scale(n: u32, g: u32, K: u32, R: u32) -> f32 { return 1.0; }
fn $W_zero(n: u32, g: u32, K: u32, R: u32) -> f32 { return 0.0; }
