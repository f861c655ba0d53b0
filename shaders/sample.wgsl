// argmax over one row of logits (the last position), ties to the lowest index as torch.argmax.
// A single workgroup strides over the vocabulary, then reduces (value, index) pairs.

struct Params { row: u32, V: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

const WG: u32 = 256u;
var<workgroup> bv: array<f32, WG>;
var<workgroup> bi: array<u32, WG>;

@compute @workgroup_size(WG)
fn argmax(@builtin(local_invocation_id) lid: vec3u) {
  let t = lid.x;
  let base = p.row * p.V;
  var best = -0x1.fffffep+127f;
  var idx = 0xffffffffu;
  for (var i = t; i < p.V; i += WG) {
    let v = logits[base + i];
    if (v > best || idx == 0xffffffffu) { best = v; idx = i; }
  }
  bv[t] = best;
  bi[t] = idx;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) {
      let ov = bv[t + s];
      let oi = bi[t + s];
      if (oi != 0xffffffffu && (ov > bv[t] || (ov == bv[t] && oi < bi[t]) || bi[t] == 0xffffffffu)) {
        bv[t] = ov;
        bi[t] = oi;
      }
    }
    workgroupBarrier();
  }
  if (t == 0u) { out[0] = bi[0]; }
}
