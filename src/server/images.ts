// Images of a chat request, from OpenAI's image_url parts: a data: URI with base64 PNG, JPEG, WebP or GIF,
// or a file:// URL inside the one directory the server was told to read (--allow-files). The server fetches
// nothing: http(s) URLs are refused. Each image's header is checked here (checkImage), before the request
// waits for the model; damage past the header is found when generate() decodes it.
import { realpath } from 'node:fs/promises';
import { sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkImage, ImageError } from '../image/preprocess.ts';
import { ApiError } from './errors.ts';

/** Formats OpenAI accepts (GIF: the first frame is used). sharp's names. */
const FORMATS = new Set(['png', 'jpeg', 'webp', 'gif']);
const DATA_URI = /^data:image\/(png|jpeg|jpg|webp|gif);base64,/i;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * The image an image_url names: its bytes (data: URI) or its real path (file://). `param` names the field in
 * errors (messages[i].content[j].image_url.url); `allowFiles` is the real path of the readable directory.
 */
export async function imageFromUrl(url: string, param: string, allowFiles: string | undefined): Promise<Buffer | string> {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'http' || scheme === 'https') {
    throw new ApiError(400, `${param}: this server fetches nothing, so http(s) image URLs are refused; send the image as a data: URI (data:image/png;base64,...)`, {
      param,
      code: 'invalid_image_url',
    });
  }
  let image: Buffer | string;
  if (scheme === 'data') image = decodeDataUri(url, param);
  else if (scheme === 'file') image = await allowedFile(url, param, allowFiles);
  else throw new ApiError(400, `${param}: expected a data: URI with a base64 PNG, JPEG, WebP or GIF image${allowFiles ? ', or a file:// URL' : ''}`, { param, code: 'invalid_image_url' });

  let format: string | undefined;
  try {
    format = (await checkImage(image)).format;
  } catch (e) {
    if (e instanceof ImageError) throw new ApiError(400, `${param}: ${e.message}`, { param, code: 'invalid_image' });
    throw e;
  }
  if (!format || !FORMATS.has(format)) {
    throw new ApiError(400, `${param}: the image is ${format ?? 'of an unknown format'}; send PNG, JPEG, WebP or GIF`, { param, code: 'invalid_image_format' });
  }
  return image;
}

function decodeDataUri(url: string, param: string): Buffer {
  const head = DATA_URI.exec(url);
  if (!head) {
    const type = /^data:([^;,]*)/i.exec(url)?.[1] || 'no media type';
    throw new ApiError(400, `${param}: expected data:image/(png|jpeg|webp|gif);base64,..., got a data: URI with ${type}${url.includes(';base64,') ? '' : ' and no ;base64,'}`, {
      param,
      code: 'invalid_image_url',
    });
  }
  // Buffer.from(…, 'base64') skips what it does not understand; a damaged upload should be refused instead.
  const body = url.slice(head[0].length);
  if (!body.length || body.length % 4 !== 0 || !BASE64.test(body)) {
    throw new ApiError(400, `${param}: the data: URI's payload is not valid base64 (${body.length} characters${body.length % 4 ? ', not a multiple of 4' : ''})`, {
      param,
      code: 'invalid_base64',
    });
  }
  return Buffer.from(body, 'base64');
}

/** A file:// URL's real path, refused unless it lies inside the allowed directory (symlinks resolved). */
async function allowedFile(url: string, param: string, allowFiles: string | undefined): Promise<string> {
  if (!allowFiles) {
    throw new ApiError(400, `${param}: file:// URLs are refused: the server was started without --allow-files DIR`, { param, code: 'invalid_image_url' });
  }
  let path: string;
  try {
    path = fileURLToPath(url);
  } catch (e) {
    throw new ApiError(400, `${param}: not a local file URL (${(e as Error).message})`, { param, code: 'invalid_image_url' });
  }
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    // Said the same way as a file outside the directory, so that a client cannot probe what exists elsewhere.
    throw new ApiError(400, `${param}: no such file inside the directory this server may read`, { param, code: 'invalid_image_url' });
  }
  if (!real.startsWith(allowFiles.endsWith(sep) ? allowFiles : allowFiles + sep)) {
    throw new ApiError(400, `${param}: no such file inside the directory this server may read`, { param, code: 'invalid_image_url' });
  }
  return real;
}
