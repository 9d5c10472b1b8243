import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { PassThrough, Readable, Transform, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pump } from '../src/ftp/data-channel/pump.js';

/** A sink that keeps what it is given; `fail` makes its write fail at that chunk. */
function sink(fail?: number): Writable & { got: Buffer[] } {
  const got: Buffer[] = [];
  let n = 0;
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (++n === fail) return cb(new Error('disk gone'));
      got.push(chunk);
      cb();
    },
  });
  return Object.assign(w, { got });
}

const upper = () =>
  new Transform({
    transform(chunk: Buffer, _enc, cb) {
      cb(null, Buffer.from(chunk.toString().toUpperCase()));
    },
  });

describe('pump: a data connection streamed as stream.pipeline would, without its per-call abort', () => {
  it('carries every chunk through the stages, with backpressure, and resolves once the last has finished', async () => {
    const chunks = Array.from({ length: 200 }, (_, i) => Buffer.from(`chunk ${i};`));
    const slow = sink();
    let finished = false;
    slow.on('finish', () => (finished = true));
    await pump(Readable.from(chunks, { objectMode: false, highWaterMark: 4 }), upper(), slow);
    assert.ok(finished);
    assert.equal(Buffer.concat(slow.got).toString(), chunks.join('').toUpperCase());
  });

  it("a source's failure destroys the rest and is the result", async () => {
    const source = new PassThrough();
    const dest = sink();
    const done = pump(source, upper(), dest);
    source.write('some');
    source.destroy(new Error('connection reset'));
    await assert.rejects(done, /connection reset/);
    assert.ok(dest.destroyed);
  });

  it("the last stream's failure destroys the source and is the result", async () => {
    const source = new PassThrough();
    const done = pump(source, sink(2));
    source.write('one');
    source.write('two');
    await assert.rejects(done, /disk gone/);
    assert.ok(source.destroyed);
  });

  it('a source closed before its end is a failure, not a success', async () => {
    const source = new PassThrough();
    const dest = sink();
    const done = pump(source, dest);
    source.write('half');
    source.destroy();
    await assert.rejects(done, { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    assert.ok(dest.destroyed);
  });

  it('an error a stream emits after the end is caught, not thrown from the event loop', async () => {
    const source = Readable.from([Buffer.from('x')]);
    const dest = sink();
    await pump(source, dest);
    // With no listener left, emit('error') would throw here (in a server: an uncaught exception).
    assert.doesNotThrow(() => dest.emit('error', new Error('late')));
    assert.doesNotThrow(() => source.emit('error', new Error('late too')));
  });

  it("a socket that ends because its peer did, before the source ended, is a failure: the transfer did not complete", async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
      const [served] = (await once(server, 'connection')) as [Socket];
      // A source that never runs dry by itself: 64 KiB every few milliseconds.
      let sent = 0;
      const source = new Readable({
        read() {
          setTimeout(() => this.push(Buffer.alloc(64 * 1024, 1)), 2);
          sent++;
        },
      });
      const done = pump(source, served);
      let got = 0;
      client.on('data', (d: Buffer) => {
        got += d.length;
        // The client has had enough and says so (FIN); the served socket, not half-open, ends its side too.
        if (got >= 1 << 20) client.end();
      });
      client.on('error', () => undefined);
      await assert.rejects(done, { code: 'ERR_STREAM_PREMATURE_CLOSE' });
      assert.ok(source.destroyed, 'the source is torn down, not left reading');
      assert.ok(sent > 0);
      client.destroy();
    } finally {
      server.close();
    }
  });

  it('a real error that comes with a premature close is the result, not the premature close', async () => {
    const source = new PassThrough();
    const dest = sink();
    const done = pump(source, dest);
    source.destroy();
    dest.destroy(new Error('quota exceeded'));
    await assert.rejects(done, /quota exceeded/);
  });

  it('aborts no AbortController (stream.pipeline aborts one per call, and captures a stack for it)', async () => {
    const abort = AbortController.prototype.abort;
    let aborts = 0;
    AbortController.prototype.abort = function (this: AbortController, ...args: Parameters<typeof abort>) {
      aborts++;
      return abort.apply(this, args);
    };
    try {
      for (let i = 0; i < 10; i++) await pump(Readable.from([Buffer.from('file')]), upper(), sink());
    } finally {
      AbortController.prototype.abort = abort;
    }
    assert.equal(aborts, 0);
  });
});
