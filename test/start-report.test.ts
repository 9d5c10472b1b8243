// At start the server logs its listeners and the fingerprints of its SSH host
// keys and TLS certificate in exactly the text the user's own tools print, so
// the two can be compared character for character.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type tls from 'node:tls';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { selfSignedCertificate } from '../src/certs/self-signed.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { waitFor } from './helpers/quota.js';
import { TestServer } from './helpers/server.js';

function tool(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `${command} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

const logLines = (srv: TestServer) =>
  srv.log.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);

for (const workers of ['1', '2']) {
  describe(`start report, workers: ${workers}`, () => {
    let srv: TestServer;
    /** The certificate the SIGHUP test installed, as openssl shows it. */
    let installed = '';
    before(async () => {
      srv = await TestServer.start({ env: { SLUICE_WORKERS: workers } });
    });
    after(() => srv.stop());

    it('lists every listener once, with protocol, address and port', () => {
      const listening = logLines(srv).filter((l) => typeof l.protocol === 'string' && l.port !== undefined);
      assert.deepEqual(
        listening.map(({ protocol, address, port, msg }) => ({ protocol, address, port, msg })),
        [
          { protocol: 'ftp', address: '127.0.0.1', port: srv.ftpPort, msg: `listening: ftp 127.0.0.1:${srv.ftpPort}` },
          { protocol: 'ftps', address: '127.0.0.1', port: srv.ftpsPort, msg: `listening: ftps 127.0.0.1:${srv.ftpsPort}` },
          { protocol: 'sftp', address: '127.0.0.1', port: srv.sftpPort, msg: `listening: sftp 127.0.0.1:${srv.sftpPort}` },
        ],
      );
    });

    it('shows the fingerprints as ssh-keygen -lf and openssl x509 -fingerprint -sha256 do, before the start line', () => {
      const certs = join(srv.dir, 'certs');
      const expected = [
        tool('ssh-keygen', ['-lf', join(certs, 'ssh_host_ed25519_key.pub')]),
        tool('ssh-keygen', ['-lf', join(certs, 'ssh_host_rsa_key.pub')]),
        tool('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', join(certs, 'tls-cert.pem')]),
      ];
      assert.match(expected[0]!, /^256 SHA256:\S+ .* \(ED25519\)$/);
      assert.match(expected[1]!, /^3072 SHA256:\S+ .* \(RSA\)$/);
      const lines = logLines(srv);
      assert.deepEqual(
        lines.filter((l) => l.fingerprint !== undefined).map((l) => l.fingerprint),
        expected,
      );
      const started = lines.findIndex((l) => l.msg === 'sluice started');
      assert.ok(lines.slice(started).every((l) => l.fingerprint === undefined), 'fingerprints come before the start line');
      assert.ok(srv.log.includes(`SSH host key ssh_host_ed25519_key: ${expected[0]}`));
      assert.ok(srv.log.includes(`TLS certificate tls-cert.pem: ${expected[2]}`));
    });

    it('a host key without its .pub file: the fingerprint ssh-keygen -lf shows for the private key', async () => {
      const certs = join(srv.dir, 'certs');
      await srv.restart(() => rmSync(join(certs, 'ssh_host_rsa_key.pub')));
      const expected = tool('ssh-keygen', ['-lf', join(certs, 'ssh_host_rsa_key')]);
      assert.match(expected, /^3072 SHA256:\S+ sluice@\S+ \(RSA\)$/);
      const shown = logLines(srv).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('SSH host key ssh_host_rsa_key: '));
      assert.equal(shown.at(-1)?.fingerprint, expected);
    });

    it('SIGHUP with a new certificate logs its fingerprint', async () => {
      const certs = join(srv.dir, 'certs');
      const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-subj', '/CN=reloaded.example', '-days', '2', '-keyout', join(certs, 'tls-key.pem'), '-out', join(certs, 'tls-cert.pem')]);
      assert.equal(gen.status, 0, String(gen.stderr));
      const now = tool('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', join(certs, 'tls-cert.pem')]);
      srv.signal('SIGHUP');
      const reloaded = () => logLines(srv).filter((l) => l.msg === `TLS certificate reloaded: ${now}`);
      await waitFor('the reload line', () => reloaded().length === Number(workers));
      assert.equal(reloaded()[0]?.fingerprint, now);
      // Two days left: a warning at the reload (it expires within 7).
      const ending = () => logLines(srv).filter((l) => l.level === 40 && /^TLS certificate tls-cert\.pem: certificate expires in [12]\.\d days .*renew it, then send SIGHUP$/.test(String(l.msg)));
      await waitFor('a warning per serving process', () => ending().length === Number(workers));
      installed = now;
    });

    it('SIGHUP with a file that holds no certificate keeps the old one', async () => {
      writeFileSync(join(srv.dir, 'certs', 'tls-cert.pem'), 'not a certificate\n');
      srv.signal('SIGHUP');
      const failed = () => srv.log.split('\n').filter((l) => l.includes('TLS certificate reload failed')).length;
      await waitFor('the refusal', () => failed() === Number(workers));
      assert.ok(srv.alive);
      const c = await RawFtp.connect(srv.ftpsPort, true);
      assert.equal((await c.read())?.code, 220);
      const served = (c.socket as tls.TLSSocket).getPeerX509Certificate()?.fingerprint256;
      c.close();
      assert.equal(`sha256 Fingerprint=${served}`, installed);
    });

    it('SIGHUP with a new certificate whose key was not copied in keeps the old pair', async () => {
      const certs = join(srv.dir, 'certs');
      const elsewhere = join(srv.dir, 'next');
      mkdirSync(elsewhere, { recursive: true });
      const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-subj', '/CN=next.example', '-days', '2', '-keyout', join(elsewhere, 'tls-key.pem'), '-out', join(elsewhere, 'tls-cert.pem')]);
      assert.equal(gen.status, 0, String(gen.stderr));
      // The operator's half-done renewal: the certificate is new, the key still the one installed.
      copyFileSync(join(elsewhere, 'tls-cert.pem'), join(certs, 'tls-cert.pem'));
      const failed = () => srv.log.split('\n').filter((l) => l.includes('TLS certificate reload failed') && l.includes('cannot be used')).length;
      srv.signal('SIGHUP');
      await waitFor('the refusal', () => failed() === Number(workers));
      const c = await RawFtp.connect(srv.ftpsPort, true);
      assert.equal((await c.read())?.code, 220, 'TLS handshakes still succeed');
      const served = (c.socket as tls.TLSSocket).getPeerX509Certificate()?.fingerprint256;
      c.close();
      assert.equal(`sha256 Fingerprint=${served}`, installed);
    });

    it('a start with a certificate cut short or a key of another certificate fails, naming the files', async () => {
      const certs = join(srv.dir, 'certs');
      const good = readFileSync(join(srv.dir, 'next', 'tls-cert.pem'), 'utf8');
      // An RSA certificate beside the installed ECDSA key: OpenSSL compares a key only with a certificate of its
      // type, so this one started and failed every handshake (found by a review).
      const rsaDir = join(srv.dir, 'next-rsa');
      mkdirSync(rsaDir, { recursive: true });
      const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=rsa.example', '-days', '2',
        '-keyout', join(rsaDir, 'tls-key.pem'), '-out', join(rsaDir, 'tls-cert.pem')]);
      assert.equal(gen.status, 0, String(gen.stderr));
      const rsa = readFileSync(join(rsaDir, 'tls-cert.pem'), 'utf8');
      // A FIFO in the certificate's place held the start in its read for ever (and each /readyz took a thread).
      for (const [what, cert] of [['a FIFO', null], ['cut short', good.slice(0, 200)], ['key of another', good], ['key of another type', rsa]] as const) {
        const put = () => {
          rmSync(join(certs, 'tls-cert.pem'));
          if (cert !== null) writeFileSync(join(certs, 'tls-cert.pem'), cert);
          else assert.equal(spawnSync('mkfifo', [join(certs, 'tls-cert.pem')]).status, 0);
        };
        await srv.restart(put).then(
          () => assert.fail(`${what}: the server started`),
          (err: Error) => assert.match(err.message, /^serve exited 1:/, what),
        );
        await srv.logs(/TLS certificate tls-cert\.pem with key tls-key\.pem \(in .*\) cannot be used: .*(PEM|the key is not the certificate's|tls-cert\.pem is a FIFO, not a regular file)/);
        // One line in the operator's words, as a port in use is: not an error object with its stack.
        const refusals = srv.log.split('\n').filter((l) => l.includes('cannot be used'));
        assert.ok(refusals.length > 0 && refusals.every((l) => !l.includes('"stack"')), refusals.join('\n'));
      }
    });

    it('a start with one half of the TLS pair fails naming the other, and leaves the half there as it was', async () => {
      // Found by a new user's try: the half left was overwritten by a new self-signed pair.
      const certs = join(srv.dir, 'certs');
      const kept = join(srv.dir, 'kept');
      mkdirSync(kept, { recursive: true });
      for (const [there, missing] of [['tls-cert.pem', 'tls-key.pem'], ['tls-key.pem', 'tls-cert.pem']] as const) {
        const before = readFileSync(join(certs, there));
        await srv.restart(() => renameSync(join(certs, missing), join(kept, missing))).then(
          () => assert.fail(`without ${missing}: the server started`),
          (err: Error) => assert.match(err.message, new RegExp(`^serve exited 1:[^]*${there} is in .* without ${missing}: put ${missing} beside it`)),
        );
        assert.deepEqual(readFileSync(join(certs, there)), before, `${there} unchanged`);
        assert.equal(existsSync(join(certs, missing)), false, `no new ${missing}`);
        renameSync(join(kept, missing), join(certs, missing));
      }
    });

    it('a start with an SSH host key cut short fails in one line naming the file, and leaves it as it was', async () => {
      const certs = join(srv.dir, 'certs');
      const path = join(certs, 'ssh_host_ed25519_key');
      const whole = readFileSync(path);
      const cut = whole.subarray(0, 100);
      // The cases before left a TLS pair that does not start: without either half, a new pair is made.
      rmSync(join(certs, 'tls-cert.pem'));
      rmSync(join(certs, 'tls-key.pem'));
      await srv.restart(() => writeFileSync(path, cut)).then(
        () => assert.fail('the server started'),
        (err: Error) => assert.match(err.message, /^serve exited 1:/),
      );
      await srv.logs(/SSH host key ssh_host_ed25519_key \(in .*certs\) cannot be used: /);
      const refusals = srv.log.split('\n').filter((l) => l.includes('cannot be used'));
      assert.ok(refusals.every((l) => !l.includes('"stack"')), refusals.join('\n'));
      assert.deepEqual(readFileSync(path), cut, 'not replaced by a new key');
      await srv.restart(() => writeFileSync(path, whole));
    });

    it('a host key of another type than its file is for fails the start naming both', async () => {
      // Found by a review: the Ed25519 key copied over the RSA one served two Ed25519 keys and no RSA key.
      const certs = join(srv.dir, 'certs');
      const path = join(certs, 'ssh_host_rsa_key');
      const rsa = readFileSync(path);
      await srv.restart(() => copyFileSync(join(certs, 'ssh_host_ed25519_key'), path)).then(
        () => assert.fail('the server started'),
        (err: Error) => assert.match(err.message, /^serve exited 1:/),
      );
      await srv.logs(/SSH host key ssh_host_rsa_key \(in .*certs\) cannot be used: it holds an ssh-ed25519 key, not ssh-rsa/);
      await srv.restart(() => writeFileSync(path, rsa));
    });

    it('a host key that is a link to nothing fails the start naming it, and its .pub stays', async () => {
      // Found by a review: taken as missing, a new key was written through the link (EEXIST) after the .pub was deleted.
      const certs = join(srv.dir, 'certs');
      const path = join(certs, 'ssh_host_ed25519_key');
      const moved = join(srv.dir, 'ed25519-moved');
      const pub = readFileSync(`${path}.pub`);
      await srv.restart(() => {
        renameSync(path, moved);
        symlinkSync(join(srv.dir, 'nowhere', 'key'), path);
      }).then(
        () => assert.fail('the server started'),
        (err: Error) => assert.match(err.message, /^serve exited 1:[^]*ssh_host_ed25519_key \(in .*certs\) cannot be read: ENOENT/),
      );
      assert.deepEqual(readFileSync(`${path}.pub`), pub, 'the .pub beside it is kept');
      await srv.restart(() => {
        rmSync(path);
        renameSync(moved, path);
      });
    });

    it('a start on an expired certificate says so in a warning', async () => {
      // Found by a review: /readyz said it, to whoever asked; the log said nothing, and FTPS clients refused every connection.
      const certs = join(srv.dir, 'certs');
      const expired = await selfSignedCertificate(['localhost'], ['127.0.0.1'], new Date(Date.now() - 900 * 86_400_000));
      await srv.restart(() => {
        writeFileSync(join(certs, 'tls-cert.pem'), expired.cert);
        writeFileSync(join(certs, 'tls-key.pem'), expired.key);
      });
      const warned = () => logLines(srv).filter((l) => l.level === 40 && /^TLS certificate tls-cert\.pem: certificate expired at \d{4}-.*: FTPS clients that check it refuse it/.test(String(l.msg)));
      await waitFor('the warning', () => warned().length > 0);
    });
  });
}
