// Weight format f16x2: IEEE half floats as the checkpoint stores them, two per u32 (element e = n·K + k
// in word e / 2, the even element in the low half), unpacked with core WGSL's unpack2x16float: no
// shader-f16 needed, exact.
struct W8 { lo: vec4f, hi: vec4f }
fn w_group(K: u32) -> u32 { return K; }
//#per-binding
@group(0) @binding($B) var<storage, read> $W: array<u32>;
fn $W_at(n: u32, k: u32, K: u32, R: u32) -> f32 {
  let e = n * K + k;
  return unpack2x16float($W[e >> 1u])[e & 1u];
}
/** Needs K % 4 == 0 (so that the four elements start a word). */
fn $W_at4(n: u32, k4: u32, K: u32, R: u32) -> vec4f {
  let i = (n * K + 4u * k4) >> 1u;
  return vec4f(unpack2x16float($W[i]), unpack2x16float($W[i + 1u]));
}
fn $W_raw8(n: u32, k8: u32, K: u32) -> W8 {
  let i = (n * K + 8u * k8) >> 1u;
  return W8(vec4f(unpack2x16float($W[i]), unpack2x16float($W[i + 1u])),
            vec4f(unpack2x16float($W[i + 2u]), unpack2x16float($W[i + 3u])));
}
fn $W_scale(n: u32, g: u32, K: u32, R: u32) -> f32 { return 1.0; }
fn $W_zero(n: u32, g: u32, K: u32, R: u32) -> f32 { return 0.0; }
