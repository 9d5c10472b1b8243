import type { CommandSpec } from '../control.js';
import { Code } from '../replies.js';

/**
 * Receipts: the SHA-256 of a file, as the session computes it (from the
 * upload's record when the file is as it was left, else read at the
 * session's hashing rate). SHA-256 is the only algorithm: OPTS HASH selects
 * nothing else (see info.ts).
 */
export const hash: Record<string, CommandSpec> = {
  // draft-bryan-ftpext-hash: "213 <algorithm> <start>-<end> <hex> <path>".
  HASH: {
    auth: true,
    arg: 'required',
    feat: 'HASH SHA-256*',
    help: 'HASH <path>',
    async run(c, arg, s) {
      const sum = await s.checksum(arg);
      c.reply(Code.FileStatus, `SHA-256 ${sum.offset}-${sum.end} ${hex(sum.digests)} ${arg}`);
    },
  },
  // The verb of Serv-U, FileZilla Server and others: the hex digest alone.
  XSHA256: {
    auth: true,
    arg: 'required',
    help: 'XSHA256 <path>',
    async run(c, arg, s) {
      c.reply(Code.FileActionOk, hex((await s.checksum(arg)).digests));
    },
  },
};

function hex(digests: readonly Buffer[]): string {
  return Buffer.concat(digests).toString('hex');
}
