import type { Logger } from 'pino';
import type { Kept, QuarantineStore, Scanner } from '../session/scanning.js';

/** A scanner's failures, said at most this often: one down is asked again every second per upload. */
const SAY_EVERY_MS = 30_000;

/**
 * The scanner and the quarantine with their failures said in the server log
 * too. Each upload's record gives its own reason, but an operator reads the
 * log: a mistyped clamdSocket had every upload wait for scanTimeout and be
 * refused, and a quarantine that could not be written lost each infected
 * file and its hash, with no line in the log (found by a review).
 */
export function loggedScanner(scanner: Scanner, log: Logger): Scanner {
  let lastSaid = -Infinity;
  let passedOver = 0;
  return {
    scan: async (source, deadline) => {
      try {
        return await scanner.scan(source, deadline);
      } catch (err) {
        const now = performance.now();
        if (now - lastSaid < SAY_EVERY_MS) passedOver++;
        else {
          log.warn({ err: (err as Error).message, ...(passedOver > 0 ? { alike: passedOver } : {}) }, 'virus scanner failed: uploads wait for it, and are refused when uploads.scanTimeout passes');
          lastSaid = now;
          passedOver = 0;
        }
        throw err;
      }
    },
  };
}

export function loggedQuarantine(quarantine: QuarantineStore, log: Logger): QuarantineStore {
  return {
    keep: async (open, info): Promise<Kept> => {
      try {
        const kept = await quarantine.keep(open, info);
        if (!kept.kept && kept.fault) log.error({ err: kept.why, user: info.user }, 'quarantine refused to keep an infected upload: it was refused, its hash recorded, but its file is lost');
        return kept;
      } catch (err) {
        log.error({ err: (err as Error).message, user: info.user }, 'quarantine could not keep an infected upload: it was refused, but its file and hash are lost');
        throw err;
      }
    },
  };
}
