import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { UserTotals, globMatcher, recordMatcher } from '../src/audit/query.js';
import { textTable } from '../src/cli/table.js';
import { sluice } from './helpers/cli.js';
import { cpuSince } from './helpers/cpu-time.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-query-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const rec = (time: string, user: string, protocol: string, ip: string, event: string, extra: Record<string, unknown> = {}) =>
  ({ time, user, protocol, ip, port: 1, session: 's', event, ...extra });

// Oldest in the rotated, gzipped file; newest in audit.log.
const OLD = [
  rec('2026-11-01T10:00:00.000Z', 'alice', 'sftp', '10.0.0.5', 'upload', { path: '/incoming/a.pdf', bytes: 10, result: 'ok', sha256: 'ab'.repeat(32) }),
  rec('2026-11-01T11:00:00.000Z', 'bob', 'ftps', '192.168.1.9', 'login-failed', { reason: 'bad-password' }),
];
const NEW = [
  rec('2026-11-20T09:00:00.000Z', 'alice', 'ftps', '10.0.0.5', 'download', { path: '/reports/q3.csv', bytes: 99, result: 'aborted' }),
  rec('2026-11-21T09:00:00.000Z', 'bob', 'sftp', '192.168.1.9', 'upload', { path: '/incoming/deep/b.bin', bytes: 5, result: 'ok' }),
  rec('2026-11-22T09:00:00.000Z', 'carol', 'ftp', '2001:db8::7', 'rename', { from: '/incoming/x', to: '/done/x' }),
];

