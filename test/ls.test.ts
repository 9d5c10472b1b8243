import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { listLine, lsDate, modeString } from '../src/listing/ls.js';
import type { FileInfo } from '../src/session/file-info.js';

/** Table tests of the `ls -l` text FTP LIST and SFTP longnames share (listing/ls.ts). */

const info = (over: Partial<FileInfo>): FileInfo => ({
  name: 'f.txt',
  type: 'file',
  size: 5,
  mode: 0o100644,
  nlink: 1,
  uid: 1000,
  gid: 1000,
  mtime: new Date(Date.UTC(2026, 10, 24, 21, 10, 59)),
  atime: new Date(0),
  ctimeMs: 0,
  ino: 1,
  dev: 1,
  ...over,
});
const NOW = new Date(Date.UTC(2026, 10, 30, 12, 0, 0));

describe('modeString', () => {
  const cases: [FileInfo['type'], number, string][] = [
    ['file', 0o100644, '-rw-r--r--'],
    ['file', 0o100000, '----------'],
    ['file', 0o100777, '-rwxrwxrwx'],
    ['dir', 0o040755, 'drwxr-xr-x'],
    ['symlink', 0o120777, 'lrwxrwxrwx'],
    ['other', 0o010600, '?rw-------'],
    ['other', 0o140755, '?rwxr-xr-x'],
    ['file', 0o104755, '-rwsr-xr-x'],
    ['file', 0o104644, '-rwSr--r--'],
    ['file', 0o102755, '-rwxr-sr-x'],
    ['file', 0o102745, '-rwxr-Sr-x'],
    ['dir', 0o041777, 'drwxrwxrwt'],
    ['dir', 0o041776, 'drwxrwxrwT'],
    ['file', 0o107777, '-rwsrwsrwt'],
  ];
  for (const [type, mode, expected] of cases) {
    it(`${type} ${mode.toString(8)} -> ${expected}`, () => assert.equal(modeString(info({ type, mode })), expected));
  }
});

describe('lsDate', () => {
  const cases: [string, Date, string][] = [
    ['recent: time of day', new Date(Date.UTC(2026, 10, 24, 21, 10)), 'Nov 24 21:10'],
    ['single-digit day is space-padded', new Date(Date.UTC(2026, 10, 3, 9, 5)), 'Nov  3 09:05'],
    ['five months ago: still recent', new Date(Date.UTC(2026, 5, 30, 0, 0)), 'Jun 30 00:00'],
    ['seven months ago: the year', new Date(Date.UTC(2026, 3, 1, 12, 0)), 'Apr  1  2026'],
    ['last decade', new Date(Date.UTC(2015, 0, 31, 23, 59)), 'Jan 31  2015'],
    ['the epoch', new Date(0), 'Jan  1  1970'],
    ['in the near future: time of day', new Date(Date.UTC(2026, 11, 25, 8, 0)), 'Dec 25 08:00'],
    ['far in the future: the year', new Date(Date.UTC(2027, 11, 25, 8, 0)), 'Dec 25  2027'],
    ['UTC, not the local zone', new Date(Date.UTC(2026, 10, 29, 23, 30)), 'Nov 29 23:30'],
  ];
  for (const [what, date, expected] of cases) {
    it(`${what}: ${expected}`, () => assert.equal(lsDate(date, NOW), expected));
  }
});

describe('listLine', () => {
  const cases: [string, FileInfo, boolean, string][] = [
    ['a file', info({}), false, '-rw-r--r--    1 ftp      ftp                 5 Nov 24 21:10 f.txt'],
    ['an old directory', info({ name: 'docs', type: 'dir', mode: 0o40750, nlink: 3, size: 4096, mtime: new Date(Date.UTC(2020, 1, 9)) }), false,
      'drwxr-x---    3 ftp      ftp              4096 Feb  9  2020 docs'],
    ['a large file', info({ size: 123_456_789_012 }), false, '-rw-r--r--    1 ftp      ftp      123456789012 Nov 24 21:10 f.txt'],
    ['a name with spaces', info({ name: ' two  spaces ' }), false, '-rw-r--r--    1 ftp      ftp                 5 Nov 24 21:10  two  spaces '],
    ['a symlink with its target, when asked', info({ name: 'l', type: 'symlink', mode: 0o120777, size: 5, target: 'alpha' }), true,
      'lrwxrwxrwx    1 ftp      ftp                 5 Nov 24 21:10 l -> alpha'],
    ['a symlink into the home', info({ name: 'l', type: 'symlink', mode: 0o120777, target: '/dir/file' }), true,
      'lrwxrwxrwx    1 ftp      ftp                 5 Nov 24 21:10 l -> /dir/file'],
    ['a symlink without a visible target: the name only', info({ name: 'l', type: 'symlink', mode: 0o120777 }), true,
      'lrwxrwxrwx    1 ftp      ftp                 5 Nov 24 21:10 l'],
    ['a symlink\'s target left out unless asked (SFTP longnames)', info({ name: 'l', type: 'symlink', mode: 0o120777, target: 'alpha' }), false,
      'lrwxrwxrwx    1 ftp      ftp                 5 Nov 24 21:10 l'],
    ['a target on something not a symlink is not shown', info({ target: 'x' }), true, '-rw-r--r--    1 ftp      ftp                 5 Nov 24 21:10 f.txt'],
    ['a fifo', info({ name: 'p', type: 'other', mode: 0o10644, size: 0 }), false, '?rw-r--r--    1 ftp      ftp                 0 Nov 24 21:10 p'],
  ];
  for (const [what, entry, linkTarget, expected] of cases) {
    it(what, () => assert.equal(listLine(entry, NOW, { linkTarget }), expected));
  }

  it('owner and group are never the uid or gid', () => {
    assert.doesNotMatch(listLine(info({ uid: 4242, gid: 4343 }), NOW), /4242|4343/);
  });
});
