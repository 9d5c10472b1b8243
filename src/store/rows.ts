import type { AdminTokenRecord, BanRecord, PublicKeyRecord } from './records.js';

// Rows both databases return alike (the same columns, times as unix ms), and
// the records they become: one mapping for SQLite and PostgreSQL.

export interface KeyRow {
  id: number;
  algorithm: string;
  public_key: Buffer;
  fingerprint: string;
  comment: string;
  created_at: number;
}

export interface BanRow {
  address: string;
  until: number | null;
  count: number;
  reason: string;
  created_at: number;
}

export interface TokenRow {
  name: string;
  created_at: number;
  last_used: number | null;
}

export function keyOf(r: KeyRow): PublicKeyRecord {
  return { id: r.id, algorithm: r.algorithm, blob: r.public_key, fingerprint: r.fingerprint, comment: r.comment, createdAt: new Date(r.created_at) };
}

export function banOf(r: BanRow): BanRecord {
  return { address: r.address, until: r.until === null ? null : new Date(r.until), count: r.count, reason: r.reason, createdAt: new Date(r.created_at) };
}

export function tokenOf(r: TokenRow): AdminTokenRecord {
  return { name: r.name, createdAt: new Date(r.created_at), lastUsed: r.last_used === null ? null : new Date(r.last_used) };
}
