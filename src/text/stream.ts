// Streaming detokenization: the text each generated token adds to a reply, from a decode of a short
// window (the last group of tokens whose text was emitted, as context, and the new ones) instead of the
// whole reply, so that a token costs O(1) however long the reply is (as text-generation-inference's
// incremental decode_token). It emits what decoding the whole reply each token and emitting what is new
// emitted, holding back an unfinished UTF-8 sequence (U+FFFD at the end) the same way; stop strings are
// searched only in the tail that a new token can complete.
//
// Why a window is exact: the decoders of generation tokenizers (ByteLevel, Metaspace, ByteFallback + Fuse,
// Replace, Strip) either map tokens one by one or treat the first token of a decode specially. A window
// starts where the text emitted before it ended, which is also where a UTF-8 decoder is back in its
// initial state (the text there did not end in an unfinished sequence), and its context holds at least one
// token that has text, so a first-token rule applies to the context in both decodes and cancels out.
// Two things do not fit and are handled apart:
//  - clean_up_tokenization_spaces (" ." → "." and the like, transformers' list) can join text across the
//    window's edge; windows are decoded raw and the cleanup is applied as a stream (SpaceCleanup below),
//    which holds back a tail that could still change (a trailing space before a possible "."). The whole
//    reply decoded every token could not stream there at all: the cleaned text stopped extending what
//    had been emitted (" " emitted, then ".") and nothing more came out.
//  - a BPE model with an end-of-word suffix makes the library trim the whole decode (CLIP's tokenizer; no
//    generation model) and any decoder whose window text does not extend its context's text: these decode
//    the whole reply every token, as before (exact, O(length)).

/** What ReplyText needs of a tokenizer (TextTokenizer; a counting wrapper in tests). */
export interface Detokenizer {
  /** The text of `ids`; cleanUpSpaces false decodes without the cleanup whatever the config says. */
  decode(ids: number[], skipSpecial?: boolean, cleanUpSpaces?: boolean): string;
  /** Whether decode applies clean_up_tokenization_spaces (the config's setting, default true). */
  readonly cleansUpSpaces: boolean;
  /** False where decoding a window is not known to be exact (see above): every token decodes the whole reply. */
  readonly decodesByWindow: boolean;
}

const REPLACEMENT = '\uFFFD';

/**
 * The reply's text as tokens arrive: push() gives the text a token adds, '' while an unfinished UTF-8
 * sequence is held back. Special tokens are skipped. With stop strings, push() reports the first one to
 * appear, and `text` is then the reply cut before it.
 */
export class ReplyText {
  /** The text emitted so far (cut before a stop string once one appeared). */
  text = '';
  private readonly tokens: number[] = [];
  /** Window start: tokens from here are decoded, those before `read` as context. */
  private start = 0;
  /** Tokens before this have had their text emitted (or held in `cleanup`). */
  private read = 0;
  private readonly cleanup: SpaceCleanup | null;
  /** Set when a window failed to extend its context's text: decode the whole reply from then on. */
  private whole: boolean;
  private readonly longestStop: number;
  /** The last longestStop − 1 characters of `text`: where a stop string ending in new text can begin. */
  private recent = '';

  constructor(
    private readonly tok: Detokenizer,
    private readonly stops: readonly string[] = [],
  ) {
    this.whole = !tok.decodesByWindow;
    this.cleanup = tok.cleansUpSpaces ? new SpaceCleanup() : null;
    this.longestStop = Math.max(0, ...stops.map((s) => s.length));
  }

