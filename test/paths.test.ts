import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SluiceError } from '../src/session/errors.js';
import { checkName, relativeVirtual, resolveVirtual, visibleLinkTarget } from '../src/session/paths.js';

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

describe('checkName (pure): what can break an MLSx entry is refused at creation', () => {
  const refused = ['a\rb', 'a\nb', 'a\r\n250 ok', '\0', 'tab\there', 'esc\x1b[31m', 'del\x7f', '', '.', '..', 'a/b', 'a\\b'];
  for (const name of refused) {
    it(`refuses ${JSON.stringify(name)}`, () => {
      assert.throws(() => checkName(name), (e: unknown) => e instanceof SluiceError && e.kind === 'invalid-path');
    });
  }
  // An MLSx entry's name is everything after the first space: these cannot split it.
  for (const name of ['a;b', 'type=file;', ' leading space', 'trailing ', 'a b; c=d', '名前']) {
    it(`accepts ${JSON.stringify(name)}`, () => assert.doesNotThrow(() => checkName(name)));
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
  ];
  for (const [dir, text] of refused) {
    it(`${dir}: ${JSON.stringify(text)} throws`, () => assert.throws(() => visibleLinkTarget(dir, text), SluiceError));
  }
});
