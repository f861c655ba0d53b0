// Token embedding gather with image features scattered into the <image> positions
// (shaders/embedding.wgsl); a table split in row chunks is one dispatch per chunk.
import type { Dispatch, Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, WEIGHT_DTYPES, expectShape } from '../graph/tensor.ts';
import { uniforms, chunksOf, weightFormat } from './common.ts';

/** Marks a text token in the image-row map. */
export const NOT_IMAGE = 0xffffffff;
/** Marks a position that takes the image-newline vector (LLaVA-NeXT's anyres packing) in the image-row map. */
export const NEWLINE_ROW = 0xfffffffe;

const kernel: Kernel<{ hasImage: boolean }> = {
  name: 'embedding',
  encode(node, buf, ctx) {
    const [ids, table, imgRow, image, newline] = node.inputs;
    const T = ids.dim(0);
    const D = table.dim(1);
    const hasImage = node.attrs.hasImage;
    const format = weightFormat(table);
    return chunksOf(table, buf).map(
      (c, i): Dispatch => ({
        pipeline: { shader: 'embedding', entry: 'embed', weight: format.weight, constants: format.constants },
        bindings: [
          { binding: 1, buffer: buf(ids) },
          { binding: 2, buffer: hasImage ? buf(imgRow) : ctx.dummy },
          { binding: 3, buffer: c.buffer },
          { binding: 4, buffer: hasImage ? buf(image) : ctx.dummy },
          { binding: 5, buffer: buf(node.output) },
          { binding: 6, buffer: newline ? buf(newline) : ctx.dummy },
        ],
        uniforms: uniforms(T, D, c.row0, c.rows, hasImage ? 1 : 0, i === 0 ? 1 : 0),
        workgroups: [Math.ceil(D / 64), T],
      }),
    );
  },
};

/**
 * ids: [T] u32; table: [vocab, D]. With `image`, imgRow[t] (u32, [T]) is the feature row that replaces
 * token t, NOT_IMAGE, or NEWLINE_ROW for the `newline` vector [D] (f32). Returns [T, D] f32.
 */
export function embed(g: Graph, ids: Tensor, table: Tensor, image?: { features: Tensor; rows: Tensor; newline?: Tensor }): Tensor {
  expectShape('embedding', 'ids', ids, [null], ['u32']);
  expectShape('embedding', 'table', table, [null, null], WEIGHT_DTYPES);
  const T = ids.dim(0);
  const D = table.dim(1);
  const inputs = [ids, table];
  if (image) {
    expectShape('embedding', 'image rows', image.rows, [T], ['u32']);
    expectShape('embedding', 'image features', image.features, [null, D], ['f32']);
    inputs.push(image.rows, image.features);
    if (image.newline) {
      expectShape('embedding', 'image newline', image.newline, [D], ['f32']);
      inputs.push(image.newline);
    }
  }
  return g.add(kernel, inputs, { shape: [T, D], dtype: 'f32' }, { hasImage: !!image });
}

const classPositionKernel: Kernel<null> = {
  name: 'class_position',
  encode(node, buf) {
    const [patches, cls, pos] = node.inputs;
    const [T, D] = node.output.shape;
    return [
      {
        // The module declares the table; this entry does not read it.
        pipeline: { shader: 'embedding', entry: 'class_position', weight: 'f32' },
        bindings: [
          { binding: 1, buffer: buf(patches) },
          { binding: 2, buffer: buf(cls) },
          { binding: 7, buffer: buf(pos) },
          { binding: 5, buffer: buf(node.output) },
        ],
        uniforms: uniforms(T, D, 0, pos.dim(0)),
        workgroups: [Math.ceil(D / 64), T],
      },
    ];
  },
};

/**
 * CLIP embeddings: patches [tiles·N, D] → [tiles·(N+1), D] with the class embedding [D] prepended to each
 * image's rows and the position embedding [N+1, D] added (cls and pos as f32).
 */
export function classPosition(g: Graph, patches: Tensor, cls: Tensor, pos: Tensor): Tensor {
  const D = patches.dim(1);
  const N = pos.dim(0) - 1;
  expectShape('class embedding', 'class embedding', cls, [D], ['f32']);
  expectShape('class embedding', 'position embedding', pos, [N + 1, D], ['f32']);
  if (patches.dim(0) % N !== 0) throw new Error(`class embedding: ${patches.dim(0)} patch rows are not a multiple of ${N} positions`);
  const tiles = patches.dim(0) / N;
  return g.add(classPositionKernel, [patches, cls, pos], { shape: [tiles * (N + 1), D], dtype: 'f32' }, null);
}
