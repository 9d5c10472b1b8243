import { once } from 'node:events';
import pino, { type Logger } from 'pino';
import type { Actor, AuditEvent, AuditSink } from './events.js';

/** Never let a secret reach a log line, whatever object it arrives in. */
const REDACT = {
  paths: ['password', '*.password', 'hash', '*.hash', 'passwordHash', '*.passwordHash', 'secret', '*.secret'],
  censor: '[redacted]',
};

export function createLogger(level: string): Logger {
  return pino({ level, redact: REDACT, base: { pid: process.pid } });
}

/**
 * Audit trail as JSON lines. sonic-boom writes asynchronously from a buffer,
 * so a transfer never waits on the audit file; flush() runs at shutdown.
 */
export class AuditLog implements AuditSink {
  private readonly stream: ReturnType<typeof pino.destination>;
  private readonly logger: Logger;
  private readonly ready: Promise<unknown>;
  private readonly flusher: NodeJS.Timeout;

  constructor(file: string) {
    this.stream = pino.destination({ dest: file, sync: false, mkdir: true, minLength: 4096, mode: 0o600 });
    this.ready = once(this.stream, 'ready');
    // Buffered for throughput, but never more than a second behind.
    this.flusher = setInterval(() => this.stream.flush(), 1000);
    this.flusher.unref();
    this.logger = pino(
      { base: null, redact: REDACT, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' },
      this.stream,
    );
  }

  record(actor: Actor, event: AuditEvent): void {
    this.logger.info({ ...actor, ...event });
  }

  /** Hand everything buffered to the file. */
  async flush(): Promise<void> {
    await this.ready;
    await new Promise<void>((resolve) => this.stream.flush(() => resolve()));
  }

  /** Write out everything buffered and close the file; called on shutdown. */
  async close(): Promise<void> {
    clearInterval(this.flusher);
    await this.ready;
    await new Promise<void>((resolve) => {
      this.stream.once('close', () => resolve());
      this.stream.end();
    });
  }
}
