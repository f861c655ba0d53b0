// Row normalisations with f32 statistics whatever the storage: RMSNorm (Llama: x / sqrt(mean(x²) + eps) · w)
// and LayerNorm (x − mean) / sqrt(var + eps) · w + b, biased variance as torch. One workgroup per row;
// the mean is taken first and the variance from centred values, which stays accurate for large offsets.
// Weight and bias are WT (f32 or f16).

struct Params { rows: u32, D: u32, eps: f32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<WT>;
@group(0) @binding(3) var<storage, read> b: array<WT>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const WG: u32 = 128u;
var<workgroup> red: array<f32, WG>;

fn row_sum(v: f32, t: u32) -> f32 {
  red[t] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] += red[t + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn rmsnorm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let base = (wg.x + wg.y * 65535u) * p.D;
  if (wg.x + wg.y * 65535u >= p.rows) { return; }
  let t = lid.x;
  var ss = 0.0;
  for (var i = t; i < p.D; i += WG) { let v = x[base + i]; ss = fma(v, v, ss); }
  let inv = inverseSqrt(row_sum(ss, t) / f32(p.D) + p.eps);
  for (var i = t; i < p.D; i += WG) { y[base + i] = x[base + i] * inv * f32(g[i]); }
}

@compute @workgroup_size(WG)
fn layernorm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let base = (wg.x + wg.y * 65535u) * p.D;
  if (wg.x + wg.y * 65535u >= p.rows) { return; }
  let t = lid.x;
  var s1 = 0.0;
  for (var i = t; i < p.D; i += WG) { s1 += x[base + i]; }
  let mean = row_sum(s1, t) / f32(p.D);
  var s2 = 0.0;
  for (var i = t; i < p.D; i += WG) { let d = x[base + i] - mean; s2 = fma(d, d, s2); }
  let inv = inverseSqrt(row_sum(s2, t) / f32(p.D) + p.eps);
  for (var i = t; i < p.D; i += WG) { y[base + i] = (x[base + i] - mean) * inv * f32(g[i]) + f32(b[i]); }
}

// `rmsnorm_rows`, `layernorm_rows`: for SIMD-on-CPU drivers (lavapipe; see src/gpu/tuning.ts), where a
// load at one address in every lane is a broadcast and a barrier a coroutine switch. Every invocation of
// the row's workgroup takes the statistics over the whole row itself (broadcast vec4 loads, no shared
// memory, no barrier); then each writes every NWG-th vec4 of the output. Needs D % 4 == 0.
override NWG: u32 = 16u;

@group(0) @binding(5) var<storage, read> x4: array<vec4f>;
@group(0) @binding(6) var<storage, read> g4: array<vec4<WT>>;
@group(0) @binding(7) var<storage, read> b4: array<vec4<WT>>;
@group(0) @binding(8) var<storage, read_write> y4: array<vec4f>;

@compute @workgroup_size(NWG)
fn rmsnorm_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let D4 = p.D / 4u;
  let base = row * D4;
  var ss = vec4f(0.0);
  for (var i = 0u; i < D4; i++) { let v = x4[base + i]; ss = fma(v, v, ss); }
  let inv = inverseSqrt((ss.x + ss.y + ss.z + ss.w) / f32(p.D) + p.eps);
  for (var i = lid.x; i < D4; i += NWG) { y4[base + i] = x4[base + i] * inv * vec4f(g4[i]); }
}

@compute @workgroup_size(NWG)
fn layernorm_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let D4 = p.D / 4u;
  let base = row * D4;
  var s1 = vec4f(0.0);
  for (var i = 0u; i < D4; i++) { s1 += x4[base + i]; }
  let mean = (s1.x + s1.y + s1.z + s1.w) / f32(p.D);
  var s2 = vec4f(0.0);
  for (var i = 0u; i < D4; i++) { let d = x4[base + i] - mean; s2 = fma(d, d, s2); }
  let inv = inverseSqrt((s2.x + s2.y + s2.z + s2.w) / f32(p.D) + p.eps);
  for (var i = lid.x; i < D4; i += NWG) { y4[base + i] = (x4[base + i] - mean) * inv * vec4f(g4[i]) + vec4f(b4[i]); }
}
