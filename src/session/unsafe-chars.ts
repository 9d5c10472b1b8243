/** The unsafe characters above C0 (see UNSAFE_CHAR_CLASS), which JSON.stringify leaves as they are. */
const UNSAFE_ABOVE_C0 =
  '\\u007f-\\u009f\\u00ad\\u034f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2060-\\u206f\\u3164\\ufeff\\uffa0';

/**
 * Characters that client-chosen text (names, paths, user names) may not carry
 * into a line of output as they are, defined once for every place that needs
 * them:
 * - C0 controls, DEL and C1 controls (U+0000-U+001F, U+007F-U+009F): CR and
 *   LF end lines, NEL (U+0085) ends them for many log readers, ESC and CSI
 *   (U+009B) drive terminals;
 * - the line and paragraph separators U+2028 and U+2029;
 * - the bidi embedding, override and isolate controls U+202A-U+202E and
 *   U+2066-U+2069, which reorder what is displayed (`a\u202Etxt.exe` shows as
 *   `aexe.txt`), and the bidi marks U+200E LRM, U+200F RLM and U+061C ALM;
 * - characters that show as nothing: U+00AD soft hyphen, U+034F combining
 *   grapheme joiner, U+180E Mongolian vowel separator, U+200B zero width
 *   space, U+2060 word joiner, the invisible operators U+2061-U+2064 and the
 *   deprecated format characters U+206A-U+206F, the Hangul fillers U+115F,
 *   U+1160, U+3164 and U+FFA0 (blank, though letters to a regular
 *   expression), U+FEFF (a BOM, anywhere in the text). With one,
 *   `invoice\u200B.pdf` is another name that looks like `invoice.pdf` in a
 *   listing, a log or the audit trail read as proof (found by a review).
 *   Kept: U+200C ZWNJ, part of ordinary Persian spelling; U+200D ZWJ, the
 *   variation selectors and the tag characters, parts of emoji and flags;
 *   names hold them only where they do that (look-alikes.ts).
 * Client paths holding one are refused (paths.ts), as are homes and key
 * comments (users/admin.ts); the xferlog writes `_` for them, and the CLI's
 * tables show them escaped (shown).
 */
export const UNSAFE_CHAR_CLASS = '\\u0000-\\u001f' + UNSAFE_ABOVE_C0;

const UNSAFE = new RegExp(`[${UNSAFE_CHAR_CLASS}]`);

export function hasUnsafeChar(text: string): boolean {
  return UNSAFE.test(text);
}

/** The first unsafe character of `text`, or null. */
export function firstUnsafeChar(text: string): string | null {
  return UNSAFE.exec(text)?.[0] ?? null;
}

const SHOWN_ESCAPED = new RegExp(`[\\\\${UNSAFE_CHAR_CLASS}]`, 'g');
const SHORT_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * Pure: text for a terminal. Fields come from clients (a user name from a
 * failed login, a path) or were stored before they were refused (a home):
 * a line break in one would forge a row, ESC or CSI drive the terminal, a
 * bidi override reorder what is read. Those characters are shown escaped: \n, \r, \t, \xNN up to U+00FF,
 * \u{NNNN} above; a backslash is doubled so no escape can be faked.
 */
export function shown(text: string): string {
  return text.replace(SHOWN_ESCAPED, (c) => {
    const short = SHORT_ESCAPES[c];
    if (short !== undefined) return short;
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}

const JSON_UNESCAPED = new RegExp(`[${UNSAFE_ABOVE_C0}]`, 'g');

/**
 * Pure: JSON.stringify, with every unsafe character a \uNNNN escape. JSON
 * escapes only C0 itself: a failed login's user name holding CSI (U+009B) or
 * a bidi override went to the terminal of whoever read `audit query --json`
 * (or the API's audit stream) as it was. The text parses to the same value.
 */
export function safeJson(value: unknown, space?: number): string {
  return escapedJsonText(JSON.stringify(value, null, space));
}

/**
 * Pure: JSON text (or pino-pretty's rendering of it, whose values are JSON)
 * with the unsafe characters JSON leaves as they are written as \uNNNN
 * escapes; JSON text parses to the same value.
 */
export function escapedJsonText(text: string): string {
  return text.replace(JSON_UNESCAPED, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
