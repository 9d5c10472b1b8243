// Apart from admin.ts so that the CLI and the admin API's error mapping need none of what UserAdmin loads.
/** An admin mistake: one line, nothing written. */
export class AdminError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AdminError';
  }
}

/** The user named does not exist (the admin API answers 404). */
export class NoSuchUser extends AdminError {
  constructor(name: string) {
    super(`no user named "${name}"`);
    this.name = 'NoSuchUser';
  }
}
