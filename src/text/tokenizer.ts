// Tokenizer from a model directory's tokenizer.json + tokenizer_config.json, through
// @huggingface/tokenizers (the tokenizer of transformers.js).
import { ModelDir } from '../io/model-dir.ts';
import { Tokenizer } from '@huggingface/tokenizers';
import type { Detokenizer } from './stream.ts';

export class TextTokenizer implements Detokenizer {
  // Private, so that the emitted declarations do not name the library's types: its own .d.ts files do not
  // compile under a consumer's NodeNext resolution without skipLibCheck (extensionless relative imports).
  private constructor(
    private readonly tokenizer: Tokenizer,
    readonly config: Record<string, unknown>,
  ) {}

  static of(md: ModelDir): TextTokenizer {
    const config = md.json('tokenizer_config.json') ?? {};
    return new TextTokenizer(new Tokenizer(md.required('tokenizer.json'), config), config);
  }

  /** of() for a directory not opened yet. */
  static async load(dir: string): Promise<TextTokenizer> {
    return TextTokenizer.of(await ModelDir.open(dir, ['tokenizer.json', 'tokenizer_config.json']));
  }

  /** Token ids of `text`, special tokens such as <image> recognised, no BOS added by the post-processor unless configured. */
  encode(text: string): number[] {
    return this.tokenizer.encode(text).ids;
  }

  /**
   * The text of `ids`; none is '' (the library rejects an empty list, which a reply ending at once is).
   * cleanUpSpaces: apply clean_up_tokenization_spaces or not (default: as the config says).
   */
  decode(ids: number[], skipSpecial = false, cleanUpSpaces?: boolean): string {
    if (ids.length === 0) return '';
    return this.tokenizer.decode(ids, { skip_special_tokens: skipSpecial, clean_up_tokenization_spaces: cleanUpSpaces });
  }

  /** Whether decode() cleans up spaces by default (tokenizer_config's clean_up_tokenization_spaces; the library's default is true). */
  get cleansUpSpaces(): boolean {
    return Boolean(this.config.clean_up_tokenization_spaces ?? true);
  }

  /**
   * Whether a reply can be decoded a window at a time (ReplyText): not with a BPE end-of-word suffix, for
   * which the library trims the whole decoded text.
   */
  get decodesByWindow(): boolean {
    return !this.tokenizer.decoder?.end_of_word_suffix;
  }

  /** A special token's text from tokenizer_config.json (a string or an AddedToken object), if set. */
  specialToken(key: 'bos_token' | 'eos_token' | 'unk_token' | 'pad_token'): string | undefined {
    const v = this.config[key];
    if (typeof v === 'string') return v;
    if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
    return undefined;
  }

  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** The token string of `id`, or undefined when the id is outside the vocabulary. */
  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  /** Number of distinct tokens, added/special tokens included. */
  get vocabSize(): number {
    return this.tokenizer.get_vocab(true).size;
  }
}
