/**
 * A shell wildcard for one name, as LIST and NLST take them in their last
 * component (`*.csv`, `report-202?-*`, `[a-c]*`, `[!.]*`): what classic ftp's
 * `mget *.csv` and `mdelete *.tmp` send, and vsftpd answers.
 *
 * Matched by walking name and pattern once, going back only to the last `*`.
 * A regular expression backtracks through every way of placing each `*`:
 * `^.*a.*a.*a.*a.*b$` took 43 s against 250 `a`s here, and any client could
 * ask for it. Each step tests one character in a time that does not grow
 * with the pattern (see bracket), and a name gets at most STEPS_PER_CHAR
 * steps a character (see matches).
 */
export class NameGlob {
  /** How many tokens follow the last `*` (all of them when there is none): they match the name's end. */
  private readonly tail: number;

  private constructor(private readonly tokens: readonly Token[]) {
    this.tail = tokens.length - 1 - tokens.lastIndexOf(STAR);
  }

  /** The glob of `text`, or null when it holds no wildcard (then it names one entry). */
  static of(text: string): NameGlob | null {
    const chars = Array.from(text);
    const tokens: Token[] = [];
    let wild = false;
    for (let i = 0; i < chars.length; i++) {
      const ch = chars[i] as string;
      if (ch === '*') {
        wild = true;
        if (tokens.at(-1) !== STAR) tokens.push(STAR);
      } else if (ch === '?') {
        wild = true;
        tokens.push(() => true);
      } else if (ch === '[') {
        const set = bracket(chars, i);
        if (set === null) tokens.push(literal(ch));
        else {
          wild = true;
          tokens.push(set.test);
          i = set.end;
        }
      } else tokens.push(literal(ch));
    }
    return wild ? new NameGlob(tokens) : null;
  }

  /**
   * Going back to the last `*` still costs name × pattern steps where a long
   * run of the pattern almost matches at each place: `*aaa…ab` (255 bytes)
   * took 0.33 ms a name of 250 `a`s, 0.65 s of the event loop for an NLST of
   * 2,000 (found by the second review of the wildcards' cost). So what
   * follows the last `*` is matched once, against the name's end, which is
   * the only place it can match; and a name that takes more than
   * STEPS_PER_CHAR steps a character is taken as not matching, as vsftpd
   * bounds its own matching (VSFTP_MATCHITERS_MAX, after CVE-2011-0762):
   * only a run between two `*`s that almost matches at each place of the
   * name takes that many, and only the client that wrote it is answered
   * without that name (ftp-pure has one).
   */
  matches(name: string): boolean {
    const { tokens, tail } = this;
    const all = Array.from(name);
    const cut = all.length - tail;
    if (cut < 0) return false;
    for (let i = 0; i < tail; i++) if (!(tokens[tokens.length - tail + i] as Token)(all[cut + i] as string)) return false;
    const chars = tail === 0 ? all : all.slice(0, cut);
    const end = tokens.length - tail;
    let budget = STEPS_PER_CHAR * (all.length + 1);
    let t = 0;
    let c = 0;
    // Where the last `*` was, and how much of the name it has taken so far.
    let star = -1;
    let starFrom = 0;
    while (c < chars.length) {
      if (--budget < 0) return false;
      const token = t < end ? tokens[t] : undefined;
      if (token === STAR) {
        star = t++;
        starFrom = c;
      } else if (token !== undefined && token(chars[c] as string)) {
        t++;
        c++;
      } else if (star >= 0) {
        t = star + 1;
        c = ++starFrom;
      } else return false;
    }
    while (t < end && tokens[t] === STAR) t++;
    return t === end;
  }
}

/** How many steps matching takes at most for each character of a name (see matches). */
const STEPS_PER_CHAR = 16;

type Token = (ch: string) => boolean;

const STAR: Token = () => true;

function literal(ch: string): Token {
  return (c) => c === ch;
}

/**
 * `[...]` starting at chars[open]: its test and the index of its `]`, or null
 * when it is not closed (a literal `[`). Its characters and ranges are merged
 * into sorted spans of code points and a character found among them by
 * bisection. Found by a review: tested against each member in turn, one
 * bracket of 250 characters, tried at every character of every name, took
 * 0.8 ms a name of 255, 16 s of the event loop for one NLST of a directory of
 * 20,000 such names (vsftpd's CVE-2011-0762 was that kind of wildcard).
 */
function bracket(chars: readonly string[], open: number): { test: Token; end: number } | null {
  let i = open + 1;
  const negated = chars[i] === '!' || chars[i] === '^';
  if (negated) i++;
  const ranges: [number, number][] = [];
  // A `]` first is one of the set.
  for (let first = true; i < chars.length; first = false) {
    const ch = chars[i] as string;
    if (ch === ']' && !first) {
      const spans = merged(ranges);
      const test: Token = (c) => within(spans, c.codePointAt(0) as number) !== negated;
      return { test, end: i };
    }
    if (chars[i + 1] === '-' && chars[i + 2] !== undefined && chars[i + 2] !== ']') {
      ranges.push([codeOf(ch), codeOf(chars[i + 2] as string)]);
      i += 3;
    } else {
      ranges.push([codeOf(ch), codeOf(ch)]);
      i++;
    }
  }
  return null;
}

function codeOf(ch: string): number {
  return ch.codePointAt(0) as number;
}

/** Ranges as sorted spans that neither overlap nor touch; a reversed range (`[z-a]`) holds nothing. */
function merged(ranges: readonly [number, number][]): [number, number][] {
  const spans: [number, number][] = [];
  for (const [lo, hi] of ranges.filter(([lo, hi]) => lo <= hi).sort((a, b) => a[0] - b[0])) {
    const last = spans.at(-1);
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else spans.push([lo, hi]);
  }
  return spans;
}

/** Whether `code` lies in one of `spans`. */
function within(spans: readonly [number, number][], code: number): boolean {
  let lo = 0;
  let hi = spans.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [from, to] = spans[mid] as [number, number];
    if (code < from) hi = mid - 1;
    else if (code > to) lo = mid + 1;
    else return true;
  }
  return false;
}
