// Weight format bf16x2: bfloat16 as the checkpoint stores it, two per u32. A bf16 is the high half of an
// f32, so widening is a shift or a mask: exact, core WGSL. The layout and functions: weights/pairs.wgsl.
fn half_pair(w: u32) -> vec2f { return vec2f(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u)); }
//#include weights/pairs
