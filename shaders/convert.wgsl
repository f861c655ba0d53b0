// Weight dtype conversion at load time, only where the caller asks for a width other than the
// checkpoint's (src/models/storage.ts): 16-bit (uploaded raw, two per u32) widened to f32 — BF16 → f32 is
// exact: the bf16 bits are the f32's high half — or F32 / BF16 narrowed to f16, F32 / F16 to bf16.

struct Params { count: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn bf16_to_f32(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;   // one u32 = two values
  if (2u * i >= p.count) { return; }
  let w = src[i];
  dst[2u * i] = bitcast<f32>(w << 16u);
  if (2u * i + 1u < p.count) { dst[2u * i + 1u] = bitcast<f32>(w & 0xffff0000u); }
}

@compute @workgroup_size(256)
fn f16_to_f32(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (2u * i >= p.count) { return; }
  let v = unpack2x16float(src[i]);
  dst[2u * i] = v.x;
  if (2u * i + 1u < p.count) { dst[2u * i + 1u] = v.y; }
}

// Narrowing to f16 (loadModel's dtype "f16"): pairs packed into one u32, clamped to the finite f16
// range (pack2x16float is indeterminate beyond it), round to nearest.
@group(0) @binding(1) var<storage, read> src_f32: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst_f16: array<u32>;

const F16_MAX: f32 = 65504.0;

fn pack_f16(a: f32, b: f32) -> u32 {
  return pack2x16float(clamp(vec2f(a, b), vec2f(-F16_MAX), vec2f(F16_MAX)));
}

@compute @workgroup_size(256)
fn f32_to_f16(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (2u * i >= p.count) { return; }
  var hi = 0.0;
  if (2u * i + 1u < p.count) { hi = src_f32[2u * i + 1u]; }
  dst_f16[i] = pack_f16(src_f32[2u * i], hi);
}

@compute @workgroup_size(256)
fn bf16_to_f16(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (2u * i >= p.count) { return; }
  let w = src[i];
  dst_f16[i] = pack_f16(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

// Re-rounding to bf16 (loadModel's dtype "bf16"): round to nearest even on the f32 bits, pairs packed
// into one u32 (the even element low). NaN stays NaN.
fn bf16_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if (x != x) { return (b >> 16u) | 0x40u; }
  return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

@compute @workgroup_size(256)
fn f32_to_bf16(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (2u * i >= p.count) { return; }
  var hi = 0.0;
  if (2u * i + 1u < p.count) { hi = src_f32[2u * i + 1u]; }
  dst_f16[i] = bf16_bits(src_f32[2u * i]) | (bf16_bits(hi) << 16u);
}

@compute @workgroup_size(256)
fn f16_to_bf16(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (2u * i >= p.count) { return; }
  let v = unpack2x16float(src[i]);
  dst_f16[i] = bf16_bits(v.x) | (bf16_bits(v.y) << 16u);
}
