import { noticeObject, type Subscriber } from './notices.js';

/** migrations/postgres/007_user_revoked.sql: a user disabled, expired, removed or without a key it had. */
export const REVOKED_CHANNEL = 'sluice_users';

/** Told of a user whose access was narrowed on any node: `why` as the trigger says it ('user disabled'...). */
export type RevokedListener = (user: string, why: string) => void;

/**
 * Users' access narrowed on any node, passed on so that each node ends their
 * sessions. While the notices connection is lost these are missed: sessions
 * then go on, and SSH still checks the account per channel.
 */
export class Revocations implements Subscriber {
  private readonly listeners = new Set<RevokedListener>();

  on(listener: RevokedListener): void {
    this.listeners.add(listener);
  }

  notice(payload: string): void {
    const o = noticeObject(payload);
    if (o === null || typeof o.user !== 'string' || typeof o.why !== 'string') return;
    for (const listener of this.listeners) listener(o.user, o.why);
  }

  async listening(): Promise<void> {}

  lost(): void {}
}
