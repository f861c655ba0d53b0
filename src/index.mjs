// The package entry for plain JavaScript: Node cannot import TypeScript by itself, so this loads
// src/index.ts through tsx's scoped importer (no process-wide loader hooks) and re-exports it.
// TypeScript projects get the types from src/index.ts (package.json "types").
import { tsImport } from 'tsx/esm/api';

const api = await tsImport('./index.ts', import.meta.url);

export const {
  loadModel,
  VisionLanguagePipeline,
  Generation,
  Gpu,
  GpuError,
  LoadError,
  HubError,
  loadModelDir,
  generateTokens,
  VisionLanguageModel,
  DEFAULT_CHUNK_LIMITS,
} = api;
