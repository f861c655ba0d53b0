// The 16-bit float formats (f16x2.wgsl, bf16x2.wgsl), which differ only in how a u32 of two elements
// widens (half_pair, defined by the including file): element e = n·K + k in word e / 2, the even
// element in the low half. Bound as vec4<u32> (eight elements, one 16-byte load per lane).
struct W8 { lo: vec4f, hi: vec4f }
/** Not affine-quantized: no zero point, so a kernel needs no Σx. */
const W_AFFINE = false;
fn w_group(K: u32) -> u32 { return K; }
//#per-binding
@group(0) @binding($B) var<storage, read> $W: array<vec4<u32>>;
fn $W_at(n: u32, k: u32, K: u32, R: u32) -> f32 {
  let e = n * K + k;
  let wi = e >> 1u;
  return half_pair($W[wi >> 2u][wi & 3u])[e & 1u];
}
/** Needs K % 4 == 0 (four elements are half of a vec4). */
fn $W_at4(n: u32, k4: u32, K: u32, R: u32) -> vec4f {
  let e = n * K + 4u * k4;
  let v = $W[e >> 3u];
  let h = select(v.xy, v.zw, (e & 4u) != 0u);
  return vec4f(half_pair(h.x), half_pair(h.y));
}
/** Elements e .. e + 7 (e % 8 == 0): one vec4 of pairs. */
fn $W_raw8(e: u32) -> W8 {
  let v = $W[e >> 3u];
  return W8(vec4f(half_pair(v.x), half_pair(v.y)), vec4f(half_pair(v.z), half_pair(v.w)));
}
fn $W_scale(n: u32, g: u32, K: u32, R: u32) -> f32 { return 1.0; }
fn $W_zero(n: u32, g: u32, K: u32, R: u32) -> f32 { return 0.0; }