  /** The text `token` adds (possibly ''), and whether a stop string now appears (the text then ends before it). */
  push(token: number): { text: string; stop: boolean } {
    this.tokens.push(token);
    const prev = this.text;
    if (!this.whole) {
      const context = this.tok.decode(this.tokens.slice(this.start, this.read), true, false);
      const window = this.tok.decode(this.tokens.slice(this.start), true, false);
      if (window.startsWith(context)) {
        const added = window.slice(context.length);
        let chunk = '';
        // What the whole reply's text holds beyond prev + chunk, emitted later or never.
        let held: string;
        if (added.endsWith(REPLACEMENT)) {
          held = this.cleanup ? this.cleanup.peek(added) : added;
        } else {
          // A group with no text (a skipped special token) is no context for the next window: keep this one's.
          if (added.length > 0) this.start = this.read;
          this.read = this.tokens.length;
          chunk = this.cleanup ? this.cleanup.push(added) : added;
          held = this.cleanup ? this.cleanup.peek('') : '';
        }
        // No stop string lies within prev (it was searched when it was emitted): search from where one that
        // ends in the new text could start, the end of prev kept in `recent`.
        const at = this.firstStop(this.recent + chunk + held);
        if (at < 0) return this.emit(chunk);
        const from = prev.length - this.recent.length;
        return this.cut(prev, at <= this.recent.length ? prev.slice(0, from + at) : prev + (chunk + held).slice(0, at - this.recent.length));
      }
      this.whole = true;
    }
    // The whole reply's text: what it adds to prev when it extends it and is finished.
    const full = this.tok.decode(this.tokens, true);
    const at = this.firstStop(full);
    if (at >= 0) return this.cut(prev, full.slice(0, at));
    return this.emit(!full.endsWith(REPLACEMENT) && full.startsWith(prev) ? full.slice(prev.length) : '');
  }

  private emit(chunk: string): { text: string; stop: boolean } {
    this.text += chunk;
    // Sliced from a short string: slicing `text` itself would flatten the whole reply every token.
    if (this.longestStop > 1) this.recent = (this.recent + chunk).slice(-(this.longestStop - 1));
    return { text: chunk, stop: false };
  }

  /** Where the first stop string begins in `text`, or −1. */
  private firstStop(text: string): number {
    let at = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    return at;
  }

  /** The reply ends as `text` (its text before the first stop string): the chunk is what it adds to prev. */
  private cut(prev: string, text: string): { text: string; stop: boolean } {
    this.text = text;
    return { text: text.length > prev.length ? text.slice(prev.length) : '', stop: true };
  }
}

// transformers' clean_up_tokenization, in its order: each replacement drops the space before a
// punctuation mark or a contraction.
const CLEANUPS: readonly (readonly [string, string])[] = [
  [' .', '.'],
  [' ?', '?'],
  [' !', '!'],
  [' ,', ','],
  [" ' ", "'"],
  [" n't", "n't"],
  [" 'm", "'m"],
  [" 's", "'s"],
  [" 've", "'ve"],
  [" 're", "'re"],
];

/** clean_up_tokenization_spaces applied to a whole text. */
export function cleanUpSpaces(text: string): string {
  for (const [from, to] of CLEANUPS) text = text.replaceAll(from, to);
  return text;
}

/**
 * The cleanup applied to text that arrives in pieces: cleanUpSpaces of everything pushed equals the
 * pushed results joined with the cleanup of what is held. A piece is cut where no replacement can reach
 * across: the cut is safe when, before each replacement (the earlier ones applied), the text does not end
 * in a proper beginning of that replacement's pattern (" ", " '", " n", " n'", " 'v", " 'r" ...).
 * Replacements never insert a space, so the earlier ones cannot make a later one reach back across a
 * safe cut. What is held is the end of the text from a space that could still begin a pattern: a few
 * characters, or a run of spaces.
 */
export class SpaceCleanup {
  private held = '';

  /** The cleaned text that `piece` completes; the rest is held. */
  push(piece: string): string {
    const text = this.held + piece;
    let cut = text.length;
    while (cut > 0 && !safeCut(text.slice(0, cut))) cut = text.lastIndexOf(' ', cut - 1);
    cut = Math.max(cut, 0);
    this.held = text.slice(cut);
    return cleanUpSpaces(text.slice(0, cut));
  }

  /** The cleaned text of what is held followed by `more`, without taking either. */
  peek(more: string): string {
    return cleanUpSpaces(this.held + more);
  }
}

/** Whether no replacement can reach across the end of `text`, whatever follows it. */
function safeCut(text: string): boolean {
  let t = text;
  for (const [from, to] of CLEANUPS) {
    for (let n = 1; n < from.length; n++) if (t.endsWith(from.slice(0, n))) return false;
    t = t.replaceAll(from, to);
  }
  return true;
}
