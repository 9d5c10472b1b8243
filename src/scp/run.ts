import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { SluiceError } from '../session/errors.js';
import type { Session } from '../session/session.js';
import type { ScpCommand } from './command.js';
import { receive } from './sink.js';
import { send } from './source.js';
import { ScpChannelClosed, ScpProtocolError, ScpWire, type ScpFlow } from './wire.js';

/**
 * One scp run on an exec channel, to its end: the exit status the client's
 * scp reports (0: every file went through; 1: some failed, each said why).
 * A client that breaks the protocol gets a fatal reply and the run ends; the
 * session's unfinished transfer is recorded as aborted when it closes.
 * `gone` aborts once the channel is closed (see ScpWire): the run ends there.
 */
export async function runScp(channel: Duplex, gone: AbortSignal, session: Session, cmd: ScpCommand, log: Logger, flow: ScpFlow): Promise<number> {
  const wire = new ScpWire(channel, gone, flow);
  try {
    const failures = cmd.role === 'sink' ? await receive(wire, session, cmd) : await send(wire, session, cmd);
    return failures === 0 ? 0 : 1;
  } catch (err) {
    if (err instanceof ScpChannelClosed) {
      log.debug({ role: cmd.role }, 'scp channel closed by the client or its connection');
      return 1;
    }
    // A refusal of what the client named (its target) ends the run as a protocol error does, said to the client.
    const refused = err instanceof SluiceError && err.kind !== 'failure';
    if (!(err instanceof ScpProtocolError) && !refused) throw err;
    log.warn({ err: err.message, role: cmd.role }, refused ? 'scp refused' : 'scp protocol error');
    await wire.fail(err.message, true).catch(() => undefined);
    return 1;
  }
}
