#!/usr/bin/env node
// Entry point of the `webgpu-vlm` command: registers the TypeScript loader (tsx), then runs src/cli.ts.
import { register } from 'tsx/esm/api';

register();
await import('./cli.ts');
