import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { listingLines, RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/**
 * ftp.tlsMaxVersion: the newest TLS version the control and data
 * connections offer. TLSv1.2 serves clients that resume a TLS 1.3 session
 * only once (README, FTP and FTPS: PHP's ftp extension in passive mode, Perl's
 * Net::FTP, commons-net's reuse subclass), as vsftpd's ssl_tlsv1_3=NO does.
 */
describe('ftp.tlsMaxVersion', () => {
  let capped: TestServer;
  let plain: TestServer;
  before(async () => {
    const users = [{ name: 'tess', password: 'tess password' }];
    [capped, plain] = await Promise.all([TestServer.start({ users, env: { SLUICE_FTP_TLS_MAX_VERSION: 'TLSv1.2' } }), TestServer.start({ users })]);
  });
  after(async () => {
    await Promise.all([capped?.stop(), plain?.stop()]);
  });

  /** The TLS version of the control connection and of a listing's data connection, for a client offering up to TLS 1.3. */
  async function versions(srv: TestServer): Promise<[string | null, string | null]> {
    const c = await RawFtp.secureLogin(srv.ftpPort, 'tess', 'tess password');
    try {
      const control = (c.socket as tls.TLSSocket).getProtocol();
      let data: string | null = null;
      const secureData = c.secureData.bind(c);
      c.secureData = (raw, options) => {
        const s = secureData(raw, options);
        s.once('secureConnect', () => (data = s.getProtocol()));
        return s;
      };
      await listingLines(c, 'LIST', true);
      return [control, data];
    } finally {
      c.close();
    }
  }

  it('TLSv1.2: the control and data connections speak TLS 1.2 with a client that offers 1.3; a client that wants 1.3 only is refused', async () => {
    assert.deepEqual(await versions(capped), ['TLSv1.2', 'TLSv1.2']);
    const c = await RawFtp.connect(capped.ftpPort);
    try {
      await c.read();
      assert.equal((await c.cmd('AUTH TLS')).code, 234);
      const refused = await new Promise<string>((resolve) => {
        const s = tls.connect({ socket: c.socket, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
        s.once('secureConnect', () => resolve(`connected with ${String(s.getProtocol())}`));
        s.once('error', (err: NodeJS.ErrnoException) => resolve(String(err.code)));
      });
      assert.equal(refused, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    } finally {
      c.close();
    }
  });

  it('by default, TLS 1.3', async () => {
    assert.deepEqual(await versions(plain), ['TLSv1.3', 'TLSv1.3']);
  });
});
