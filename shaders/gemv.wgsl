// Linear layers for decode (M small, typically 1; see linear.wgsl for the operation) on GPUs:
//   gemv:     a workgroup of 32 × GROWS invocations computes GROWS outputs; the 32 lanes of a row stride
//             over K (four consecutive weights each, read and dequantized with w_at4, where K % 4 == 0
//             and A is plain; one at a time otherwise) and reduce with subgroupAdd where the module has
//             subgroups (see row_sum), else in shared memory; z of the grid is the row m.
//   gemv_glu: SwiGLU in one pass, y = silu(a·Wgᵀ) · (a·Wuᵀ), reading the gate rows (w) and the up rows
//             (w_up) of the same output column together, so the [M, I] gate and up activations and the
//             separate elementwise product never exist.
// A is read plainly, or (partials.on) as the output of split-KV attention, merged on the fly from its
// partials [M·heads·splits, d + 2] (see attention_partial in attention.wgsl): A[r, h·d + i] =
// Σ_s o_s[i]·e^(m_s − m) / Σ_s l_s·e^(m_s − m). The decode step's o_proj reads attention this way, so
// attention_combine is not dispatched. No repeating residual here.
//#include linear

struct Partials { on: u32, heads: u32, d: u32, splits: u32 }
struct Params { l: LinearParams, partials: Partials }
@group(0) @binding(0) var<uniform> p: Params;
//#weights w 2
//#weights w_up 7

const LANES: u32 = 32u;
override GROWS: u32 = 8u;
var<workgroup> lanes: array<f32, LANES * GROWS>;

/** A[r, k]: plain, or merged from split-KV attention partials. */
fn gemv_a(r: u32, k: u32) -> f32 {
  if (p.partials.on == 0u) { return a[r * p.l.K + k]; }
  let d = p.partials.d;
  let stride = d + 2u;
  let base = (r * p.partials.heads + k / d) * p.partials.splits * stride;
  var mx = -0x1.fffffep+127f;
  for (var z = 0u; z < p.partials.splits; z++) { mx = max(mx, a[base + z * stride + d]); }
  var o = 0.0;
  var l = 0.0;
  for (var z = 0u; z < p.partials.splits; z++) {
    let at = base + z * stride;
    let e = exp(a[at + d] - mx);
    o = fma(a[at + k % d], e, o);
    l = fma(a[at + d + 1u], e, l);
  }
  return o / l;
}

/** Whether the lanes read A and W four at a time. */
fn by_four() -> bool {
  return p.l.K % 4u == 0u && p.partials.on == 0u;
}

//#if subgroups
// With subgroups (and a subgroup size of at most 32, which the op checks), each subgroup sums its lanes
// with subgroupAdd and each row adds up its 32 / subgroup-size subgroup sums from shared memory: two
// barriers instead of six. This assumes subgroups are runs of consecutive local_invocation_index, as
// the Vulkan, Metal and D3D12 drivers lay them out (lavapipe: 8 lanes, NVIDIA: 32).
var<private> sg_lane: u32;
var<private> sg_size: u32;

/** The sum of v over the 32 lanes of this invocation's workgroup row, in every lane of the row. */
fn row_sum(lid: vec3u, v: f32) -> f32 {
  let s = subgroupAdd(v);
  if (sg_lane == 0u) { lanes[lid.y * LANES + lid.x / sg_size] = s; }
  workgroupBarrier();
  var t = 0.0;
  for (var i = 0u; i < LANES / sg_size; i++) { t += lanes[lid.y * LANES + i]; }
  workgroupBarrier();
  return t;
}
//#else
/** The sum of v over the 32 lanes of this invocation's workgroup row, in every lane of the row. */
fn row_sum(lid: vec3u, v: f32) -> f32 {
  lanes[lid.y * LANES + lid.x] = v;
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (lid.x < s) { lanes[lid.y * LANES + lid.x] += lanes[lid.y * LANES + lid.x + s]; }
    workgroupBarrier();
  }
  let t = lanes[lid.y * LANES];
  workgroupBarrier();
  return t;
}
//#endif

@compute @workgroup_size(32, GROWS)
fn gemv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
//#if subgroups
        @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_size) sgs: u32,
//#endif
) {
//#if subgroups
  sg_lane = sgi;
  sg_size = sgs;
//#endif
  let n = wg.x * GROWS + lid.y;
  let m = wg.z;
  let K = p.l.K;
  var acc = 0.0;
  var ss = 0.0;
  if (n < p.l.N) {
    if (by_four()) {
      var acc4 = vec4f(0.0);
      var ss4 = vec4f(0.0);
      for (var k4 = lid.x; k4 < K / 4u; k4 += LANES) {
        let x = a4[m * (K / 4u) + k4];
        ss4 = fma(x, x, ss4);
        acc4 = fma(x * norm_w4(k4), w_at4(n, k4, K, p.l.N), acc4);
      }
      acc = dot(acc4, vec4f(1.0));
      ss = dot(ss4, vec4f(1.0));
    } else {
      for (var k = lid.x; k < K; k += LANES) {
        let x = gemv_a(m, k);
        ss = fma(x, x, ss);
        acc = fma(x * norm_w(k), w_at(n, k, K, p.l.N), acc);
      }
    }
  }
  let scale = row_scale(row_sum(lid, ss));
  let dot = row_sum(lid, acc);
  if (lid.x == 0u && n < p.l.N) { epilogue(m, n, dot * scale); }
}

@compute @workgroup_size(32, GROWS)
fn gemv_glu(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
//#if subgroups
            @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_size) sgs: u32,
//#endif
) {
//#if subgroups
  sg_lane = sgi;
  sg_size = sgs;
//#endif
  let n = wg.x * GROWS + lid.y;
  let m = wg.z;
  let K = p.l.K;
  var g = 0.0;
  var u = 0.0;
  var ss = 0.0;
  if (n < p.l.N) {
    if (by_four()) {
      var g4 = vec4f(0.0);
      var u4 = vec4f(0.0);
      var ss4 = vec4f(0.0);
      for (var k4 = lid.x; k4 < K / 4u; k4 += LANES) {
        let x0 = a4[m * (K / 4u) + k4];
        ss4 = fma(x0, x0, ss4);
        let x = x0 * norm_w4(k4);
        g4 = fma(x, w_at4(n, k4, K, p.l.N), g4);
        u4 = fma(x, w_up_at4(n, k4, K, p.l.N), u4);
      }
      g = dot(g4, vec4f(1.0));
      u = dot(u4, vec4f(1.0));
      ss = dot(ss4, vec4f(1.0));
    } else {
      for (var k = lid.x; k < K; k += LANES) {
        let x0 = a[m * K + k];
        ss = fma(x0, x0, ss);
        let x = x0 * norm_w(k);
        g = fma(x, w_at(n, k, K, p.l.N), g);
        u = fma(x, w_up_at(n, k, K, p.l.N), u);
      }
    }
  }
  let scale = row_scale(row_sum(lid, ss));
  let gs = row_sum(lid, g) * scale;
  let us = row_sum(lid, u) * scale;
  if (lid.x == 0u && n < p.l.N) { y[m * p.l.ldc + p.l.n0 + n] = activate(gs, ACT_SILU) * us; }
}
