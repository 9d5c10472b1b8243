import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jsonLinesIn, netnsMissing, netnsRunner } from './helpers/netns.js';
import { TestServer } from './helpers/server.js';

/*
 * EPRT names the client's own address for the server to connect back to,
 * and any other address is refused (no FTP bounce). Found by a review: the
 * two were compared as text, so a client that spelt its IPv6 address another
 * way than the server reads it (case, zeros written out) was refused. The
 * server and the client are in a network namespace of the test's own
 * (test/helpers/netns.ts), with IPv6 addresses on its lo.
 */
const CLIENT = `
import ftplib, json, socket, sys
host, port, spelt = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for spelling in spelt:
    f = ftplib.FTP(timeout=20, source_address=('2001:db8::2', 0))
    f.connect(host, port)
    f.login('ann', 'ann password')
    listener = socket.create_server(('2001:db8::2', 0), family=socket.AF_INET6)
    try:
        reply = f.sendcmd('EPRT |2|%s|%d|' % (spelling, listener.getsockname()[1]))
    except ftplib.error_perm as refused:
        reply = str(refused)
    listing = None
    if reply.startswith('200'):
        f.sendcmd('TYPE A')
        f.putcmd('LIST')
        f.getresp()
        listener.settimeout(20)
        conn, _ = listener.accept()
        listing = conn.makefile('rb').read().decode()
        conn.close()
        f.voidresp()
    listener.close()
    f.quit()
    print(json.dumps({'spelling': spelling, 'reply': reply[:3], 'listing': listing}), flush=True)
`;

describe('EPRT with the client\'s own IPv6 address, however written', () => {
  let srv: TestServer | undefined;
  let missing: string | null = null;
  before(async () => {
    missing = netnsMissing();
    if (missing) return;
    srv = await TestServer.start({
      yaml: 'ftp:\n  tls: optional\n',
      users: [{ name: 'ann', password: 'ann password' }],
      env: { SLUICE_BIND: '2001:db8::1' },
      runner: netnsRunner(['2001:db8::1/64', '2001:db8::2/64', '2001:db8::3/64']),
    });
  });
  after(async () => {
    await srv?.stop();
  });

  it('is taken and connected back to; another address is refused', { timeout: 60_000 }, async (t) => {
    const pid = srv?.pid;
    if (!srv || pid === undefined) return t.skip(missing ?? 'no server');
    const spellings = ['2001:db8::2', '2001:DB8:0:0:0:0:0:2', '2001:0db8::0002', '2001:db8::3'];
    const lines = await jsonLinesIn(pid, 'python3', ['-c', CLIENT, '2001:db8::1', String(srv.ftpPort), ...spellings]).done;
    assert.deepEqual(
      lines.map((l) => [l.spelling, l.reply, typeof l.listing]),
      [
        ['2001:db8::2', '200', 'string'],
        ['2001:DB8:0:0:0:0:0:2', '200', 'string'],
        ['2001:0db8::0002', '200', 'string'],
        ['2001:db8::3', '500', 'object'],
      ],
    );
  });
});
