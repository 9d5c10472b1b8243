import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SluiceError, Unseen } from '../src/session/errors.js';
import { fromErrno } from '../src/session/storage/errno.js';

const frames = (e: Error) => (e.stack ?? '').split('\n').filter((l) => l.trimStart().startsWith('at ')).length;

describe('SluiceError: answers carry no stack, failures of ours do', () => {
  it('an expected kind is made without capturing a stack (each capture cost about 10 µs of the event loop)', () => {
    for (const e of [new SluiceError('not-found'), new SluiceError('permission-denied', undefined, 'why'), new Unseen(), fromErrno(Object.assign(new Error('ENOENT: x'), { code: 'ENOENT' }))]) {
      assert.equal(frames(e), 0, `${e.kind}: ${e.stack}`);
      assert.equal(e.name, 'SluiceError');
    }
  });

  it("a failure of ours keeps its stack, for whoever debugs it; kind, text and detail are unchanged", () => {
    const e = new SluiceError('failure', undefined, 'EIO');
    assert.ok(frames(e) > 0, String(e.stack));
    assert.equal(e.message, 'Operation failed');
    assert.equal(e.detail, 'EIO');
    const nf = fromErrno(Object.assign(new Error('ENOENT: no such file, lstat /srv/x'), { code: 'ENOENT' }));
    assert.equal(nf.kind, 'not-found');
    assert.equal(nf.message, 'No such file or directory');
    assert.equal(nf.detail, 'ENOENT');
  });

  it("leaves the process's stack trace limit as it found it, also when the construction throws", () => {
    const before = Error.stackTraceLimit;
    new SluiceError('not-found');
    new SluiceError('failure');
    assert.equal(Error.stackTraceLimit, before);
    // A message that cannot become a string makes Error's constructor throw.
    assert.throws(() => new SluiceError('not-found', Symbol('no text') as unknown as string), TypeError);
    assert.equal(Error.stackTraceLimit, before);
    assert.ok(frames(new Error('other errors')) > 0);
  });
});
