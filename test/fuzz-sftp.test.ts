import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type ssh2 from 'ssh2';
import { FUZZ_SERVER_ENV, assertBounded, fuzzRuns, fuzzSeed, fuzzYaml, usageOf, type Usage } from './helpers/fuzz.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/**
 * Random SFTP packets against the real server, on a logged-in channel after
 * INIT, written raw to the `sftp` subsystem (ssh2's `subsys`). Oracle: every well-framed
 * request gets exactly one reply carrying its id, in time; packets with
 * wrong lengths may end their channel but nothing else; the server neither
 * dies nor leaks, and a normal client still works afterwards.
 */

const USER = 'fuzz';
const PASSWORD = 'fuzz password';
const REPLY_TYPES = new Set([101, 102, 103, 104, 105, 201]);
const EXTENSIONS = [
  'posix-rename@openssh.com', 'statvfs@openssh.com', 'fstatvfs@openssh.com', 'hardlink@openssh.com', 'fsync@openssh.com',
  'limits@openssh.com', 'expand-path@openssh.com', 'lsetstat@openssh.com', 'copy-data', 'home-directory', 'users-groups-by-id@openssh.com',
];

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const str = (s: Buffer | string) => {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  return Buffer.concat([u32(b.length), b]);
};
const packet = (type: number, id: number, body: Buffer) => Buffer.concat([u32(body.length + 5), Buffer.from([type]), u32(id), body]);

/** Raw SFTP on a subsystem channel: send packets, await each reply by request id. */
class RawSftp {
  private buf = Buffer.alloc(0);
  private readonly waiting = new Map<number, (reply: { type: number; body: Buffer } | null) => void>();
  private readonly answered = new Set<number>();
  private nextId = 1;
  closed = false;
  /** Replies that answered no request, or one twice: checked by the property, not thrown from an event. */
  readonly strays: string[] = [];
  private version: ((b: Buffer) => void) | null = null;

  private constructor(
    readonly channel: ssh2.ClientChannel,
    private readonly strict: boolean,
  ) {
    channel.on('data', (d: Buffer) => this.feed(d));
    channel.on('close', () => {
      this.closed = true;
      for (const w of this.waiting.values()) w(null);
      this.waiting.clear();
    });
    channel.on('error', () => undefined);
  }

  /** `strict`: every reply must answer a request sent (off where the fuzzer lies about lengths). */
  static async open(client: ssh2.Client, strict = true): Promise<RawSftp> {
    const channel = await call<ssh2.ClientChannel>((cb) => client.subsys('sftp', cb));
    const s = new RawSftp(channel, strict);
    const version = new Promise<Buffer>((r) => (s.version = r));
    channel.write(Buffer.concat([u32(5), Buffer.from([1]), u32(3)]));
    const v = await version;
    assert.equal(v[0], 2, 'VERSION');
    return s;
  }

  private feed(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 4 && this.buf.length >= 4 + this.buf.readUInt32BE(0)) {
      const p = this.buf.subarray(4, 4 + this.buf.readUInt32BE(0));
      this.buf = this.buf.subarray(4 + p.length);
      if (this.version) {
        this.version(p);
        this.version = null;
        continue;
      }
      const id = p.readUInt32BE(1);
      const w = this.waiting.get(id);
      if (!w || this.answered.has(id)) {
        if (this.strict) this.strays.push(`reply to request ${id}, which was ${this.answered.has(id) ? 'answered already' : 'never sent'}`);
        continue;
      }
      this.waiting.delete(id);
      this.answered.add(id);
      w({ type: p[0] as number, body: p.subarray(5) });
    }
  }

  id(): number {
    return this.nextId++;
  }

  /** The reply to request `id`; null when the channel closed first. */
  reply(id: number, timeoutMs = 30_000): Promise<{ type: number; body: Buffer } | null> {
    return new Promise((resolve, reject) => {
      if (this.closed) return resolve(null);
      const t = setTimeout(() => reject(new Error(`no reply to request ${id} in ${timeoutMs} ms`)), timeoutMs);
      this.waiting.set(id, (r) => {
        clearTimeout(t);
        resolve(r);
      });
    });
  }

  write(b: Buffer): void {
    this.channel.write(b);
  }

  async request(type: number, body: Buffer): Promise<{ type: number; body: Buffer }> {
    const id = this.id();
    const reply = this.reply(id);
    this.write(packet(type, id, body));
    const r = await reply;
    assert.ok(r, `channel closed before the reply to type ${type}`);
    return r;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const closed = new Promise((r) => this.channel.once('close', r));
    this.channel.close();
    await closed;
  }
}

