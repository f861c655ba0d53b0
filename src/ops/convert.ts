// Load-time dtype conversion on the GPU (shaders/convert.wgsl): BF16 → f32, and F16 → f32 on devices
// without shader-f16. Runs once per weight chunk as its own small submission.
import type { Gpu } from '../gpu/device.ts';
import { uniforms, grid1d } from './common.ts';

export async function widenToF32(gpu: Gpu, raw: GPUBuffer, count: number, from: 'bf16' | 'f16', label: string): Promise<GPUBuffer> {
  const entry = from === 'bf16' ? 'bf16_to_f32' : 'f16_to_f32';
  const pipeline = await gpu.pipelines.get({ shader: 'convert', entry });
  const dst = gpu.pool.create(count * 4, undefined, label);
  const u = gpu.pool.upload(uniforms(count), 'convert uniforms', GPUBufferUsage.UNIFORM);
  const bind = gpu.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: u } },
      { binding: 1, resource: { buffer: raw } },
      { binding: 2, resource: { buffer: dst } },
    ],
  });
  const enc = gpu.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(...grid1d(Math.ceil(count / 2), 256));
  pass.end();
  gpu.device.queue.submit([enc.finish()]);
  gpu.pool.destroy(u);
  return dst;
}
