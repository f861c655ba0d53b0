// Weight format f16, native (needs shader-f16; an opt-in variant): W[n, k] at n·K + k of array<f16>.
struct W8 { lo: vec4f, hi: vec4f }
fn w_group(K: u32) -> u32 { return K; }
//#per-binding
@group(0) @binding($B) var<storage, read> $W: array<f16>;
fn $W_at(n: u32, k: u32, K: u32, R: u32) -> f32 { return f32($W[n * K + k]); }
fn $W_at4(n: u32, k4: u32, K: u32, R: u32) -> vec4f {
  let i = n * K + 4u * k4;
  return vec4f(f32($W[i]), f32($W[i + 1u]), f32($W[i + 2u]), f32($W[i + 3u]));
}
fn $W_raw8(n: u32, k8: u32, K: u32) -> W8 {
  let i = n * K + 8u * k8;
  return W8(vec4f(f32($W[i]), f32($W[i + 1u]), f32($W[i + 2u]), f32($W[i + 3u])),
            vec4f(f32($W[i + 4u]), f32($W[i + 5u]), f32($W[i + 6u]), f32($W[i + 7u])));
}
fn $W_scale(n: u32, g: u32, K: u32, R: u32) -> f32 { return 1.0; }
fn $W_zero(n: u32, g: u32, K: u32, R: u32) -> f32 { return 0.0; }
