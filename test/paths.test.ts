import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SluiceError } from '../src/session/errors.js';
import { checkName, isClientName, lookupPath, namesDirectory, overlaps, relativeVirtual, resolveVirtual, visibleLinkTarget } from '../src/session/paths.js';

describe('resolveVirtual (pure)', () => {
  const cases: [cwd: string, input: string, expected: string][] = [
    ['/', '', '/'],
    ['/', '.', '/'],
    ['/', '/', '/'],
    ['/', 'a', '/a'],
    ['/a', 'b', '/a/b'],
    ['/a', '/b', '/b'],
    ['/a/b', '..', '/a'],
    ['/a/b', '../..', '/'],
    ['/a/b', '../../../../..', '/'],
    ['/', '../etc/passwd', '/etc/passwd'],
    ['/', '/../../etc/passwd', '/etc/passwd'],
    ['/', '..\\..\\etc\\passwd', '/etc/passwd'],
    ['/x', '\\windows\\system32', '/windows/system32'],
    ['/', 'a//b///c', '/a/b/c'],
    ['/', './a/./b/.', '/a/b'],
    ['/', 'a/b/../../..', '/'],
    ['/', '%2e%2e/%2e%2e', '/%2e%2e/%2e%2e'],
    ['/', '...', '/...'],
    ['/', 'dir with spaces/ü-名前', '/dir with spaces/ü-名前'],
    ['/', '-rf', '/-rf'],
    ['/', '"quoted"', '/"quoted"'],
  ];
  for (const [cwd, input, expected] of cases) {
    it(`${JSON.stringify(cwd)} + ${JSON.stringify(input)} -> ${expected}`, () => {
      assert.equal(resolveVirtual(cwd, input), expected);
    });
  }

  const invalid: [string, string][] = [
    ['NUL byte', 'a\0b'],
    ['NUL then traversal', 'ok\0/../../etc'],
    ['newline (forged replies)', 'a\r\n226 ok'],
    ['DEL', 'a\x7f'],
    ['NEL (a line break to many log readers)', 'a\u0085b'],
    ['C1 controls, first and last (CSI drives terminals)', 'a\u0080/b\u009b[2K/c\u009f'],
    ['line and paragraph separators', 'a\u2028b\u2029'],
    ['a bidi override (spoofs the displayed name)', 'a\u0085b\u202Etxt.exe'],
    ['bidi embeddings and isolates', 'x\u202A\u202B\u202C\u202D\u2066\u2067\u2068\u2069'],
    ['name over 255 bytes', 'x'.repeat(256)],
    ['multibyte name over 255 bytes', 'é'.repeat(128)],
    ['path over 4096 bytes', ('d'.repeat(200) + '/').repeat(21)],
    ['reserved temp upload name', '.sluice-upload-abc'],
  ];
  for (const [what, input] of invalid) {
    it(`refuses ${what}`, () => {
      assert.throws(() => resolveVirtual('/', input), (e: unknown) => e instanceof SluiceError && e.kind === 'invalid-path');
    });
  }

  it('keeps a 255-byte name', () => {
    assert.equal(resolveVirtual('/', 'n'.repeat(255)), '/' + 'n'.repeat(255));
  });

  it('relativeVirtual builds link text', () => {
    assert.equal(relativeVirtual('/a/b', '/a/c/d'), '../c/d');
    assert.equal(relativeVirtual('/', '/x'), 'x');
    assert.equal(relativeVirtual('/a', '/a'), '.');
  });
});

describe('namesDirectory and lookupPath (pure): a path ending in "/", "." or ".." names a directory', () => {
  const cases: [input: string, directory: boolean][] = [
    ['f', false],
    ['f/', true],
    ['f//', true],
    ['f\\', true],
    ['f/.', true],
    ['f/..', true],
    ['a/f', false],
    ['/a/f/', true],
    ['.', true],
    ['..', true],
    ['', true],
    ['/', true],
    ['...', false],
    ['a/...', false],
    ['f.', false],
    ['f..', false],
    ['.f', false],
  ];
  for (const [input, directory] of cases) {
    it(`${JSON.stringify(input)}: ${directory}`, () => assert.equal(namesDirectory(input), directory));
  }
  it('lookupPath ends the clean path in "/" for a directory, the root as it is', () => {
    assert.equal(lookupPath('/a/f', true), '/a/f/');
    assert.equal(lookupPath('/a/f', false), '/a/f');
    assert.equal(lookupPath('/', true), '/');
  });
});

