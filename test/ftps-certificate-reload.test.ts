import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import tls from 'node:tls';
import type { TlsMaterial } from '../src/certs/tls-material.js';
import { TlsEngine, type TlsBinding } from '../src/ftp/tls.js';

/**
 * A certificate reload (SIGHUP) between a control connection's handshake and
 * one of its data connections' must not hand that data connection another
 * certificate: established TLS keeps its own (TlsEngine.reload). Where reuse
 * is not required a data connection may make a full handshake, and a client
 * that compares the data connection's certificate with the control
 * connection's (FileZilla) refuses a different one. Driven on the engine
 * itself: which context a data connection is served from (with or without
 * session tickets, see DataTlsUse) is decided by the transfer, and each must
 * show the control connection's certificate.
 */
const dir = mkdtempSync(join(tmpdir(), 'sluice-cert-reload-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function certificate(name: string): TlsMaterial {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-days', '2', '-keyout', key, '-out', cert]);
  assert.equal(gen.status, 0, String(gen.stderr));
  return { key: readFileSync(key), cert: readFileSync(cert) };
}

/** A loopback TCP connection: the server's end and the client's. */
async function connection(): Promise<{ server: net.Socket; client: net.Socket }> {
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
  const client = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
  const server = await accepted;
  listener.close();
  return { server, client };
}

/** The subject of the certificate a full handshake (no session offered) is shown by `serve`. */
async function shownCertificate(serve: (socket: net.Socket) => Promise<tls.TLSSocket>, version: tls.SecureVersion): Promise<string | undefined> {
  const { server, client } = await connection();
  const secure = tls.connect({ socket: client, rejectUnauthorized: false, minVersion: version, maxVersion: version });
  secure.on('error', () => undefined);
  const connected = new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', resolve);
    secure.once('close', () => reject(new Error('closed before the handshake')));
  });
  const served = await serve(server);
  await connected;
  const subject = secure.getPeerX509Certificate()?.subject;
  secure.destroy();
  served.destroy();
  return subject;
}

describe('FTPS certificate reload between control and data connection', () => {
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    for (const tickets of [true, false]) {
      it(`${version}, data connection ${tickets ? 'with' : 'without'} session tickets, reuse not required: the control connection's certificate`, async () => {
        const engine = new TlsEngine(certificate('before'), 'TLSv1.3');
        const binding: TlsBinding = engine.bind();
        assert.equal(await shownCertificate((s) => binding.accept(s, 5000), version), 'CN=before');
        engine.reload(certificate('after'));
        const data = await shownCertificate((s) => binding.acceptData(s, 5000, false, { needCloseNotify: tickets === false, tickets }), version);
        assert.equal(data, 'CN=before');
        // A control connection made after the reload gets the new one.
        assert.equal(await shownCertificate((s) => engine.bind().accept(s, 5000), version), 'CN=after');
      });
    }
  }
});
