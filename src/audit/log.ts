import { once } from 'node:events';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import type { Actor, AuditEvent, AuditSink } from './events.js';
import { GENESIS, chainLine, lineHash, type ChainHead } from './chain.js';

/** Never let a secret reach a log line, whatever object it arrives in. */
const REDACT = {
  paths: ['password', '*.password', 'hash', '*.hash', 'passwordHash', '*.passwordHash', 'secret', '*.secret'],
  censor: '[redacted]',
};

export function createLogger(level: string): Logger {
  return pino({ level, redact: REDACT, base: { pid: process.pid } });
}

/**
 * Audit trail as JSON lines, each chained to the one before (sequence number
 * and SHA-256 of the previous line), so an edit, a removal, an insertion or a
 * reordering shows (`sluice audit verify`). Lines are built here rather than
 * by pino so the bytes hashed are the bytes written. sonic-boom writes them
 * asynchronously from a buffer, so a transfer never waits on the audit file;
 * the buffer is flushed at least every second and on shutdown.
 */
export class AuditLog implements AuditSink {
  private readonly stream: ReturnType<typeof pino.destination>;
  private readonly ready: Promise<unknown>;
  private readonly flusher: NodeJS.Timeout;
  private head: ChainHead;

  constructor(file: string) {
    this.head = recoverHead(file);
    this.stream = pino.destination({ dest: file, sync: false, mkdir: true, minLength: 4096, mode: 0o600 });
    this.ready = once(this.stream, 'ready');
    // Buffered for throughput, but never more than a second behind.
    this.flusher = setInterval(() => this.stream.flush(), 1000);
    this.flusher.unref();
    // The anchor: where this run of the server joins the chain.
    this.write({ event: 'audit-start', pid: process.pid });
  }

  record(actor: Actor, event: AuditEvent): void {
    this.write({ ...actor, ...event });
  }

  private write(fields: Record<string, unknown>): void {
    const { line, head } = chainLine(this.head, { time: new Date().toISOString(), ...fields });
    this.head = head;
    this.stream.write(line + '\n');
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

/**
 * Start-up only (synchronous by design): continue the chain from the last
 * complete line of an existing file. A torn last line (a crash mid-write) is
 * left for `audit verify` to report; the chain continues from the line before.
 */
function recoverHead(file: string): ChainHead {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return { seq: 0, prev: GENESIS };
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, 1024 * 1024);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    const lines = buf.toString('utf8').split('\n');
    for (let i = lines.length - 1; i >= 0; i--) {
      const text = lines[i] as string;
      try {
        const rec = JSON.parse(text) as { seq?: unknown };
        if (typeof rec.seq === 'number') return { seq: rec.seq + 1, prev: lineHash(text) };
      } catch {
        // torn or partial line: look further back
      }
    }
    return { seq: 0, prev: GENESIS };
  } finally {
    closeSync(fd);
  }
}
