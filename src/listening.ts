/** One listening socket of a front-end, as bound. */
export interface Listening {
  /** `ftp` (plain and AUTH TLS), `ftps` (implicit TLS), `sftp`. */
  readonly protocol: 'ftp' | 'ftps' | 'sftp';
  readonly address: string;
  readonly port: number;
}