/** Handles the fuzzer may use: real ones it opened (a file for writing, a directory) and whatever OPEN replies gave it. */
const handles: Buffer[] = [];

const hostilePath = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.constantFrom(
    '', '.', '..', '/', '/..', '../../../../etc/passwd', '/proc/self/environ', 'a/../../b', '\\..\\..', 'x\u0000y', 'f.txt', 'dir', '/dir/f.txt',
    '~', '~root', '//', '/./././', 'a'.repeat(300), `${'d/'.repeat(200)}x`, '\u202e', '.sluice-upload-x', 'link',
  ),
);
const field = {
  path: hostilePath.map((p) => str(p)),
  handle: fc.oneof(
    fc.nat().map((i) => str(handles.length > 0 ? (handles[i % handles.length] as Buffer) : Buffer.alloc(0))),
    fc.uint8Array({ maxLength: 300 }).map((b) => str(Buffer.from(b))),
  ),
  u32: fc.oneof(fc.constantFrom(0, 1, 2, 0x3f, 0x7fffffff, 0xffffffff, 0x80000000, 255 * 1024, 256 * 1024), fc.nat()).map(u32),
  u64: fc.oneof(fc.constant([0, 0]), fc.tuple(fc.constantFrom(0, 1, 0x7fffffff, 0xffffffff), fc.nat()), fc.tuple(fc.constant(0), fc.nat({ max: 1 << 20 }))).map(
    ([hi, lo]) => Buffer.concat([u32(hi), u32(lo)]),
  ),
  data: fc.uint8Array({ maxLength: 2048 }).map((b) => str(Buffer.from(b))),
  attrs: fc
    .tuple(fc.oneof(fc.nat({ max: 0x0f }), fc.constant(0x8000000f), fc.nat()), fc.array(fc.nat(), { maxLength: 7 }))
    .map(([flags, words]) => Buffer.concat([u32(flags), ...words.map(u32)])),
  raw: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
};
type Field = keyof typeof field;

/** Each request's fields as the draft lays them out; the fuzzer mostly follows them, sometimes not. */
const LAYOUT: Record<number, Field[]> = {
  3: ['path', 'u32', 'attrs'], 4: ['handle'], 5: ['handle', 'u64', 'u32'], 6: ['handle', 'u64', 'data'], 7: ['path'], 8: ['handle'],
  9: ['path', 'attrs'], 10: ['handle', 'attrs'], 11: ['path'], 12: ['handle'], 13: ['path'], 14: ['path', 'attrs'], 15: ['path'],
  16: ['path'], 17: ['path'], 18: ['path', 'path'], 19: ['path'], 20: ['path', 'path'],
};

const fieldsOf = (layout: Field[]) => fc.tuple(...layout.map((f) => field[f])).map((parts) => Buffer.concat(parts));
const anyFields = fc.array(fc.constantFrom(...(Object.keys(field) as Field[])), { maxLength: 5 }).chain(fieldsOf);

const request = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...Object.keys(LAYOUT).map(Number)).chain((type) => fieldsOf(LAYOUT[type] as Field[]).map((body) => ({ type, body }))) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.oneof(fc.constantFrom(...EXTENSIONS), fc.string({ maxLength: 20 })), anyFields)
      .map(([name, rest]) => ({ type: 200, body: Buffer.concat([str(name), rest]) })),
  },
  // Any type but INIT (which ends the session, as OpenSSH's server does), with any fields.
  { weight: 2, arbitrary: fc.tuple(fc.integer({ min: 2, max: 255 }), anyFields).map(([type, body]) => ({ type, body })) },
);

/** Well-framed, with a body sometimes cut short or with bytes to spare: every one is due one reply. */
const framedRequest = fc
  .tuple(request, fc.option(fc.oneof(fc.nat().map((n) => ({ cut: n })), field.raw.map((extra) => ({ extra }))), { freq: 4 }))
  .map(([{ type, body }, change]) => {
    if (change && 'cut' in change) return { type, body: body.subarray(0, change.cut % (body.length + 1)) };
    if (change && 'extra' in change) return { type, body: Buffer.concat([body, change.extra]) };
    return { type, body };
  });

