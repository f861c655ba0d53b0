// Elementwise kernels over flat f32 tensors: add, mul, scale, activations, the fused SwiGLU product
// silu(gate)·up, and a copy of rows between offsets (the last-row slice, rows into a state tensor; the KV
// cache is appended by rope_qkv in rope.wgsl). One invocation per element of type ET: vec4f where the
// count (and for copy_rows the row) is a multiple of 4, else f32; counts and rows below are in ET units.
// The grid is 2-D so that tensors above 65535 workgroups of 256 still fit.
//#include activation
alias AT = ET;

struct Params {
  count: u32,      // elements to produce
  row: u32,        // copy_rows: elements per row
  dst_row0: u32,   // copy_rows: first destination row
  act: u32,        // unary: activation code
  alpha: f32,      // scale: factor
  src_row0: u32,   // copy_rows: first source row
  _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<ET>;
@group(0) @binding(2) var<storage, read> b: array<ET>;
@group(0) @binding(3) var<storage, read_write> out: array<ET>;

override WG: u32 = 256u;

fn index(gid: vec3u, nwg: vec3u) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = index(gid, nwg);
  if (i < p.count) { out[i] = a[i] + b[i]; }
}

@compute @workgroup_size(WG)
fn mul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = index(gid, nwg);
  if (i < p.count) { out[i] = a[i] * b[i]; }
}

@compute @workgroup_size(WG)
fn silu_mul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = index(gid, nwg);
  if (i < p.count) { out[i] = activate(a[i], ACT_SILU) * b[i]; }
}

@compute @workgroup_size(WG)
fn scale(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = index(gid, nwg);
  if (i < p.count) { out[i] = a[i] * p.alpha; }
}

@compute @workgroup_size(WG)
fn unary(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = index(gid, nwg);
  if (i < p.count) { out[i] = activate(a[i], p.act); }
}

@compute @workgroup_size(WG)
fn copy_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = index(gid, nwg);
  if (i < p.count) { out[p.dst_row0 * p.row + i] = a[p.src_row0 * p.row + i]; }
}
