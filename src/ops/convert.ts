// Load-time dtype conversion on the GPU (shaders/convert.wgsl), where the caller asks for a width other
// than the checkpoint's: 16-bit → f32, F32/BF16 → f16, F32/F16 → bf16. Runs once per weight chunk as its
// own submission.
import type { Gpu } from '../gpu/device.ts';
import { uniforms, grid1d } from './common.ts';

export type Conversion = 'bf16_to_f32' | 'f16_to_f32' | 'f32_to_f16' | 'bf16_to_f16' | 'f32_to_bf16' | 'f16_to_bf16';

/** Converts `count` values of `raw` into a new buffer of the target dtype. */
export async function convertWeights(gpu: Gpu, raw: GPUBuffer, count: number, entry: Conversion, label: string): Promise<GPUBuffer> {
  const pipeline = await gpu.pipelines.get({ shader: 'convert', entry });
  const dst = gpu.pool.create(count * (entry.endsWith('f32') ? 4 : 2), undefined, label);
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