/** Framing itself hostile: lengths that lie (shorter, longer, 0, over the 256 KiB limit), truncated headers. */
const badFrame = fc.oneof(
  fc.tuple(request, fc.integer({ min: -5, max: 5 })).map(([{ type, body }, delta]) => {
    const p = packet(type, 1, body);
    p.writeUInt32BE(Math.max(0, body.length + 5 + delta), 0);
    return p;
  }),
  fc.constantFrom(0, 1, 2, 3, 4, 256 * 1024 + 1, 0xffffffff).map((len) => Buffer.concat([u32(len), Buffer.from([3, 0, 0, 0, 9])])),
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => Buffer.from(b)),
);

describe('SFTP fuzz: random packets on a logged-in channel of the running server', () => {
  let srv: TestServer;
  let client: ssh2.Client;
  let main: RawSftp;
  let baseline: Usage;
  const runs = fuzzRuns(150);

  before(async () => {
    srv = await TestServer.start({ env: FUZZ_SERVER_ENV, yaml: fuzzYaml(''), users: [{ name: USER, password: PASSWORD }] });
    await normalClient(srv);
    baseline = usageOf(srv.pid as number);
    client = await sshConnect({ port: srv.sftpPort, username: USER, password: PASSWORD });
    main = await RawSftp.open(client);
    await main.request(14, Buffer.concat([str('dir'), u32(0)]));
    for (const [type, body] of [
      [3, Buffer.concat([str('f.txt'), u32(0x1a), u32(0)])],
      [3, Buffer.concat([str('r.txt'), u32(0x01 | 0x08), u32(0)])],
      [11, str('/')],
    ] as const) {
      const r = await main.request(type, body);
      if (r.type === 102) handles.push(r.body.subarray(4, 4 + r.body.readUInt32BE(0)));
    }
    assert.ok(handles.length >= 2, 'real handles to fuzz with');
  });
  after(async () => {
    await main?.close();
    client?.end();
    await srv.stop();
  });

  it(`well-framed requests, pipelined: each gets exactly one reply with its id (${runs} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(framedRequest, { minLength: 1, maxLength: 16 }), async (requests) => {
        assert.ok(!main.closed, 'the channel is still open');
        const ids = requests.map(() => main.id());
        const replies = ids.map((id) => main.reply(id));
        main.write(Buffer.concat(requests.map(({ type, body }, i) => packet(type, ids[i] as number, body))));
        for (const r of await Promise.all(replies)) {
          assert.ok(r, 'channel closed on a well-framed request');
          assert.ok(REPLY_TYPES.has(r.type), `reply type ${r.type}`);
          if (r.type === 102 && handles.length < 64 && r.body.length >= 4) handles.push(r.body.subarray(4, 4 + r.body.readUInt32BE(0)));
        }
        assert.deepEqual(main.strays, []);
        assert.ok(srv.alive, 'server still running');
      }),
      { numRuns: runs, seed: fuzzSeed(), endOnFailure: true },
    );
  });

  it(`lying lengths and garbage on a channel of its own: nothing else is affected (${Math.ceil(runs / 5)} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(badFrame, framedRequest.map(({ type, body }) => packet(type, 7, body))), { minLength: 1, maxLength: 6 }), async (frames) => {
        const victim = await RawSftp.open(client, false);
        victim.write(Buffer.concat(frames));
        // Whatever the server made of it, the other channel of the same login is served.
        const r = await main.request(16, str('.'));
        assert.equal(r.type, 104, 'REALPATH on the main channel');
        await victim.close();
        assert.ok(srv.alive, 'server still running');
      }),
      { numRuns: Math.ceil(runs / 5), seed: fuzzSeed(), endOnFailure: true },
    );
  });

  it('afterwards: a normal client still works, descriptors and memory are bounded', async () => {
    await main.close();
    client.end();
    assert.ok(srv.alive);
    await normalClient(srv);
    const now = await assertBounded(srv.pid as number, baseline);
    console.log(`# SFTP fuzz: RSS ${(baseline.rssBytes / 2 ** 20).toFixed(0)} -> ${(now.rssBytes / 2 ** 20).toFixed(0)} MiB, fds ${baseline.fds} -> ${now.fds}`);
  });
});

async function normalClient(srv: TestServer): Promise<void> {
  const c = await sshConnect({ port: srv.sftpPort, username: USER, password: PASSWORD });
  try {
    const sftp = await sftpOf(c);
    await call((cb) => sftp.writeFile('normal.txt', 'still serving', cb));
    assert.equal(String(await call<Buffer>((cb) => sftp.readFile('normal.txt', cb))), 'still serving');
  } finally {
    c.end();
  }
}
