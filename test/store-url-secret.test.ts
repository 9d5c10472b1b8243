import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { describeUrl } from '../src/store/postgres/connection.js';
import { sluice } from './helpers/cli.js';
import { freePort } from './helpers/server.js';

/*
 * A PostgreSQL URL may carry its password in the query (?password=, as libpq
 * and pg take it) rather than in its user part: a message naming the store
 * must not show it either.
 */
describe('the store URL in messages: no password, wherever the URL holds it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-store-url-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [url, shown] of [
    ['postgres://u:s3cret@db.example/sluice', 'postgres://u:***@db.example/sluice'],
    ['postgres://u@db.example/sluice?password=s3cret', 'postgres://u@db.example/sluice?password=***'],
    ['postgres://u@db.example/sluice?sslmode=verify-full&PassWord=s3cret&sslpassword=s3cret', 'postgres://u@db.example/sluice?sslmode=verify-full&PassWord=***&sslpassword=***'],
  ] as const) {
    it(`describeUrl(${url})`, () => assert.equal(describeUrl(url), shown));
  }

  it('a store that cannot be reached is named without the ?password= of its URL', { timeout: 60_000 }, async () => {
    const port = await freePort();
    const r = sluice(dir, ['user', 'list'], undefined, { SLUICE_STORE_URL: `postgres://sluice@127.0.0.1:${port}/sluice?password=s3cret-in-query` });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /PostgreSQL store postgres:\/\/sluice@127\.0\.0\.1:\d+\/sluice\?password=\*\*\*: /);
    assert.doesNotMatch(r.stderr + r.stdout, /s3cret/);
  });
});
