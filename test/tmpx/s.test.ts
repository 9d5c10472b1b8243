import { it } from 'node:test';
import { TestServer } from '../helpers/server.js';
it('start/stop x5', async () => {
  for (let i = 0; i < 5; i++) {
    const srv = await TestServer.start({ });
    await srv.stop();
  }
});
