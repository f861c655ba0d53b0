// Linear layers for SIMD-on-CPU drivers (lavapipe; see src/gpu/tuning.ts), where an invocation is one
// lane of a CPU vector register: a load at the same address in every lane is one scalar load and a
// broadcast, any other is a gather, and a barrier is a coroutine switch. So there is no shared memory
// here. A workgroup takes RM rows of A, which every lane reads alike (vec4, broadcast), and each
// invocation RC output columns RWG apart, whose weight rows it gathers eight elements at a time (one u32
// of q4 codes, two of q8, four of 16-bit pairs, two vec4 of f32). Over each group of the weight format it
// sums x·q and x, and at the group's end adds s·(Σx·q − z·Σx): the zero costs one add per row of A and
// step, not one per weight (a float format is one group of scale 1, and keeps no Σx: W_AFFINE is false).
// With RM = M it is the decode gemv.
//   matmul_rows:   the linear layer (see linear.wgsl);
//   gemv_glu_rows: SwiGLU's silu(a·Wgᵀ) · (a·Wuᵀ) over the gate (w) and up (w_up) weights at once.
// A gathered A (pixel shuffle, im2col; see a-operand.wgsl) is read in its runs of consecutive floats,
// addressed once per run. Needs K % 8 == 0, a group length that is a multiple of 8, and for the gathered
// A modes E % 8 == 0 (pixel shuffle) or P % 8 == 0 and W % 4 == 0 (im2col).
//#include linear
//#include a-operand

struct Params { l: LinearParams, a: AOperand }
@group(0) @binding(0) var<uniform> p: Params;
//#weights w 2
//#weights w_up 7

override RM: u32 = 8u;
override RC: u32 = 4u;
override RWG: u32 = 64u;
const RM_MAX: u32 = 8u;
const RC_MAX: u32 = 4u;

/** A group's Σ x·(q − z) from its Σ x·q (four lanes) and Σ x. */
fn group_sum(xq: vec4f, x: vec4f, z: f32) -> f32 {
  if (!W_AFFINE) { return dot(xq, vec4f(1.0)); }
  return dot(xq, vec4f(1.0)) - z * dot(x, vec4f(1.0));
}

@compute @workgroup_size(RWG)
fn matmul_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let m0 = wg.y * RM;
  let nb = wg.x * RWG * RC + lid.x;
  let K = p.l.K;
  let K8 = K / 8u;
  let G8 = w_group(K) / 8u;
  var acc: array<array<f32, RC_MAX>, RM_MAX>;
  var part: array<array<vec4f, RC_MAX>, RM_MAX>;
  var xsum: array<vec4f, RM_MAX>;
  var scale: array<f32, RC_MAX>;
  var zero: array<f32, RC_MAX>;
  var wrow: array<u32, RC_MAX>;
  var wbase: array<u32, RC_MAX>;
  // Rows and columns past the end read the last one (in bounds) and are not written.
  for (var j = 0u; j < RC; j++) {
    wrow[j] = min(nb + j * RWG, p.l.N - 1u);
    wbase[j] = wrow[j] * K;
    scale[j] = w_scale(wrow[j], 0u, K, p.l.N);
    zero[j] = w_zero(wrow[j], 0u, K, p.l.N);
  }
  let run8 = a_run() / 8u;
  var ss: array<vec4f, RM_MAX>;
  // The step at which the next group begins (a counter: an integer modulo per step is a division per lane on a CPU).
  // A float format is one group, begun above: its kernels have no group branch at all.
  var next_group = select(K8, G8, W_AFFINE);
  for (var r0 = 0u; r0 < K8; r0 += run8) {
    var abase: array<u32, RM_MAX>;
    for (var i = 0u; i < RM; i++) { abase[i] = a_index(min(m0 + i, p.l.M - 1u), 8u * r0) / 4u; }
    for (var k8 = 0u; k8 < run8; k8++) {
      let kk = r0 + k8;
      if (W_AFFINE && kk == next_group) {
        next_group += G8;
        // The next group begins: scale the last one's sums into the totals, and fetch this one's scale and zero.
        for (var j = 0u; j < RC; j++) {
          for (var i = 0u; i < RM; i++) {
            acc[i][j] = fma(group_sum(part[i][j], xsum[i], zero[j]), scale[j], acc[i][j]);
            part[i][j] = vec4f(0.0);
          }
          scale[j] = w_scale(wrow[j], kk / G8, K, p.l.N);
          zero[j] = w_zero(wrow[j], kk / G8, K, p.l.N);
        }
        for (var i = 0u; i < RM; i++) { xsum[i] = vec4f(0.0); }
      }
      var lo: array<vec4f, RM_MAX>;
      var hi: array<vec4f, RM_MAX>;
      let nlo = norm_w4(2u * kk);
      let nhi = norm_w4(2u * kk + 1u);
      for (var i = 0u; i < RM; i++) {
        let xl = a4[abase[i] + 2u * k8];
        let xh = a4[abase[i] + 2u * k8 + 1u];
        ss[i] = fma(xl, xl, fma(xh, xh, ss[i]));
        lo[i] = xl * nlo;
        hi[i] = xh * nhi;
        if (W_AFFINE) { xsum[i] += lo[i] + hi[i]; }
      }
      for (var j = 0u; j < RC; j++) {
        let q = w_raw8(wbase[j] + 8u * kk);
        for (var i = 0u; i < RM; i++) { part[i][j] = fma(lo[i], q.lo, fma(hi[i], q.hi, part[i][j])); }
      }
    }
  }
  for (var i = 0u; i < RM; i++) {
    for (var j = 0u; j < RC; j++) {
      let m = m0 + i;
      let n = nb + j * RWG;
      let total = fma(group_sum(part[i][j], xsum[i], zero[j]), scale[j], acc[i][j]);
      if (m < p.l.M && n < p.l.N) { epilogue(m, n, total * row_scale(dot(ss[i], vec4f(1.0)))); }
    }
  }
}