describe('audit query', () => {
  const data = join(dir, 'data');
  const query = (...args: string[]) => sluice(dir, ['audit', 'query', '--json', ...args]);
  const paths = (stdout: string) =>
    stdout.trim().split('\n').filter((l) => l !== '').map((l) => {
      const r = JSON.parse(l) as { time: string };
      return r.time.slice(0, 13);
    });

  before(() => {
    mkdirSync(data, { recursive: true });
    writeFileSync(join(data, 'audit.log.1.gz'), gzipSync(OLD.map((r) => JSON.stringify(r)).join('\n') + '\n'));
    writeFileSync(join(data, 'audit.log'), NEW.map((r) => JSON.stringify(r)).join('\n') + '\n');
  });

  it('reads rotated gzip files and the live log, oldest first', () => {
    const r = query();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(paths(r.stdout), ['2026-11-01T10', '2026-11-01T11', '2026-11-20T09', '2026-11-21T09', '2026-11-22T09']);
  });

  const cases: [string, string[], string[]][] = [
    ['--user', ['--user', 'alice'], ['2026-11-01T10', '2026-11-20T09']],
    ['--ip (IPv4 CIDR)', ['--ip', '192.168.0.0/16'], ['2026-11-01T11', '2026-11-21T09']],
    ['--ip (IPv6)', ['--ip', '2001:db8::/32'], ['2026-11-22T09']],
    ['--protocol', ['--protocol', 'sftp'], ['2026-11-01T10', '2026-11-21T09']],
    ['--path (** and rename targets)', ['--path', '/incoming/**'], ['2026-11-01T10', '2026-11-21T09', '2026-11-22T09']],
    ['--path (* stays in one directory)', ['--path', '/incoming/*'], ['2026-11-01T10', '2026-11-22T09']],
    ['--since', ['--since', '2026-11-21'], ['2026-11-21T09', '2026-11-22T09']],
    ['--until', ['--until', '2026-11-01T10:30:00Z'], ['2026-11-01T10']],
    ['--result ok', ['--result', 'ok'], ['2026-11-01T10', '2026-11-21T09']],
    ['--result failed', ['--result', 'failed'], ['2026-11-01T11', '2026-11-20T09']],
    // Found by a new user's try of the README: `aborted` is a result the trail records, and was refused.
    ['--result aborted', ['--result', 'aborted'], ['2026-11-20T09']],
    ['several filters together', ['--user', 'bob', '--since', '2026-11-10'], ['2026-11-21T09']],
  ];
  for (const [what, args, expected] of cases) {
    it(`${what} returns exactly the matching records`, () => {
      const r = query(...args);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(paths(r.stdout), expected);
    });
  }

  it('prints a readable table and CSV', () => {
    const table = sluice(dir, ['audit', 'query', '--user', 'carol']).stdout;
    assert.match(table, /^TIME\s+NODE\s+USER\s+PROTOCOL\s+IP\s+EVENT\s+PATH\s+BYTES\s+RESULT\s+SHA256\n/);
    assert.match(table, /carol\s+ftp\s+2001:db8::7\s+rename\s+\/incoming\/x -> \/done\/x/);
    const csv = sluice(dir, ['audit', 'query', '--csv', '--user', 'alice']).stdout.trim().split('\n');
    assert.equal(csv[0], 'time,node,user,protocol,ip,event,path,bytes,result,sha256');
    assert.equal(csv.length, 3);
    assert.equal(csv[1], `2026-11-01T10:00:00.000Z,,alice,sftp,10.0.0.5,upload,/incoming/a.pdf,10,ok,${'ab'.repeat(32)}`);
  });

  it('reports a truncated last line without failing', () => {
    const f = join(dir, 'torn.log');
    writeFileSync(f, readFileSync(join(data, 'audit.log'), 'utf8'));
    appendFileSync(f, '{"time":"2026-11-23T0');
    const r = sluice(dir, ['audit', 'query', '--json', '--file', f]);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /torn\.log:4: truncated last line skipped/);
    assert.equal(paths(r.stdout).length, 3);
  });

  it('passes over lines that are JSON but no record, naming them', () => {
    const f = join(dir, 'odd.log');
    writeFileSync(f, ['null', JSON.stringify(NEW[0]), '[1]', '7'].join('\n') + '\n');
    const r = sluice(dir, ['audit', 'query', '--json', '--file', f]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(paths(r.stdout), ['2026-11-20T09']);
    assert.match(r.stderr, /odd\.log:1: malformed line skipped\n.*odd\.log:3: malformed line skipped\n.*odd\.log:4: truncated last line skipped/s);
  });

  it('a damaged rotated .gz: query and report answer from every other file, name it on stderr and exit 1', () => {
    // Found by an operator's walkthrough: one truncated .gz failed every query and report with "cannot read ...: Z_BUF_ERROR".
    const root = join(dir, 'damaged');
    const rotated = join(root, 'data');
    mkdirSync(rotated, { recursive: true });
    const gz = (records: object[]) => gzipSync(records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    writeFileSync(join(rotated, 'audit.log.3.gz'), gz([OLD[0] as object]));
    const damaged = join(rotated, 'audit.log.2.gz');
    writeFileSync(damaged, gz([OLD[1] as object]).subarray(0, 30));
    writeFileSync(join(rotated, 'audit.log.1'), JSON.stringify(NEW[0]) + '\n');
    writeFileSync(join(rotated, 'audit.log'), NEW.slice(1).map((r) => JSON.stringify(r)).join('\n') + '\n');
    const told = `sluice: ${damaged}: compressed file is cut short or damaged (unexpected end of gzip data); its records are left out\n`;

    const q = sluice(root, ['audit', 'query', '--json']);
    assert.equal(q.code, 1, q.stderr);
    assert.deepEqual(paths(q.stdout), ['2026-11-01T10', '2026-11-20T09', '2026-11-21T09', '2026-11-22T09']);
    assert.equal(q.stderr, told);
    const table = sluice(root, ['audit', 'query', '--user', 'carol']);
    assert.equal(table.code, 1);
    assert.match(table.stdout, /carol\s+ftp/);

    // Bob's failed login was in the damaged file; his upload is in the live one.
    const json = sluice(root, ['audit', 'report', '--json']);
    assert.equal(json.code, 1, json.stderr);
    assert.equal(json.stderr, told);
    const bob = (JSON.parse(json.stdout) as { user: string; uploads: number; failedLogins: number }[]).find((u) => u.user === 'bob');
    assert.deepEqual([bob?.uploads, bob?.failedLogins], [1, 0]);
    const report = sluice(root, ['audit', 'report']);
    assert.equal(report.code, 1, report.stderr);
    assert.equal(report.stderr, told);
    assert.match(report.stdout, /^bob\s+1\s+5\s+0\s+0\s+0\s+0$/m);
  });

  for (const [args, message] of [
    [['--since', 'yesterday'], /--since: "yesterday" is not a date/],
    [['--ip', '10.0.0.0/40'], /--ip: .*bad prefix/],
    [['--result', 'maybe'], /--result: one of ok, aborted, failed$/m],
    [['--json', '--csv'], /exclude each other/],
    // Found by a hostile-input review: reversed, they answered an empty table, exit 0.
    [['--since', '2026-12-01', '--until', '2026-01-01'], /^sluice: --since: "2026-12-01" is later than --until "2026-01-01": no record could match$/m],
    [['--file', join(dir, 'nope.log')], /cannot read .*nope\.log: ENOENT/],
  ] as [string[], RegExp][]) {
    it(`refuses ${args.join(' ')} with one clear line`, () => {
      const r = sluice(dir, ['audit', 'query', ...args]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    });
  }

  it('glob: ** crosses directories, * and ? do not', () => {
    assert.ok(globMatcher('/a/**')('/a/b/c'));
    assert.ok(!globMatcher('/a/*')('/a/b/c'));
    assert.ok(globMatcher('/a/?.txt')('/a/x.txt'));
    assert.ok(!globMatcher('/a/?.txt')('/a//.txt'), '? is no separator');
    assert.ok(!globMatcher('/a.b')('/aXb'), 'dots are literal');
    assert.ok(globMatcher('**')('') && globMatcher('/a/***')('/a/b/c') && !globMatcher('/a/*')('/a/b/'));
    assert.ok(recordMatcher({ pathGlob: '/z' })({ path: '/z' }));
  });

  it('glob: matches as the plain regular expression would, on random patterns and paths', () => {
    // The reference: the obvious translation, exact but exponential on many stars (kept small here).
    const reference = (glob: string) => {
      const re = glob.replace(/\*\*|\*|\?|[.+^${}()|[\]\\]/g, (m) => (m === '**' ? '.*' : m === '*' ? '[^/]*' : m === '?' ? '[^/]' : `\\${m}`));
      return new RegExp(`^${re}$`);
    };
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    const pick = (alphabet: string[], max: number) => Array.from({ length: rand(max) }, () => alphabet[rand(alphabet.length)]).join('');
    for (let i = 0; i < 5000; i++) {
      const glob = pick(['a', 'b', '/', '.', '*', '**', '?'], 7);
      const path = pick(['a', 'b', '/', '.'], 9);
      assert.equal(globMatcher(glob)(path), reference(glob).test(path), `${JSON.stringify(glob)} on ${JSON.stringify(path)}`);
    }
  });

  it('glob: many stars against a long path cost a path times a pattern, not more', () => {
    // 24 stars and a letter that never matches: the regular expression took seconds for one record.
    const match = globMatcher(`${'*'.repeat(24)}!`);
    const path = `/${'a'.repeat(60)}/${'b'.repeat(60)}/${'c'.repeat(60)}`;
    const t0 = cpuSince();
    for (let i = 0; i < 100; i++) assert.equal(match(path), false);
    assert.ok(t0() < 1000, `${t0().toFixed(0)} ms of CPU for 100 records`);
    const worst = globMatcher(`${'/**'.repeat(512)}x`);
    const t1 = cpuSince();
    assert.equal(worst('/a'.repeat(2048)), false);
    assert.ok(t1() < 1000, `${t1().toFixed(0)} ms of CPU for a 1,024-star pattern`);
  });

  describe('hostile fields (a user name from a failed login is any text a client sent)', () => {
    const FORGED_ROW = '\n2026-12-02T09:00:00.000Z  vm  alice  sftp  upload  /pay.xls';
    const HOSTILE = [
      rec('2026-11-03T00:00:00.000Z', FORGED_ROW, 'ftps', '10.0.0.9', 'login-failed', { reason: 'unknown-user' }),
      rec('2026-11-03T00:01:00.000Z', '\r\x1b[2Kroot', 'ftps', '10.0.0.9', 'login-failed', { reason: 'unknown-user' }),
      rec('2026-11-03T00:02:00.000Z', '=HYPERLINK(1)\rinjected', 'sftp', '10.0.0.9', 'login-failed', { reason: 'unknown-user' }),
      rec('2026-11-03T00:03:00.000Z', 'tab\tdel\x7fcsi\x9b31mls\u2028ps\u2029fsi\u2068', 'sftp', '10.0.0.9', 'login-failed', { reason: 'unknown-user' }),
      // As an older server recorded it, before such names were refused.
      rec('2026-11-03T00:04:00.000Z', 'mallory', 'ftps', '10.0.0.9', 'upload', { path: '/a\u0085b\u202Etxt.exe', bytes: 1, result: 'ok' }),
      rec('2026-11-03T00:05:00.000Z', '+1,"two"', 'ftps', '10.0.0.9', 'login-failed', { reason: 'unknown-user' }),
      rec('2026-11-03T00:06:00.000Z', 'dom\\user\\n', 'ftps', '10.0.0.9', 'login-failed', { reason: 'unknown-user' }),
    ];
    const f = join(dir, 'hostile.log');
    // What a terminal acts on or a reader splits lines at: C0 (but the rows' own \n), DEL, C1, U+2028/9, bidi controls.
    const ACTIVE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
    const FORMULA = /^[=+\-@\t\r]/;
    before(() => writeFileSync(f, HOSTILE.map((r) => JSON.stringify(r)).join('\n') + '\n'));

    it('query table: one line per record, every control, separator and bidi character escaped visibly', () => {
      const r = sluice(dir, ['audit', 'query', '--file', f]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, ACTIVE);
      const lines = r.stdout.split('\n');
      assert.equal(lines.pop(), '');
      assert.equal(lines.length, 1 + HOSTILE.length, r.stdout);
      lines.slice(1).forEach((l, i) => assert.ok(l.startsWith(HOSTILE[i]!.time), `row ${i} is the record's own: ${l}`));
      assert.ok(lines[1]!.includes(' \\n2026-12-02T09:00:00.000Z  vm  alice  sftp  upload  /pay.xls '));
      assert.ok(lines[2]!.includes(' \\r\\x1b[2Kroot '));
      assert.ok(lines[4]!.includes(' tab\\tdel\\x7fcsi\\x9b31mls\\u{2028}ps\\u{2029}fsi\\u{2068} '));
      assert.ok(lines[5]!.includes(' /a\\x85b\\u{202e}txt.exe '));
      assert.ok(lines[7]!.includes(' dom\\\\user\\\\n '), 'a backslash is doubled: no escape can be faked');
    });

    it('report table: the same escaping of user names', () => {
      const r = sluice(dir, ['audit', 'report', '--file', f]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, ACTIVE);
      const lines = r.stdout.split('\n');
      assert.equal(lines.pop(), '');
      assert.equal(lines.length, 1 + HOSTILE.length, r.stdout);
      assert.ok(lines.some((l) => l.startsWith('\\n2026-12-02T09:00:00.000Z  vm  alice  sftp  upload  /pay.xls  ')));
      assert.ok(lines.some((l) => l.startsWith('\\r\\x1b[2Kroot  ')));
    });

    it('CSV: fields with quotes, commas, CR or LF quoted; formulas start with a quote; each row one record', () => {
      const r = sluice(dir, ['audit', 'query', '--csv', '--file', f]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.includes(`,"'=HYPERLINK(1)\rinjected",sftp,`), JSON.stringify(r.stdout));
      assert.ok(r.stdout.includes(`,"'+1,""two""",ftps,`));
      assert.ok(r.stdout.includes(`,"${FORGED_ROW}",ftps,`));
      assert.ok(r.stdout.includes(`,"'\r\x1b[2Kroot",ftps,`));
      // Read back as RFC 4180: one row per record, ten fields each, the user names exact but for the quote.
      const rows = parseCsv(r.stdout);
      assert.equal(rows.length, 1 + HOSTILE.length);
      assert.ok(rows.every((row) => row.length === 10));
      assert.deepEqual(
        rows.slice(1).map((row) => row[2]),
        HOSTILE.map((h) => (FORMULA.test(h.user) ? `'${h.user}` : h.user)),
      );
      assert.ok(rows.every((row) => row.every((cell) => !FORMULA.test(cell))), 'no field starts a formula');
    });

    it('JSON lines stay exact', () => {
      const r = sluice(dir, ['audit', 'query', '--json', '--file', f]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n').map((l) => JSON.parse(l) as unknown), HOSTILE);
    });
  });

  it('report: per user uploads, downloads, failed logins and refusals', () => {
    const f = join(dir, 'report.log');
    const lines = [
      rec('2026-11-02T00:00:00Z', 'alice', 'sftp', '10.0.0.5', 'upload', { path: '/a', bytes: 100, result: 'ok' }),
      rec('2026-11-02T00:01:00Z', 'alice', 'sftp', '10.0.0.5', 'upload', { path: '/b', bytes: 50, result: 'ok' }),
      rec('2026-11-02T00:02:00Z', 'alice', 'sftp', '10.0.0.5', 'upload', { path: '/c', bytes: 7, result: 'failed' }),
      rec('2026-11-02T00:03:00Z', 'alice', 'ftps', '10.0.0.5', 'download', { path: '/a', bytes: 100, result: 'ok' }),
      rec('2026-11-02T00:04:00Z', 'bob', 'ftps', '10.0.0.6', 'login-failed', { reason: 'bad-password' }),
      rec('2026-11-02T00:05:00Z', 'bob', 'ftps', '10.0.0.6', 'denied', { operation: 'mkdir', path: '/x', reason: 'permission' }),
      rec('2026-11-02T00:06:00Z', 'bob', 'ftps', '10.0.0.6', 'quota-exceeded', { path: '/big' }),
    ];
    writeFileSync(f, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const r = sluice(dir, ['audit', 'report', '--json', '--file', f]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [
      { user: 'alice', uploads: 2, uploadBytes: 150, downloads: 1, downloadBytes: 100, failedLogins: 0, refusals: 0 },
      { user: 'bob', uploads: 0, uploadBytes: 0, downloads: 0, downloadBytes: 0, failedLogins: 1, refusals: 2 },
    ]);
    const table = sluice(dir, ['audit', 'report', '--file', f, '--since', '2026-11-02T00:03:30Z']).stdout;
    assert.match(table, /^USER\s+UPLOADS/);
    assert.match(table, /bob\s+0\s+0\s+0\s+0\s+1\s+2/);
    assert.doesNotMatch(table, /alice/);
  });

  it('a trail of 150,000 records: query (table, JSON, CSV) and report answer, as do tables of that many rows', () => {
    // Each record was once spread as one argument of a call: 125,000 overflowed the stack.
    const f = join(dir, 'long.log');
    const n = 150_000;
    const lines: string[] = [];
    for (let i = 0; i < n; i++) {
      lines.push(JSON.stringify(rec(new Date(Date.UTC(2026, 10, 3) + i * 1000).toISOString(), `u${i % 7}`, 'sftp', '10.0.0.5', 'download', { path: '/f', bytes: 10, result: 'ok' })));
    }
    writeFileSync(f, lines.join('\n') + '\n');
    for (const form of [[], ['--json'], ['--csv']]) {
      const r = sluice(dir, ['audit', 'query', ...form, '--file', f]);
      assert.equal(r.code, 0, `${form.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout.trimEnd().split('\n').length, form.includes('--json') ? n : n + 1);
    }
    const report = sluice(dir, ['audit', 'report', '--json', '--file', f]);
    assert.equal(report.code, 0, report.stderr);
    assert.equal((JSON.parse(report.stdout) as { downloads: number }[]).reduce((sum, u) => sum + u.downloads, 0), n);
    assert.equal(textTable(['A', 'B'], Array.from({ length: n }, (_, i) => [String(i), 'x'])).split('\n').length, n + 2);
  });
});

/** RFC 4180 as a spreadsheet reads it: quoted fields may hold commas, quotes ("") and line breaks; a row ends at LF, CR or CRLF. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      rows.push([...row, field]);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length > 0) rows.push([...row, field]);
  return rows;
}

describe('audit report', () => {
  it('counts the failed logins the throttle kept only as a count (found by a review: they were left out)', () => {
    const records = [
      rec('2026-11-03T00:00:00.000Z', 'carol', 'sftp', '10.0.0.9', 'login-failed', { reason: 'bad-password' }),
      rec('2026-11-03T00:00:01.000Z', 'dave', 'sftp', '10.0.0.9', 'login-failed', { reason: 'unknown-user' }),
      rec('2026-11-03T00:01:00.000Z', '', 'sftp', '10.0.0.9', 'login-failed-repeated', { count: 40, window_s: 60 }),
    ];
    const totals = new UserTotals();
    for (const r of records.slice(0, 2)) totals.add(r);
    // As the report counts them: a file at a time, merged.
    const second = new UserTotals();
    second.add(records[2] as (typeof records)[2]);
    totals.merge(second);
    totals.merge(second);
    const failed = totals.list().map((u) => [u.user, u.failedLogins]);
    assert.deepEqual(failed, [['', 80], ['carol', 1], ['dave', 1]]);
  });
});
