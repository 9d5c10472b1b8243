import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GENESIS, chainLine, type ChainHead } from '../src/audit/chain.js';
import { AuditLog } from '../src/audit/log.js';
import { collectSeries, logFiles, seriesOf } from '../src/audit/files.js';
import { place, timeOrder } from '../src/audit/query.js';
import { verifySeries } from '../src/audit/verify.js';
import { ConfigError } from '../src/config/errors.js';
import { loadConfig } from '../src/config/load.js';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/**
 * Issue #16, audit across nodes: each node writes its own chain, every record
 * naming the node (nodeId); `sluice audit` verifies each node's chain apart and
 * merges their records in time order.
 */
const dir = mkdtempSync(join(tmpdir(), 'sluice-nodes-'));
after(() => rmSync(dir, { recursive: true, force: true }));

type Rec = Record<string, unknown> & { seq: number; event: string; time: string };
const recordsOf = (file: string): Rec[] =>
  readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Rec);
const jsonLines = (stdout: string): Rec[] => stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Rec);

describe('nodeId configuration', () => {
  const cwd = join(dir, 'config');
  mkdirSync(cwd);
  const load = (env: NodeJS.ProcessEnv = {}, extra: { file?: string; hostname?: string } = {}) => loadConfig({ env, cwd, ...extra });
  const fails = (pattern: RegExp) => (e: unknown) => e instanceof ConfigError && pattern.test(e.message) && !e.message.includes('\n');

  it('defaults to the host name; the file sets it, SLUICE_NODE_ID overrides the file', () => {
    assert.equal(load().nodeId, hostname());
    assert.equal(load({}, { hostname: 'web-2.example.net' }).nodeId, 'web-2.example.net');
    writeFileSync(join(cwd, 'n.yaml'), 'nodeId: from-file\n');
    assert.equal(load({}, { file: 'n.yaml' }).nodeId, 'from-file');
    assert.equal(load({ SLUICE_NODE_ID: 'from_env.1' }, { file: 'n.yaml' }).nodeId, 'from_env.1');
  });

  for (const [what, value] of [
    ['a blank', 'web 1'],
    ['a slash', 'web/1'],
    ['a non-ASCII letter', 'wéb1'],
    ['65 characters', 'n'.repeat(65)],
  ]) {
    it(`refuses ${what} with one line naming the key and the variable`, () => {
      assert.throws(() => load({ SLUICE_NODE_ID: value }), fails(/^config: nodeId \(from SLUICE_NODE_ID\): must be 1 to 64 of A-Z a-z 0-9 \. _ -$/));
    });
  }

  it('refuses a host name that is no node id unless nodeId is set', () => {
    assert.throws(() => load({}, { hostname: 'my host' }), fails(/host name "my host" is no node id .*set nodeId or SLUICE_NODE_ID/));
    assert.equal(load({ SLUICE_NODE_ID: 'n1' }, { hostname: 'my host' }).nodeId, 'n1');
  });

  it('the CLI exits 2 with that line', () => {
    const r = sluice(cwd, ['audit', 'query'], undefined, { SLUICE_NODE_ID: 'web 1' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /nodeId \(from SLUICE_NODE_ID\)/);
  });
});

describe('merging and grouping (pure)', () => {
  it('time order across nodes: equal times by node id, then sequence; a record without node takes its chain\'s', () => {
    const t = '2026-12-01T00:00:00.000Z';
    const later = '2026-12-01T00:00:00.001Z';
    const placed = [
      place({ time: later, node: 'a', seq: 1 }, 'a'),
      place({ time: t, node: 'b', seq: 7 }, 'b'),
      place({ time: t, seq: 3 }, 'b'),
      place({ time: t, node: 'a', seq: 9 }, 'a'),
      place({ time: t, node: 'b', seq: 5 }, 'b'),
      place({ seq: 0 }, 'c'),
    ];
    assert.deepEqual(
      placed.sort(timeOrder).map((p) => `${p.node}${p.record.seq as number}`),
      ['c0', 'a9', 'b3', 'b5', 'b7', 'a1'],
    );
  });

  it('a chain is named by its last line\'s node, never by a line its break names, across rotated files', async () => {
    let head: ChainHead = { seq: 0, prev: GENESIS };
    const line = (fields: Record<string, unknown>) => {
      const r = chainLine(head, fields);
      head = r.head;
      return r.line;
    };
    // Two lines from before node ids, then node a; rotated after the fourth line.
    const lines = [line({ event: 'audit-start' }), line({ event: 'mkdir' }), line({ node: 'a', event: 'audit-start' }), line({ node: 'a', event: 'mkdir' }), line({ node: 'a', event: 'audit-rotated' }), line({ node: 'a', event: 'mkdir' })];
    const files = (l: string[]) => new Map([['f.1', l.slice(0, 4)], ['f', l.slice(4)]]);
    const batches = async function* (l: string[]) {
      yield l.map((x) => Buffer.from(x));
    };
    const check = (m: Map<string, string[]>) => verifySeries(['f.1', 'f'], (f) => batches(m.get(f) ?? []));
    const whole = await check(files(lines));
    assert.deepEqual([whole.node, whole.break], ['a', null]);
    const old = await verifySeries(['f.1'], () => batches(lines.slice(0, 2)));
    assert.deepEqual([old.node, old.break], [null, null]);
    for (const at of [3, 4]) {
      const edited = lines.map((l, i) => (i === at ? l.replace('"node":"a"', '"node":"b"') : l));
      const r = await check(files(edited));
      assert.match(r.break?.reason ?? '', /altered/, `line ${at + 1} edited`);
      assert.equal(r.node, 'a', `the edited line ${at + 1} does not name the chain`);
      assert.deepEqual([r.break?.file, r.break?.line], at === 3 ? ['f.1', 4] : ['f', 1], 'the edited line is named');
    }
  });

  it('files group into one series per log and directory, in the order given', () => {
    assert.deepEqual(seriesOf(['a/audit.log.2.gz', 'b/audit.log', 'a/audit.log.1', 'a/audit.log', 'a/other.log']), [
      ['a/audit.log.2.gz', 'a/audit.log.1', 'a/audit.log'],
      ['b/audit.log'],
      ['a/other.log'],
    ]);
    // Other names (logrotate's dateext, a1 a2): a file continues the one given before it in its directory when `follows` says so.
    const follows = (_before: string, file: string) => !file.endsWith('x');
    assert.deepEqual(seriesOf(['d/audit.log-20261203', 'd/audit.log-20261204', 'e/a2', 'd/audit.log', 'd/audit.log.1', 'e/a3', 'e/x'], follows), [
      ['d/audit.log-20261203', 'd/audit.log-20261204', 'd/audit.log', 'd/audit.log.1'],
      ['e/a2', 'e/a3'],
      ['e/x'],
    ]);
  });

  it('files given by other names join across a line that is no record at the join, as a break of their one chain', async () => {
    // Found by a review: the grouping read only the older file's last line and the newer one's first, so an altered
    // line there split one node's files into two chains (one of them "no node id", the other called intact).
    let head: ChainHead = { seq: 0, prev: GENESIS };
    const part = (first: string) =>
      Array.from({ length: 5 }, (_, i) => {
        const r = chainLine(head, { node: 'n1', event: i === 0 ? first : 'mkdir', path: `/d${head.seq}` });
        head = r.head;
        return r.line;
      });
    const [a, b, c] = [part('audit-start'), part('audit-rotated'), part('audit-rotated')];
    for (const [name, files, want] of [
      ['garbage-start', [a, ['not json', ...b], c], 'node n1: ${D}/a-2:1: not a JSON line (altered)\n'],
      ['garbage-end', [[...a, 'not json'], b, c], 'node n1: ${D}/a-1:6: truncated or malformed last line\n'],
    ] as const) {
      const d = join(dir, name);
      mkdirSync(d);
      files.forEach((lines, i) => writeFileSync(join(d, `a-${i + 1}`), lines.join('\n') + '\n'));
      const r = sluice(dir, ['audit', 'verify', join(d, 'a-1'), join(d, 'a-2'), join(d, 'a-3')]);
      assert.deepEqual([r.code, r.stdout], [1, want.replace('${D}', d)], name);
    }
  });

  it('verify shows node ids and file names escaped: one node\'s trail cannot paint over another\'s break', () => {
    // Found by a review: a node id with CR and cursor controls erased the line of the other node's break on a terminal.
    const d = join(dir, 'painted');
    mkdirSync(d);
    const trail = (node: string, alter: boolean) => {
      let head: ChainHead = { seq: 0, prev: GENESIS };
      const lines = ['audit-start', 'mkdir', 'mkdir'].map((event) => {
        const r = chainLine(head, { node, event, path: '/x' });
        head = r.head;
        return r.line;
      });
      if (alter) lines[1] = (lines[1] as string).replace('"/x"', '"/y"');
      return lines.join('\n') + '\n';
    };
    const painter = 'vm2\r\x1b[1A\x1b[2K\x1b[8m';
    writeFileSync(join(d, 'vm.log'), trail('vm', true));
    writeFileSync(join(d, 'vm2\x1b.log'), trail(painter, false));
    const r = sluice(dir, ['audit', 'verify', join(d, 'vm.log'), join(d, 'vm2\x1b.log')]);
    assert.equal(r.code, 1, r.stderr);
    assert.doesNotMatch(r.stdout, /[\r\x1b]/, JSON.stringify(r.stdout));
    assert.match(r.stdout, /^node vm: .*vm\.log:2: altered/m);
    assert.match(r.stdout, /^node vm2\\r\\x1b\[1A\\x1b\[2K\\x1b\[8m: ok: 3 lines, chain intact$/m);
    assert.match(r.stdout, /^broken: node vm$/m);
  });

  it('a directory stands for every log below it, oldest file first, dot files passed over', async () => {
    const root = join(dir, 'collect');
    for (const f of ['n1/audit.log', 'n1/audit.log.1', 'n1/audit.log.10.gz', 'n1/audit.log.2', 'n2/x/audit.log', 'n2/.audit.log.tmp']) {
      mkdirSync(join(root, f, '..'), { recursive: true });
      writeFileSync(join(root, f), '');
    }
    assert.deepEqual(await collectSeries([root, join(root, 'n1', 'audit.log')]), [
      ['n1/audit.log.10.gz', 'n1/audit.log.2', 'n1/audit.log.1', 'n1/audit.log'].map((f) => join(root, f)),
      [join(root, 'n2/x/audit.log')],
    ]);
    // Found by a hostile-input review: symlinks to directories above ran into ELOOP, or overflowed the stack.
    symlinkSync('..', join(root, 'n2', 'x', 'up'));
    symlinkSync('.', join(root, 'n2', 'x', 'here'));
    assert.deepEqual(await collectSeries([root]), [
      ['n1/audit.log.10.gz', 'n1/audit.log.2', 'n1/audit.log.1', 'n1/audit.log'].map((f) => join(root, f)),
      [join(root, 'n2/x/audit.log')],
    ]);
  });
});

/** The lines a server wrote before node ids: the chain as now, without the `node` field. */
function oldFormat(events: Record<string, unknown>[]): string {
  let head: ChainHead = { seq: 0, prev: GENESIS };
  let ms = Date.parse('2026-11-30T12:00:00.000Z');
  const lines = [{ event: 'audit-start', pid: 4242 }, ...events].map((e) => {
    const r = chainLine(head, { time: new Date(ms++).toISOString(), ...e });
    head = r.head;
    return r.line;
  });
  return lines.join('\n') + '\n';
}

const actor = { session: 'old1', user: 'alice', protocol: 'sftp', ip: '10.1.2.3', port: 5000 };

describe('one audit file, one writer', () => {
  /** Open the log as `node`, write one line, close it; what it reported. */
  async function writeAs(file: string, node: string): Promise<string[]> {
    const errors: string[] = [];
    const log = await AuditLog.open({ file, node, rotateSize: 0, keep: { count: 0, days: 0 }, xferlog: null, onError: (e) => errors.push(e.message) });
    log.system({ event: 'hook-failed', hook: 'h', trigger: 't', user: 'u', path: '/p', reason: 'r' });
    await log.close();
    return errors;
  }

  it('a node starting on a file another node wrote last says so; its own file or one from before node ids, not', async () => {
    const file = join(dir, 'shared', 'audit.log');
    assert.deepEqual(await writeAs(file, 'one'), []);
    assert.deepEqual(await writeAs(file, 'one'), [], 'its own file');
    const [err, ...more] = await writeAs(file, 'two');
    assert.match(err ?? '', /audit\.log was last written by node "one", this is node "two": .*two nodes share this audit file/);
    assert.equal(more.length, 0);
    assert.deepEqual([...new Set(recordsOf(file).map((r) => r.node))], ['one', 'two'], 'the chain goes on, named by its writer');
    const old = join(dir, 'shared', 'old.log');
    writeFileSync(old, oldFormat([]));
    assert.deepEqual(await writeAs(old, 'one'), [], 'an upgrade from before node ids');
  });
});


describe('two nodes, each its own chain, verified apart and queried together', () => {
  const PASSWORD = 'alice password';
  const collected = join(dir, 'collected');
  let alpha: TestServer;
  let beta: TestServer;

  async function upload(srv: TestServer, path: string): Promise<void> {
    const c = await sshConnect({ port: srv.sftpPort, username: 'alice', password: PASSWORD });
    try {
      const sftp = await sftpOf(c);
      await call((cb) => sftp.writeFile(path, `body of ${path}`, cb));
    } finally {
      c.end();
    }
  }

  /** One request to the admin API over its unix socket: the server audits it as a system event. */
  function adminGet(srv: TestServer, path: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: join(srv.dir, 'admin.sock'), path }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** A node's audit files copied as an operator collects them (rsync/scp), one directory per node. */
  function collect(srv: TestServer, node: string): void {
    const data = join(srv.dir, 'data');
    for (const name of readdirSync(data).filter((n) => n.startsWith('audit.log'))) cpSync(join(data, name), join(collected, node, name));
  }

  before(async () => {
    const users = [{ name: 'alice', password: PASSWORD }];
    // One node on one process, its trail rotating into several files; the other on workers (the primary writes its trail).
    alpha = await TestServer.start({
      users,
      yaml: 'admin:\n  listen: ./admin.sock\naudit:\n  rotateSize: 500\n',
      env: { SLUICE_NODE_ID: 'alpha', SLUICE_WORKERS: '1' },
    });
    beta = await TestServer.start({ users, env: { SLUICE_NODE_ID: 'beta', SLUICE_WORKERS: '2' } });
    // Alternating between the nodes, each step finished before the next starts: the merged order is known.
    await upload(alpha, '/a1.txt');
    await upload(beta, '/b1.txt');
    await upload(alpha, '/a2.txt');
    await upload(beta, '/b2.txt');
    await assert.rejects(sshConnect({ port: beta.sftpPort, username: 'alice', password: 'wrong' }));
    assert.equal(await adminGet(alpha, '/api/v1/server'), 200);
    // SIGTERM flushes the trails.
    await alpha.terminate();
    await beta.terminate();
    collect(alpha, 'alpha');
    collect(beta, 'beta');
  });
  after(async () => {
    await alpha?.stop();
    await beta?.stop();
  });

  it('every record names its node: logins, transfers, failures, system events, anchors', () => {
    const expected = { alpha: ['audit-start', 'login', 'upload', 'logout', 'admin'], beta: ['audit-start', 'login', 'upload', 'logout', 'login-failed'] };
    assert.ok(readdirSync(join(collected, 'alpha')).length >= 2, 'alpha\'s trail rotated');
    for (const [node, events] of Object.entries(expected)) {
      const records = logFiles(join(collected, node, 'audit.log')).flatMap(recordsOf);
      for (const e of events) assert.ok(records.some((r) => r.event === e), `${node} recorded ${e}`);
      assert.deepEqual([...new Set(records.map((r) => r.node))], [node], `every ${node} line names ${node}`);
    }
  });

  it('verify checks each node\'s chain and names both', () => {
    const r = sluice(dir, ['audit', 'verify', collected]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^node alpha: ok: \d+ lines, chain intact$/m);
    assert.match(r.stdout, /^node beta: ok: \d+ lines, chain intact$/m);
    assert.match(r.stdout, /^ok: 2 chains, each intact$/m);
    // As query and report take them, with --file: the same.
    const f = sluice(dir, ['audit', 'verify', '--file', join(collected, 'alpha'), join(collected, 'beta')]);
    assert.equal(f.code, 0, f.stdout + f.stderr);
    assert.equal(f.stdout, r.stdout);
    for (const bad of [['--file'], ['--bogus', collected]]) {
      const e = sluice(dir, ['audit', 'verify', ...bad]);
      assert.equal(e.code, 2, bad.join(' '));
      assert.equal(e.stderr.trim().split('\n').length, 1, e.stderr);
    }
  });

  it('query merges both nodes\' records in time order', () => {
    const r = sluice(dir, ['audit', 'query', '--json', '--file', join(collected, 'beta'), '--file', join(collected, 'alpha')]);
    assert.equal(r.code, 0, r.stderr);
    const records = jsonLines(r.stdout);
    assert.deepEqual(
      records.filter((x) => x.event === 'upload').map((x) => `${x.node as string} ${x.path as string}`),
      ['alpha /a1.txt', 'beta /b1.txt', 'alpha /a2.txt', 'beta /b2.txt'],
    );
    const times = records.map((x) => Date.parse(x.time));
    assert.deepEqual(times, [...times].sort((a, b) => a - b), 'in time order throughout');
    for (const node of ['alpha', 'beta']) {
      const seqs = records.filter((x) => x.node === node).map((x) => x.seq);
      assert.deepEqual(seqs, [...seqs.keys()], `all of ${node}'s records, in its own order`);
    }
    const table = sluice(dir, ['audit', 'query', '--file', collected, '--path', '/b2.txt']).stdout;
    assert.match(table, /^TIME\s+NODE\s+USER/);
    assert.match(table, /\sbeta\s+alice\s+sftp\s/);
    const report = sluice(dir, ['audit', 'report', '--json', '--file', collected]);
    assert.deepEqual((JSON.parse(report.stdout) as { user: string; uploads: number; failedLogins: number }[]).map((u) => [u.user, u.uploads, u.failedLogins]), [['alice', 4, 1]]);
  });

  it('a tampered line in one node\'s file is reported for that node, the other still verified', () => {
    const tampered = join(dir, 'tampered');
    cpSync(collected, tampered, { recursive: true });
    const file = join(tampered, 'beta', 'audit.log');
    const lines = readFileSync(file, 'utf8').split('\n');
    const at = lines.findIndex((l) => l.includes('"/b1.txt"'));
    lines[at] = (lines[at] as string).replace('"/b1.txt"', '"/b9.txt"');
    writeFileSync(file, lines.join('\n'));
    const r = sluice(dir, ['audit', 'verify', tampered]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, new RegExp(`^node beta: ${file}:${at + 1}: altered`, 'm'));
    assert.match(r.stdout, /^node alpha: ok: \d+ lines, chain intact$/m);
    assert.match(r.stdout, /^broken: node beta$/m);

    // Moving a record to the other node (its node field edited) breaks the chain too: the field is under the hash.
    const moved = join(dir, 'moved');
    cpSync(collected, moved, { recursive: true });
    const alphaFile = logFiles(join(moved, 'alpha', 'audit.log')).find((f) => readFileSync(f, 'utf8').includes('"/a2.txt"')) as string;
    const alphaLines = readFileSync(alphaFile, 'utf8').split('\n');
    const a2 = alphaLines.findIndex((l) => l.includes('"/a2.txt"'));
    alphaLines[a2] = (alphaLines[a2] as string).replace('"node":"alpha"', '"node":"beta"');
    writeFileSync(alphaFile, alphaLines.join('\n'));
    const m = sluice(dir, ['audit', 'verify', moved]);
    assert.equal(m.code, 1, m.stdout);
    assert.match(m.stdout, /^node alpha: .*altered/m);
  });

  it('a rotated file missing from one node\'s logs is a gap in that node\'s chain only', () => {
    const gap = join(dir, 'gap');
    cpSync(collected, gap, { recursive: true });
    const files = logFiles(join(gap, 'alpha', 'audit.log'));
    assert.ok(files.length >= 3, files.join(' '));
    // Not the oldest: a chain may begin anywhere (retention deletes the oldest files).
    const [removed, next] = files.slice(-2) as [string, string];
    rmSync(removed);
    const r = sluice(dir, ['audit', 'verify', gap]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, new RegExp(`^node alpha: ${next}:1: sequence jumps`, 'm'));
    assert.match(r.stdout, /^node beta: ok: \d+ lines, chain intact$/m);
  });

  it('the same node id in two logs fails: one id, one writer', () => {
    const twice = join(dir, 'twice');
    cpSync(join(collected, 'alpha'), join(twice, 'one'), { recursive: true });
    cpSync(join(collected, 'alpha'), join(twice, 'two'), { recursive: true });
    const r = sluice(dir, ['audit', 'verify', twice]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, /^node alpha: 2 separate chains \(.*one\/audit\.log, .*two\/audit\.log\)/m);
  });

  it('a log from before node ids verifies, alone and continued by an upgraded server in the same file', async () => {
    const old = oldFormat([
      { ...actor, event: 'login', method: 'password' },
      { ...actor, event: 'upload', path: '/old.txt', bytes: 3, size: 3, offset: 0, resumed: false, result: 'ok', sha256: null },
    ]);
    const alone = join(dir, 'old', 'audit.log');
    mkdirSync(join(alone, '..'));
    writeFileSync(alone, old);
    const r = sluice(dir, ['audit', 'verify', alone]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /old\/audit\.log \(no node id\): ok: 3 lines, chain intact/);

    // The upgrade: the server starts on the old file, continues its chain and names itself from then on.
    const data = join(alpha.dir, 'data');
    await alpha.restart(() => {
      for (const f of readdirSync(data).filter((n) => n.startsWith('audit.log'))) rmSync(join(data, f));
      writeFileSync(join(data, 'audit.log'), old);
    });
    await upload(alpha, '/new.txt');
    await alpha.terminate();
    const files = logFiles(join(data, 'audit.log'));
    const records = files.flatMap(recordsOf);
    assert.deepEqual(records.map((x) => x.seq), [...records.keys()], 'one chain');
    assert.deepEqual(records.slice(0, 3).map((x) => x.node), [undefined, undefined, undefined]);
    assert.deepEqual([...new Set(records.slice(3).map((x) => x.node))], ['alpha']);
    const v = sluice(dir, ['audit', 'verify', ...files, join(collected, 'beta')]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, new RegExp(`^node alpha: ok: ${records.length} lines, chain intact$`, 'm'));

    // Queried with beta's, the old records count as alpha's: they sort among equal times by that node.
    const q = sluice(dir, ['audit', 'query', '--json', ...files.flatMap((f) => ['--file', f]), '--file', join(collected, 'beta'), '--path', '/*.txt', '--result', 'ok']);
    assert.equal(q.code, 0, q.stderr);
    assert.deepEqual(jsonLines(q.stdout).map((x) => x.path), ['/old.txt', '/b1.txt', '/b2.txt', '/new.txt']);
  });
});
