import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SluiceError } from '../src/session/errors.js';
import { relativeVirtual, resolveVirtual } from '../src/session/paths.js';

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
