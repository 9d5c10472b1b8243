/**
 * The characters that show as nothing yet stay allowed in names (see
 * unsafe-chars.ts), each only where it does something: ZWNJ in Persian
 * spelling and Indic scripts, ZWJ there and in emoji sequences, variation
 * selectors after an emoji or a symbol with variants, tag characters in an
 * emoji flag. Anywhere else it changes nothing shown, so a name holding one
 * is a second name that looks like another: `invoice<U+200D>.pdf` as
 * `invoice.pdf`, as the zero width space was, or ASCII hidden in tag
 * characters after a name (found by a review: each was allowed anywhere).
 * Look-alikes made of visible characters (a Cyrillic `а`, NFC beside NFD)
 * are not told here: clients send both forms, and a server that changed or
 * refused them would lose names made on the host.
 */

const ZWNJ = 0x200c;
const ZWJ = 0x200d;
const COMBINING_ENCLOSING_KEYCAP = 0x20e3;
const WAVING_BLACK_FLAG = 0x1f3f4;
const CANCEL_TAG = 0xe007f;

function isVariationSelector(cp: number): boolean {
  return (cp >= 0xfe00 && cp <= 0xfe0f) || (cp >= 0xe0100 && cp <= 0xe01ef);
}

/** The tags of an emoji flag sequence: U+E0020-U+E007E, ended by CANCEL TAG (UTS #51 tag_spec). */
function isTagSpec(cp: number): boolean {
  return cp >= 0xe0020 && cp <= 0xe007e;
}

/** The tags block (U+E0000-U+E007F) and the default-ignorable rest of plane 14 up to U+E0FFF, but the variation selectors. */
function isTagBlockOrIgnorable(cp: number): boolean {
  return cp >= 0xe0000 && cp <= 0xe0fff && !isVariationSelector(cp);
}

const EMOJI = /^[\p{Extended_Pictographic}\p{Emoji_Modifier}]$/u;
const LETTER_OR_MARK = /^[\p{L}\p{M}]$/u;
/** Scripts whose letters a joiner changes nothing of, as shown. */
const NO_JOINERS = /^[\p{Script=Latin}\p{Script=Greek}\p{Script=Cyrillic}]$/u;

/** What a ZWNJ or ZWJ may stand beside: an emoji, or a letter or mark of a script joiners shape. */
function joinable(cp: number | undefined): boolean {
  if (cp === undefined) return false;
  const c = String.fromCodePoint(cp);
  return EMOJI.test(c) || (LETTER_OR_MARK.test(c) && !NO_JOINERS.test(c));
}

/**
 * Whether `name` holds any character strayInvisible looks at: a joiner, a variation selector, or anything
 * of plane 14 (U+E0000-U+E0FFF, whose UTF-16 begins with U+DB40-U+DB43). Most names hold none, and every
 * listed name is checked: they pass at the cost of one scan, not of an array of their code points.
 */
const MAYBE_STRAY = /[\u200c\u200d\ufe00-\ufe0f\udb40-\udb43]/;

/** Pure: the first invisible character of `name` that is out of place (see above), or null. */
export function strayInvisible(name: string): string | null {
  if (!MAYBE_STRAY.test(name)) return null;
  const cps = [...name].map((c) => c.codePointAt(0) as number);
  let inFlag = false;
  for (let i = 0; i < cps.length; i++) {
    const cp = cps[i] as number;
    const before = cps[i - 1];
    const after = cps[i + 1];
    // A flag's tags not ended by CANCEL TAG show as nothing after the black flag.
    if (inFlag && !isTagSpec(cp) && cp !== CANCEL_TAG) return String.fromCodePoint(before as number);
    let fits = true;
    if (cp === ZWNJ || cp === ZWJ) {
      // Between two characters it joins or parts; after an emoji's variation selector too (U+2764 U+FE0F ZWJ ...).
      const left = before !== undefined && isVariationSelector(before) ? cps[i - 2] : before;
      fits = joinable(left) && joinable(after);
    } else if (isVariationSelector(cp)) {
      // After a character with variants (none in ASCII but a keycap's digit, `#` or `*`), and one only.
      fits = before !== undefined && !isVariationSelector(before) && before !== ZWNJ && before !== ZWJ && !isTagBlockOrIgnorable(before) && (before > 0x7f || after === COMBINING_ENCLOSING_KEYCAP);
    } else if (isTagSpec(cp)) {
      fits = inFlag || before === WAVING_BLACK_FLAG;
      inFlag = fits;
    } else if (cp === CANCEL_TAG) {
      fits = inFlag;
      inFlag = false;
    } else if (isTagBlockOrIgnorable(cp)) {
      fits = false;
    }
    if (!fits) return String.fromCodePoint(cp);
  }
  return inFlag ? String.fromCodePoint(cps[cps.length - 1] as number) : null;
}
