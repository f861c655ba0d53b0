#!/usr/bin/env node
// Entry point of the `webgpu-vlm` command: loads src/cli.ts through tsx's scoped TypeScript importer.
import { tsImport } from 'tsx/esm/api';

await tsImport('./cli.ts', import.meta.url);
