import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import ssh2 from 'ssh2';
import { generateHostKey } from '../src/certs/ensure.js';

describe('host key generation', () => {
  it('every generated ed25519 host key parses (raw ssh2 output fails about 1 in 150)', async () => {
    // 200 raw keys would contain a malformed one about 3 times in 4.
    for (let i = 0; i < 200; i++) {
      const pair = await generateHostKey('ed25519');
      assert.ok(!(ssh2.utils.parseKey(pair.private) instanceof Error), `key #${i}`);
    }
  });
});
