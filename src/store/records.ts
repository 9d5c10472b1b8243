import type { Protocol } from '../session/account.js';
import type { Permission } from '../session/permissions.js';

// What the store keeps, as both databases return it.

export interface PublicKeyRecord {
  readonly id: number;
  readonly algorithm: string;
  /** SSH wire-format public key blob. */
  readonly blob: Buffer;
  readonly fingerprint: string;
  readonly comment: string;
  readonly createdAt: Date;
}

export interface UserRecord {
  readonly id: number;
  readonly name: string;
  readonly passwordHash: string | null;
  readonly home: string;
  readonly enabled: boolean;
  readonly expiresAt: Date | null;
  readonly protocols: Protocol[];
  readonly requireTls: boolean;
  readonly requireKey: boolean;
  readonly permissions: Permission[];
  readonly quotaBytes: number;
  readonly quotaFiles: number;
  /** Bytes per second; null: the server's default (limits.rateUp / rateDown), 0: none. */
  readonly rateUp: number | null;
  readonly rateDown: number | null;
  /** Uploads scanned for malware; null: the server's uploads.scan. */
  readonly scan: boolean | null;
  readonly usedBytes: number;
  readonly usedFiles: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly lastLoginAt: Date | null;
  readonly allowIps: string[];
  readonly denyIps: string[];
  readonly dirPermissions: { path: string; permissions: Permission[] }[];
}

/** Fields an admin sets; validation happens before they reach the store. */
export interface UserSettings {
  home: string;
  enabled: boolean;
  expiresAt: Date | null;
  protocols: Protocol[];
  requireTls: boolean;
  requireKey: boolean;
  permissions: Permission[];
  quotaBytes: number;
  quotaFiles: number;
  rateUp: number | null;
  rateDown: number | null;
  scan: boolean | null;
  allowIps: string[];
  denyIps: string[];
}

/** What an administrator set for `u`, as create() and update() take it. */
export function settingsOf(u: UserRecord): UserSettings {
  return {
    home: u.home,
    enabled: u.enabled,
    expiresAt: u.expiresAt,
    protocols: u.protocols,
    requireTls: u.requireTls,
    requireKey: u.requireKey,
    permissions: u.permissions,
    quotaBytes: u.quotaBytes,
    quotaFiles: u.quotaFiles,
    rateUp: u.rateUp,
    rateDown: u.rateDown,
    scan: u.scan,
    allowIps: u.allowIps,
    denyIps: u.denyIps,
  };
}

export interface NewKey {
  algorithm: string;
  blob: Buffer;
  fingerprint: string;
  comment: string;
}

export interface BanRecord {
  readonly address: string;
  /** null: until removed. */
  readonly until: Date | null;
  /** How many bans in a row this address earned; the next one lasts longer. */
  readonly count: number;
  readonly reason: string;
  readonly createdAt: Date;
}

export interface AdminTokenRecord {
  readonly name: string;
  readonly createdAt: Date;
  readonly lastUsed: Date | null;
}
