// Apart from admin.ts so that the CLI and the admin API's error mapping need none of what UserAdmin loads.
/** An admin mistake: one line, nothing written. */
export class AdminError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AdminError';
  }
}

/** What the change names does not exist: a user, a key of theirs, an override (the admin API answers 404). */
export class NotStored extends AdminError {
  constructor(message: string) {
    super(message);
    this.name = 'NotStored';
  }
}

/** The user named does not exist. */
export class NoSuchUser extends NotStored {
  constructor(name: string) {
    super(`no user named "${name}"`);
    this.name = 'NoSuchUser';
  }
}
