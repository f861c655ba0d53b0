// The weight storage a caller may ask for (loadModel's and the CLI's `dtype`); see src/models/storage.ts.
// Its own module so that the CLI checks the option without loading the GPU code.
export const WEIGHT_DTYPE_NAMES = ['auto', 'f32', 'f16', 'bf16', 'q8', 'q4'] as const;

export type WeightDType = (typeof WEIGHT_DTYPE_NAMES)[number];
