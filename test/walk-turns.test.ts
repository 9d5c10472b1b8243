import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalStorage } from '../src/session/storage/local.js';
import { WalkTurns } from '../src/session/storage/walk-turns.js';

const root = realpathSync(mkdtempSync(join(tmpdir(), 'sluice-walk-turns-')));
mkdirSync(join(root, 'a/b'), { recursive: true });
after(() => rmSync(root, { recursive: true, force: true }));

it('free turns go round the walkers waiting, each walker’s own in order', async () => {
  const turns = new WalkTurns(1);
  const [a, b, c] = [{ name: 'a' }, { name: 'b' }, { name: 'c' }];
  const order: string[] = [];
  const holder = await turns.take('/h', {});
  const walks = [a, a, a, b, c, c].map((w, i) =>
    turns.take('/h', w).then((done) => {
      order.push(`${w.name}${i}`);
      done();
    }),
  );
  holder();
  await Promise.all(walks);
  assert.deepEqual(order, ['a0', 'b3', 'c4', 'a1', 'c5', 'a2']);
});

it('a walker abandoned leaves the line, refused; the turns stay counted right', async () => {
  const turns = new WalkTurns(2);
  const [gone, stays] = [{}, {}];
  const held = [await turns.take('/h', {}), await turns.take('/h', {})];
  const refused = [turns.take('/h', gone), turns.take('/h', gone)].map((p) => p.then(() => 'turn', (e: Error) => e.message));
  const next = turns.take('/h', stays);
  turns.abandon('/h', gone, new Error('gone'));
  assert.deepEqual(await Promise.all(refused), ['gone', 'gone']);
  for (const done of held) done();
  (await next)();
  // Both turns free again: two takes at once without waiting, a third waits.
  const two = [await turns.take('/h', {}), await turns.take('/h', {})];
  const third = Promise.race([turns.take('/h', {}).then(() => 'turn'), sleep(100).then(() => 'waits')]);
  assert.equal(await third, 'waits');
  for (const done of two) done();
});

// Found by a review: a resolve that had begun when its session closed queued for a turn nobody refused.
it('a resolve under way when its storage closes is refused, not left waiting for a turn', async () => {
  const turns = new WalkTurns(1);
  const storage = new LocalStorage(root, turns);
  const holder = await turns.take(root, {});
  const asked = storage.resolve('/a/b/c', true);
  storage.close();
  const outcome = await Promise.race([asked.then(() => 'resolved', (e: Error) => e.message), sleep(500).then(() => 'still waiting')]);
  holder();
  assert.equal(outcome, 'Session is closed');
  await assert.rejects(storage.resolve('/a', true), /Session is closed/);
});
