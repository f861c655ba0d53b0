// webgpu-vlm: vision-language models on WebGPU from Node. The public API, and the package's only entry
// (package.json "exports": dist/index.js, compiled from this file). Every error class a caller can catch is here.
// The WebGPU types (GPUDevice, ...) that Gpu exposes come from @webgpu/types; the directive is kept in the
// emitted index.d.ts so that a consumer's compiler finds them without listing them in its own tsconfig.
/// <reference types="@webgpu/types" preserve="true" />
export { loadModel, VisionLanguagePipeline, Generation } from './pipeline.ts';
export type { LoadModelOptions, GenerateRequest, GenerateResult, PreprocessTarget, TextChunk, Timings } from './pipeline.ts';
export type { ChatMessage } from './text/chat.ts';
export { ImageError } from './image/preprocess.ts';
export type { ImageInput, ImageProcessorOverrides } from './image/preprocess.ts';
export { ConfigError } from './models/config.ts';
export type { LoadProgress } from './models/weights.ts';
export type { WeightDType } from './models/storage.ts';
export { Gpu, GpuError } from './gpu/device.ts';
export type { GpuOptions } from './gpu/device.ts';
export { LoadError } from './io/safetensors.ts';
export { HubError } from './io/hub.ts';
export { loadModelDir } from './models/registry.ts';
export { generateTokens } from './generate.ts';
export type { GenerateOptions, SamplingOptions, TokenStep } from './generate.ts';
export { VisionLanguageModel, DEFAULT_CHUNK_LIMITS } from './models/vlm.ts';
export type { ChunkLimits, StepProgress, ForwardResult, ImageBatch, ImageLayout } from './models/vlm.ts';
export { FAMILIES } from './models/registry.ts';
export type { ModelFamily } from './models/family.ts';
export { ChatServer } from './server/server.ts';
export type { ServeOptions } from './server/server.ts';
