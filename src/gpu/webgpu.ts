// Installs the WebGPU globals (GPUBufferUsage, GPUMapMode, ...) that Dawn's Node binding exports,
// before any module that uses them at load time is evaluated.
import { globals } from 'webgpu';

Object.assign(globalThis, globals);
