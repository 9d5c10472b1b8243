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
 *   `aexe.txt`).
 * Client paths holding one are refused (paths.ts), the xferlog writes `_` for
 * them, and the audit trail's tables show them escaped (audit/query.ts).
 */
export const UNSAFE_CHAR_CLASS = '\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069';

const UNSAFE = new RegExp(`[${UNSAFE_CHAR_CLASS}]`);

export function hasUnsafeChar(text: string): boolean {
  return UNSAFE.test(text);
}
