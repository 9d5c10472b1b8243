/**
 * A shell wildcard for one name, as LIST and NLST take them in their last
 * component (`*.csv`, `report-202?-*`, `[a-c]*`, `[!.]*`): what classic ftp's
 * `mget *.csv` and `mdelete *.tmp` send, and vsftpd answers.
 *
 * Matched by walking name and pattern once, going back only to the last `*`
 * (at most name × pattern steps). A regular expression backtracks through
 * every way of placing each `*`: `^.*a.*a.*a.*a.*b$` took 43 s against 250
 * `a`s here, and any client could ask for it.
 */
export class NameGlob {
  private constructor(private readonly tokens: readonly Token[]) {}

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

  matches(name: string): boolean {
    const chars = Array.from(name);
    const { tokens } = this;
    let t = 0;
    let c = 0;
    // Where the last `*` was, and how much of the name it has taken so far.
    let star = -1;
    let starFrom = 0;
    while (c < chars.length) {
      const token = tokens[t];
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
    while (tokens[t] === STAR) t++;
    return t === tokens.length;
  }
}

type Token = (ch: string) => boolean;

const STAR: Token = () => true;

function literal(ch: string): Token {
  return (c) => c === ch;
}

/** `[...]` starting at chars[open]: its test and the index of its `]`, or null when it is not closed (a literal `[`). */
function bracket(chars: readonly string[], open: number): { test: Token; end: number } | null {
  let i = open + 1;
  const negated = chars[i] === '!' || chars[i] === '^';
  if (negated) i++;
  const ranges: [string, string][] = [];
  // A `]` first is one of the set.
  for (let first = true; i < chars.length; first = false) {
    const ch = chars[i] as string;
    if (ch === ']' && !first) {
      const test: Token = (c) => ranges.some(([lo, hi]) => lo <= c && c <= hi) !== negated;
      return { test, end: i };
    }
    if (chars[i + 1] === '-' && chars[i + 2] !== undefined && chars[i + 2] !== ']') {
      ranges.push([ch, chars[i + 2] as string]);
      i += 3;
    } else {
      ranges.push([ch, ch]);
      i++;
    }
  }
  return null;
}
