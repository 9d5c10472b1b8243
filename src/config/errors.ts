// Apart from load.ts so that the CLI can tell a configuration mistake without loading the schema.
/** A configuration problem: one line naming the key; the process exits with code 2. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
