import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SluiceError } from '../src/session/errors.js';
import { World, collect, writeFile } from './helpers/world.js';

const overQuota = (e: unknown) => e instanceof SluiceError && e.kind === 'quota-exceeded';

describe('quotas and uploads', () => {
  let world: World;
  before(async () => {
    world = await World.open();
  });
  after(() => world.close());

  it('refuses an upload that would pass the byte quota, during the write, and leaves no partial file', async () => {
    await world.addUser('q1', { quotaBytes: 1000 });
    const s = await world.session('q1');
    await writeFile(s, 'a.bin', Buffer.alloc(600));
    const up = await s.openWrite('b.bin');
    await up.write(Buffer.alloc(300));
    await assert.rejects(up.write(Buffer.alloc(300)), overQuota);
    await up.abort('quota', 'failed');
    assert.ok(!existsSync(join(world.home('q1'), 'b.bin')));
    assert.deepEqual(readdirSync(world.home('q1')), ['a.bin'], 'no temporary file left');
    assert.deepEqual(await world.services.users.usage((await world.services.users.get('q1'))!.id), { bytes: 600, files: 1 });
  });

  it('refuses before the write once the quota is used up', async () => {
    await world.addUser('q2', { quotaBytes: 10 });
    const s = await world.session('q2');
    await writeFile(s, 'full.bin', Buffer.alloc(10));
    await assert.rejects(s.openWrite('more.bin'), overQuota);
  });

  it('counts files against the file quota, and frees them on delete', async () => {
    await world.addUser('q3', { quotaFiles: 2 });
    const s = await world.session('q3');
    await writeFile(s, '1', 'x');
    await writeFile(s, '2', 'x');
    await assert.rejects(writeFile(s, '3', 'x'), overQuota);
    await writeFile(s, '2', 'overwriting an existing file is not a new file');
    await s.remove('1');
    await writeFile(s, '3', 'x');
  });

  it('sums concurrent uploads of the same user across sessions', async () => {
    await world.addUser('q4', { quotaBytes: 1000 });
    const a = await world.session('q4');
    const b = await world.session('q4');
    const ua = await a.openWrite('a');
    const ub = await b.openWrite('b');
    await ua.write(Buffer.alloc(600));
    await assert.rejects(ub.write(Buffer.alloc(600)), overQuota);
    await ua.close();
    await ub.abort('quota', 'failed');
  });

  it('an overwrite near the quota is credited with the size it replaces', async () => {
    await world.addUser('q5', { quotaBytes: 1000 });
    const s = await world.session('q5');
    await writeFile(s, 'f', Buffer.alloc(900));
    await writeFile(s, 'f', Buffer.alloc(950));
    assert.equal((await s.stat('f')).size, 950);
  });

  it('an overwrite whose target gained a hard link while it ran is refused at the final rename; the old file stays', async () => {
    await world.addUser('q6', { quotaBytes: 1000, permissions: ['list', 'download', 'upload', 'overwrite', 'delete', 'symlink'] });
    const s = await world.session('q6');
    await writeFile(s, 'f', Buffer.alloc(900, 1));
    const up = await s.openWrite('f');
    await up.write(Buffer.alloc(950, 2)); // fits only by counting on the 900 bytes it replaces
    await s.hardlink('f', 'h'); // now replacing f frees nothing
    await assert.rejects(up.close(), overQuota);
    assert.deepEqual(readFileSync(join(world.home('q6'), 'f')), Buffer.alloc(900, 1));
    assert.deepEqual(readdirSync(world.home('q6')).sort(), ['f', 'h']);
    assert.deepEqual(await world.services.users.usage((await world.services.users.get('q6'))!.id), { bytes: 900, files: 2 });
    assert.equal((await world.auditLines()).findLast((l) => l.event === 'upload')?.result, 'failed');
  });

  it('atomic upload: an aborted replacement leaves the old file whole', async () => {
    await world.addUser('at');
    const s = await world.session('at');
    await writeFile(s, 'doc.txt', 'good version');
    const up = await s.openWrite('doc.txt');
    await up.write(Buffer.from('half of a new ver'));
    // While the upload runs, the old file is still the one seen, and the temp file is hidden.
    assert.equal(readFileSync(join(world.home('at'), 'doc.txt'), 'utf8'), 'good version');
    assert.deepEqual((await collect(s.list('/'))).map((f) => f.name), ['doc.txt']);
    await up.abort('connection lost');
    assert.equal(readFileSync(join(world.home('at'), 'doc.txt'), 'utf8'), 'good version');
    assert.deepEqual(readdirSync(world.home('at')), ['doc.txt']);
  });

  it('atomic upload: a completed replacement swaps in whole', async () => {
    const s = await world.session('at');
    await writeFile(s, 'doc.txt', 'new version');
    assert.equal(readFileSync(join(world.home('at'), 'doc.txt'), 'utf8'), 'new version');
  });

  it('resume: write at an offset and append', async () => {
    const s = await world.session('at');
    await writeFile(s, 'r.txt', 'hello');
    await writeFile(s, 'r.txt', ' world', { offset: 5 });
    await writeFile(s, 'r.txt', '!', { append: true });
    assert.equal(readFileSync(join(world.home('at'), 'r.txt'), 'utf8'), 'hello world!');
    await assert.rejects(writeFile(s, 'r.txt', 'x', { offset: 99 }), (e: unknown) => e instanceof SluiceError);
  });

  it('closing a session aborts its open uploads and records them', async () => {
    const s = await world.session('at');
    const up = await s.openWrite('unfinished.txt');
    await up.write(Buffer.from('abc'));
    await s.close();
    const lines = await world.auditLines();
    const rec = lines.find((l) => l.event === 'upload' && l.path === '/unfinished.txt');
    assert.ok(rec);
    assert.equal(rec.result, 'aborted');
    assert.equal(rec.bytes, 3);
  });

  it('records uploads and downloads with bytes, result and SHA-256', async () => {
    const s = await world.session('at');
    await writeFile(s, 'h.txt', 'abc');
    const lines = await world.auditLines();
    const rec = lines.findLast((l) => l.event === 'upload' && l.path === '/h.txt');
    assert.equal(rec?.sha256, 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(rec?.result, 'ok');
    assert.equal(rec?.protocol, 'sftp');
    assert.equal(rec?.ip, '127.0.0.1');
  });
});