describe('checkName (pure): what can break an MLSx entry is refused at creation', () => {
  const refused = ['a\rb', 'a\nb', 'a\r\n250 ok', '\0', 'tab\there', 'esc\x1b[31m', 'del\x7f', '', '.', '..', 'a/b', 'a\\b'];
  for (const name of refused) {
    it(`refuses ${JSON.stringify(name)}`, () => {
      assert.throws(() => checkName(name), (e: unknown) => e instanceof SluiceError && e.kind === 'invalid-path');
      // What a listing leaves out (names made on the host): exactly what a client may not give.
      assert.equal(isClientName(name), false);
    });
  }
  // C1 (NEL ends log lines, CSI drives terminals), line and paragraph separators, every bidi embedding, override and isolate
  // control, the bidi marks, and what shows as nothing (look-alikes of other names).
  const invisible = [0xad, 0x34f, 0x115f, 0x1160, 0x180e, 0x200b, 0x2060, 0x2064, 0x206a, 0x206f, 0x3164, 0xfeff, 0xffa0];
  for (const c of [0x80, 0x85, 0x9b, 0x9f, 0x2028, 0x2029, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x61c, ...invisible]) {
    it(`refuses a name holding U+${c.toString(16).toUpperCase().padStart(4, '0')}`, () => {
      assert.throws(() => checkName(`n${String.fromCharCode(c)}me`), (e: unknown) => e instanceof SluiceError && e.kind === 'invalid-path');
    });
  }
  // Those kept for Persian, emoji and flags, where they do nothing: `invoice<ZWJ>.pdf` looks like `invoice.pdf` (found by a review).
  const stray = ['invoice\u200d.pdf', 'invoice\u200c.pdf', 'invoice\ufe0f.pdf', '\u200dlead', 'trail\u{1f469}\u200d', 'a\u2764\ufe0f\ufe0f',
    'hidden\u{e0041}\u{e0042}', '\u{1f3f4}\u{e0067}\u{e0062}', '\u{1f3f4}\u{e0067}x\u{e007f}', 'cancel\u{e007f}', 'lang\u{e0001}', 'unassigned\u{e0fff}', '\u00e9\u200d\u00e9', '\u0430\u200c\u0431'];
  for (const name of stray) {
    it(`refuses ${JSON.stringify(name)}, an invisible character out of place`, () => {
      assert.throws(() => checkName(name), (e: unknown) => e instanceof SluiceError && e.kind === 'invalid-path');
      assert.equal(isClientName(name), false);
    });
  }
  // An MLSx entry's name is everything after the first space: these cannot split it.
  // The neighbours of what is refused are fine: U+00A0 and U+00A1 after C1, U+2027 and U+202F around the bidi controls, U+2070
  // after the format characters; and what Persian spelling (ZWNJ), emoji (ZWJ, a variation selector) and flags (tags) need.
  const kept = ['\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645', '\u{1f469}\u200d\u{1f4bb}', '\u2764\ufe0f', '\u{1f3f4}\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}'];
  // Each of them also where it does something: Indic conjuncts, emoji with skin tones and presentation, a keycap, several flags.
  kept.push('\u0915\u094d\u200d\u0937', '\u0936\u094d\u200c\u0930', '\u{1f469}\u{1f3fd}\u200d\u{1f4bb}', '\u{1f3f3}\ufe0f\u200d\u{1f308}', '\u{1f469}\u200d\u2764\ufe0f\u200d\u{1f468}', '1\ufe0f\u20e3.txt', '\u{1f3f4}\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}\u{1f3f4}\u{e0067}\u{e0062}\u{e0077}\u{e006c}\u{e0073}\u{e007f}', '\u8fbb\u{e0100}');
  for (const name of ['a;b', 'type=file;', ' leading space', 'trailing ', 'a b; c=d', '名前', 'a\u00a0b\u00a1', 'a\u2027b\u202f\u2070', ...kept]) {
    it(`accepts ${JSON.stringify(name)}`, () => {
      assert.doesNotThrow(() => checkName(name));
      assert.equal(isClientName(name), true);
    });
  }
});

describe('visibleLinkTarget (pure)', () => {
  // The text as the session layer hands it over: an absolute target already virtual, null when outside the home.
  const cases: [linkDir: string, text: string | null, shown: string | null][] = [
    ['/', 'file', 'file'],
    ['/a/b', '../c', '../c'],
    ['/a', 'x/../y', 'x/../y'],
    ['/a', './x', './x'],
    ['/', '/dir/file', '/dir/file'],
    ['/deep/er', '/dir//./file', '/dir/file'],
    ['/', '/', '/'],
    ['/', null, null],
    ['/a/b', null, null],
  ];
  for (const [dir, text, shown] of cases) {
    it(`${dir}: ${text} -> ${shown}`, () => assert.equal(visibleLinkTarget(dir, text), shown));
  }
  const refused: [string, string][] = [
    ['/', '../outside'],
    ['/a', '../../etc/passwd'],
    ['/a', 'b/../../../x'],
    ['/', '/../x'],
    ['/', 'bad\nname'],
    ['/', '/dir/x\r\n'],
    // One name to the kernel, two to a client given the text back.
    ['/', 'd/x\\y'],
    ['/a', '/d/x\\y'],
    ['/', 'caf\uFFFD'],
  ];
  for (const [dir, text] of refused) {
    it(`${dir}: ${JSON.stringify(text)} throws`, () => assert.throws(() => visibleLinkTarget(dir, text), SluiceError));
  }
});

describe('overlaps (pure)', () => {
  const cases: [a: string, b: string, expected: boolean][] = [
    ['/a', '/a', true],
    ['/a', '/a/b', true],
    ['/a/b/c', '/a', true],
    ['/', '/x/y', true],
    ['/a', '/b', false],
    ['/d', '/dd/x', false],
    ['/d/x', '/d/y', false],
    ['/a b', '/a', false],
  ];
  for (const [a, b, expected] of cases) {
    it(`${a} and ${b}: ${String(expected)}`, () => {
      assert.equal(overlaps(a, b), expected);
      assert.equal(overlaps(b, a), expected);
    });
  }
});
