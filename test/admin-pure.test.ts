import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { adminEndpoint } from '../src/admin/endpoint.js';
import { describeIssue } from '../src/admin/errors.js';
import { bearerToken, hashToken, newToken } from '../src/admin/tokens.js';

describe('adminEndpoint', () => {
  for (const [listen, expected] of [
    ['127.0.0.1:8022', { host: '127.0.0.1', port: 8022 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['[::1]:8022', { host: '::1', port: 8022 }],
    ['/run/sluice/admin.sock', { path: '/run/sluice/admin.sock' }],
    ['./admin.sock', { path: './admin.sock' }],
  ] as const) {
    it(listen, () => assert.deepEqual(adminEndpoint(listen), expected));
  }
});

describe('bearerToken', () => {
  for (const [header, expected] of [
    [undefined, null],
    ['', null],
    ['Bearer sluice_abc-_', 'sluice_abc-_'],
    ['bearer   sluice_x  ', 'sluice_x'],
    ['Basic dXNlcjpwYXNz', null],
    ['Bearer ', null],
    ['Bearer a b', null],
    [`Bearer ${'a'.repeat(513)}`, null],
  ] as const) {
    it(JSON.stringify(header), () => assert.equal(bearerToken(header), expected));
  }
});

describe('newToken', () => {
  it('256 random bits, stored as their SHA-256, never twice the same', () => {
    const a = newToken();
    const b = newToken();
    assert.match(a.token, /^sluice_[A-Za-z0-9_-]{43}$/);
    assert.notEqual(a.token, b.token);
    assert.deepEqual(a.hash, hashToken(a.token));
    assert.equal(a.hash.length, 32);
  });
});

describe('describeIssue', () => {
  for (const [where, issue, expected] of [
    ['body', { instancePath: '', keyword: 'additionalProperties', params: { additionalProperty: 'shell' } }, 'body.shell: unknown field'],
    ['body', { instancePath: '/keys', keyword: 'additionalProperties', params: { additionalProperty: 'x' } }, 'body.keys.x: unknown field'],
    ['body', { instancePath: '', keyword: 'required', params: { missingProperty: 'name' } }, 'body.name: missing'],
    ['body', { instancePath: '/quotaBytes', keyword: 'type', message: 'must be integer', params: {} }, 'body.quotaBytes: must be integer'],
    ['query', { instancePath: '/result', keyword: 'enum', message: 'must be equal', params: { allowedValues: ['ok', 'failed'] } }, 'query.result: must be one of ok, failed'],
    ['params', { instancePath: '/name', keyword: 'maxLength', params: {} }, 'params.name: maxLength'],
  ] as const) {
    it(expected, () => assert.equal(describeIssue(where, issue), expected));
  }
});
