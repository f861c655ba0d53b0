// Token embedding gather with image features scattered in: row t of the output is
//   image[img_row[t]]                 when img_row[t] != NONE (an <image> placeholder),
//   newline                           when img_row[t] == NEWLINE (LLaVA-NeXT's image_newline), else
//   table[ids[t]]                     (the embedding table in any weight format, read with table_at,
//                                       possibly split in row chunks: one dispatch per chunk, each
//                                       writing the ids it holds).
// The host maps placeholders to feature rows in order, as masked_scatter does.

struct Params { T: u32, D: u32, row0: u32, rows: u32, has_image: u32, write_image: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> img_row: array<u32>;
//#weights table 3
@group(0) @binding(4) var<storage, read> image: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> newline: array<f32>;

const NONE: u32 = 0xffffffffu;
const NEWLINE: u32 = 0xfffffffeu;

@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.y;
  if (t >= p.T) { return; }
  var r = NONE;
  if (p.has_image != 0u) { r = img_row[t]; }
  let i = gid.x;
  if (i >= p.D) { return; }
  if (r == NEWLINE) {
    if (p.write_image != 0u) { out[t * p.D + i] = newline[i]; }
  } else if (r != NONE) {
    if (p.write_image != 0u) { out[t * p.D + i] = image[r * p.D + i]; }
  } else {
    let id = ids[t];
    if (id >= p.row0 && id < p.row0 + p.rows) { out[t * p.D + i] = table_at(id - p.row0, i, p.D, p.rows); }
  }
}

// CLIP's embeddings: each image's patch rows get the class embedding prepended and the position
// embedding added: out[tile·(N+1) + 0] = cls + pos[0], out[tile·(N+1) + 1 + j] = patch[tile·N + j] + pos[1 + j].
// Uses p.T = output rows, p.D, p.rows = N + 1 (positions per image).
@group(0) @binding(1) var<storage, read> patches: array<f32>;
@group(0) @binding(2) var<storage, read> cls: array<f32>;
@group(0) @binding(7) var<storage, read> pos: array<f32>;

@compute @workgroup_size(64)
fn class_position(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.y;
  let i = gid.x;
  if (t >= p.T || i >= p.D) { return; }
  let per = p.rows;
  let tile = t / per;
  let j = t % per;
  var v = cls[i];
  if (j > 0u) { v = patches[(tile * (per - 1u) + j - 1u) * p.D + i]; }
  out[t * p.D + i] = v + pos[j * p.D + i];
}
