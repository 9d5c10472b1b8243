/** One listening socket of a front-end, as bound (the port the kernel gave when 0 was not asked for is the same). */
export interface Listening {
  /** `ftp` (plain and AUTH TLS), `ftps` (implicit TLS), `sftp`. */
  readonly protocol: 'ftp' | 'ftps' | 'sftp';
  readonly address: string;
  readonly port: number;
}
