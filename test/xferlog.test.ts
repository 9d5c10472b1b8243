import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Actor } from '../src/audit/events.js';
import { xferlogLine } from '../src/audit/xferlog.js';

const actor = (user: string): Actor => ({ session: 's', user, protocol: 'ftps', ip: '10.0.0.5', port: 1 });
const upload = (path: string) => ({
  event: 'upload' as const,
  path,
  bytes: 7,
  size: 7,
  offset: 0,
  resumed: false,
  started: '2026-11-04T09:05:00.000Z',
  duration_ms: 1200,
  result: 'ok' as const,
  sha256: null,
  type: 'binary' as const,
});

// Test names in plain ASCII: the runner's output is read on terminals too.
const shown = (s: string) => s.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

describe('xferlogLine (pure): a client-chosen name stays one field of one line', () => {
  const cases: [what: string, path: string, field: string][] = [
    ['a blank', '/name with spaces.txt', '/name_with_spaces.txt'],
    ['CR and LF', '/a\r\nTue Nov  4 09:05:01 2026 1 6.6.6.6 1 /forged b _ i r root ftp 0 * c', '/a__Tue_Nov__4_09:05:01_2026_1_6.6.6.6_1_/forged_b___i_r_root_ftp_0_*_c'],
    ['tab, ESC and DEL', '/t\tesc\x1b[2Kdel\x7f', '/t_esc_[2Kdel_'],
    ['NEL and the other C1 controls', '/a\u0085b\u0080c\u009bd\u009f', '/a_b_c_d_'],
    ['line and paragraph separators', '/a\u2028b\u2029c', '/a_b_c'],
    ['bidi embeddings, overrides and isolates', '/a\u202Etxt.exe\u202A\u202B\u202C\u202D\u2066\u2067\u2068\u2069', '/a_txt.exe________'],
    ['nothing else', '/ü-名前_é\u00a0\u00a1\u2027\u202f\u2070', '/ü-名前_é_\u00a1\u2027_\u2070'],
  ];
  for (const [what, path, field] of cases) {
    it(`${what}: ${shown(path)} -> ${shown(field)}`, () => {
      const line = xferlogLine(actor('alice'), upload(path), new Date(2026, 10, 4, 9, 5, 1), true);
      assert.equal(line, `Wed Nov  4 09:05:01 2026 1 10.0.0.5 7 ${field} b _ i r alice ftps 0 * c`);
    });
  }

  it('anonymous FTP has access mode a, as xferlog(5) says (a review found r)', () => {
    const line = xferlogLine({ ...actor('anonymous'), protocol: 'ftp' }, upload('/incoming/f'), new Date(2026, 10, 4, 9, 5, 1), true);
    assert.equal(line, 'Wed Nov  4 09:05:01 2026 1 10.0.0.5 7 /incoming/f b _ i a anonymous ftp 0 * c');
  });

  it('with ftp.anonymous off, a real user named anonymous has access mode r (a review found a)', () => {
    const line = xferlogLine(actor('anonymous'), upload('/f'), new Date(2026, 10, 4, 9, 5, 1), false);
    assert.equal(line, 'Wed Nov  4 09:05:01 2026 1 10.0.0.5 7 /f b _ i r anonymous ftps 0 * c');
  });

  it('a user name alike', () => {
    const line = xferlogLine(actor('ev\u0085il \u202Eroot'), upload('/f'), new Date(2026, 10, 4, 9, 5, 1), true);
    assert.equal(line, 'Wed Nov  4 09:05:01 2026 1 10.0.0.5 7 /f b _ i r ev_il__root ftps 0 * c');
  });
});
