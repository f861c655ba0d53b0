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
