import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type ssh2 from 'ssh2';
import { Session } from '../src/session/session.js';
import { FXP, Writer } from '../src/sftp/codec.js';
import { sftpWithEveryRight } from './helpers/in-process.js';
import { sftpPackets, sshConnect } from './helpers/ssh.js';
import { openWide, stallKeyExchange } from './helpers/stall.js';

/** sftp.maxQueuedBytes by default. */
const BUDGET = 8 * 1024 * 1024;
/**
 * What the server was measured to hold for each STAT reply ssh2 queued
 * during a key exchange, on Node 20: 60,000 grew it by 18 MiB (heap and
 * array buffers, after a full collection).
 */
const HELD_PER_REPLY = 300;

/*
 * While a key exchange runs, ssh2 queues every other packet it is to send;
 * the budget counted their bytes, about 60 for a STAT's reply. A client that
 * opened its window wide, sent small requests and never finished the
 * exchange it started had the server queue them all.
 */
describe('replies ssh2 holds back during a key exchange', () => {
  it('fill the budget by what holding them costs, not by their bytes alone', async (t) => {
    const { srv, close } = await sftpWithEveryRight('rekeyer');
    // The STATs the server started and finished (the server runs in this process).
    let begun = 0;
    let ended = 0;
    const stat = Object.getOwnPropertyDescriptor(Session.prototype, 'stat')?.value as Session['stat'];
    Session.prototype.stat = async function (this: Session, ...args) {
      begun++;
      try {
        return await stat.apply(this, args);
      } finally {
        ended++;
      }
    };
    try {
      const conn = await sshConnect({ port: srv.sftpPort, username: 'rekeyer', password: 'rekeyer password' });
      conn.on('error', () => undefined);
      const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) => conn.subsys('sftp', (err, c) => (err ? reject(err) : resolve(c))));
      const next = sftpPackets(ch);
      ch.write(new Writer(FXP.INIT).uint32(3).finish());
      assert.equal((await next())[0], FXP.VERSION);
      openWide(ch, conn);
      // As many STATs as the server's window lets through at once, then an exchange begun and never finished.
      const window = (ch as unknown as { outgoing: { window: number } }).outgoing.window;
      const count = Math.floor(window / 14);
      ch.write(Buffer.concat(Array.from({ length: count }, (_, i) => new Writer(FXP.STAT, 10 + i).string('/').finish())));
      stallKeyExchange(conn);
      // Until every STAT is answered, or none has been started for a second with none under way.
      for (let quiet = 0, last = -1; begun < count && quiet < 20; ) {
        await sleep(50);
        quiet = begun === last && begun === ended ? quiet + 1 : 0;
        last = begun;
      }
      t.diagnostic(`${begun} of ${count} STATs answered`);
      assert.ok(count > BUDGET / HELD_PER_REPLY, `only ${count} STATs could be sent`);
      assert.ok(begun * HELD_PER_REPLY <= BUDGET * 1.1, `${begun} STAT replies queued, about ${((begun * HELD_PER_REPLY) / 1048576).toFixed(1)} MiB for a budget of 8 MiB`);
      (conn as unknown as { _sock: { destroy(): void } })._sock.destroy();
    } finally {
      Session.prototype.stat = stat;
      await close();
    }
  });
});
