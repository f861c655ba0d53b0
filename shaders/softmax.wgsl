// Softmax over the last dimension, f32 statistics: max, then Σ exp(x − max), then normalise.
// One workgroup per row. A bench reference (src/ops/softmax.ts): the models' attention does its softmax online.

struct Params { rows: u32, D: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 128u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let base = row * p.D;
  let t = lid.x;
  var m = -0x1.fffffep+127f;
  for (var i = t; i < p.D; i += WG) { m = max(m, x[base + i]); }
  red[t] = m;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] = max(red[t], red[t + s]); }
    workgroupBarrier();
  }
  m = red[0];
  workgroupBarrier();
  var sum = 0.0;
  for (var i = t; i < p.D; i += WG) { sum += exp(x[base + i] - m); }
  red[t] = sum;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] += red[t + s]; }
    workgroupBarrier();
  }
  let inv = 1.0 / red[0];
  for (var i = t; i < p.D; i += WG) { y[base + i] = exp(x[base + i] - m) * inv; }
}

// `softmax_rows`, for SIMD-on-CPU drivers (lavapipe; see src/gpu/tuning.ts): every invocation of the
// row's workgroup takes the max and the sum itself from broadcast vec4 loads (no shared memory, no
// barrier), then writes every NWG-th vec4 of the output. Needs D % 4 == 0.
override NWG: u32 = 16u;
const NEG4 = vec4f(-0x1.fffffep+127f);

@group(0) @binding(3) var<storage, read> x4: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> y4: array<vec4f>;

@compute @workgroup_size(NWG)
fn softmax_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let D4 = p.D / 4u;
  let base = row * D4;
  var m4 = NEG4;
  for (var i = 0u; i < D4; i++) { m4 = max(m4, x4[base + i]); }
  let m = max(max(m4.x, m4.y), max(m4.z, m4.w));
  var s4 = vec4f(0.0);
  for (var i = 0u; i < D4; i++) { s4 += exp(x4[base + i] - m); }
  let inv = 1.0 / (s4.x + s4.y + s4.z + s4.w);
  for (var i = lid.x; i < D4; i += NWG) { y4[base + i] = exp(x4[base + i] - m) * inv; }
}