@compute @workgroup_size(RWG)
fn gemv_glu_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let m0 = wg.y * RM;
  let nb = wg.x * RWG * RC + lid.x;
  let K = p.l.K;
  let K8 = K / 8u;
  let G8 = w_group(K) / 8u;
  var g: array<array<f32, RC_MAX>, RM_MAX>;
  var u: array<array<f32, RC_MAX>, RM_MAX>;
  var gpart: array<array<vec4f, RC_MAX>, RM_MAX>;
  var upart: array<array<vec4f, RC_MAX>, RM_MAX>;
  var xsum: array<vec4f, RM_MAX>;
  var gscale: array<f32, RC_MAX>;
  var uscale: array<f32, RC_MAX>;
  var gzero: array<f32, RC_MAX>;
  var uzero: array<f32, RC_MAX>;
  var wrow: array<u32, RC_MAX>;
  var wbase: array<u32, RC_MAX>;
  for (var j = 0u; j < RC; j++) {
    wrow[j] = min(nb + j * RWG, p.l.N - 1u);
    wbase[j] = wrow[j] * K;
    gscale[j] = w_scale(wrow[j], 0u, K, p.l.N);
    gzero[j] = w_zero(wrow[j], 0u, K, p.l.N);
    uscale[j] = w_up_scale(wrow[j], 0u, K, p.l.N);
    uzero[j] = w_up_zero(wrow[j], 0u, K, p.l.N);
  }
  var ss: array<vec4f, RM_MAX>;
  var next_group = select(K8, G8, W_AFFINE);
  for (var kk = 0u; kk < K8; kk++) {
    if (W_AFFINE && kk == next_group) {
      next_group += G8;
      for (var j = 0u; j < RC; j++) {
        for (var i = 0u; i < RM; i++) {
          g[i][j] = fma(group_sum(gpart[i][j], xsum[i], gzero[j]), gscale[j], g[i][j]);
          u[i][j] = fma(group_sum(upart[i][j], xsum[i], uzero[j]), uscale[j], u[i][j]);
          gpart[i][j] = vec4f(0.0);
          upart[i][j] = vec4f(0.0);
        }
        gscale[j] = w_scale(wrow[j], kk / G8, K, p.l.N);
        gzero[j] = w_zero(wrow[j], kk / G8, K, p.l.N);
        uscale[j] = w_up_scale(wrow[j], kk / G8, K, p.l.N);
        uzero[j] = w_up_zero(wrow[j], kk / G8, K, p.l.N);
      }
      for (var i = 0u; i < RM; i++) { xsum[i] = vec4f(0.0); }
    }
    var lo: array<vec4f, RM_MAX>;
    var hi: array<vec4f, RM_MAX>;
    let nlo = norm_w4(2u * kk);
    let nhi = norm_w4(2u * kk + 1u);
    for (var i = 0u; i < RM; i++) {
      let row = min(m0 + i, p.l.M - 1u) * (K / 4u);
      let xl = a4[row + 2u * kk];
      let xh = a4[row + 2u * kk + 1u];
      ss[i] = fma(xl, xl, fma(xh, xh, ss[i]));
      lo[i] = xl * nlo;
      hi[i] = xh * nhi;
      if (W_AFFINE) { xsum[i] += lo[i] + hi[i]; }
    }
    for (var j = 0u; j < RC; j++) {
      let qg = w_raw8(wbase[j] + 8u * kk);
      let qu = w_up_raw8(wbase[j] + 8u * kk);
      for (var i = 0u; i < RM; i++) {
        gpart[i][j] = fma(lo[i], qg.lo, fma(hi[i], qg.hi, gpart[i][j]));
        upart[i][j] = fma(lo[i], qu.lo, fma(hi[i], qu.hi, upart[i][j]));
      }
    }
  }
  for (var i = 0u; i < RM; i++) {
    for (var j = 0u; j < RC; j++) {
      let m = m0 + i;
      let n = nb + j * RWG;
      if (m < p.l.M && n < p.l.N) {
        let scale = row_scale(dot(ss[i], vec4f(1.0)));
        let gs = fma(group_sum(gpart[i][j], xsum[i], gzero[j]), gscale[j], g[i][j]) * scale;
        let us = fma(group_sum(upart[i][j], xsum[i], uzero[j]), uscale[j], u[i][j]) * scale;
        y[m * p.l.ldc + p.l.n0 + n] = activate(gs, ACT_SILU) * us;
      }
    }
  }
}
