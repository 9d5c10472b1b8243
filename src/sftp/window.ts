import type ssh2 from 'ssh2';

/**
 * ssh2 drops a peer's channel data only when the window is exactly 0: a peer
 * that ignores the window drives it negative, and everything it sends is
 * buffered (a negative window even earns it a larger adjust). The window we
 * grant is exact, so any byte past it is a broken or hostile peer: drop what
 * it sent and let `onOverrun` end the connection, as OpenSSH does ("peer
 * ignored channel window"). False when this ssh2 keeps its window elsewhere:
 * the caller must then not serve the channel.
 */
export function enforceWindow(channel: ssh2.ServerChannel, onOverrun: () => void): boolean {
  const incoming = (channel as { incoming: unknown }).incoming;
  if (typeof incoming !== 'object' || incoming === null || typeof (incoming as { window?: unknown }).window !== 'number') {
    return false;
  }
  const state = incoming as { window: number };
  const push = channel.push.bind(channel);
  let overrun = false;
  // ssh2 subtracts the data's length from the window, then pushes it.
  channel.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk !== null && (overrun || state.window < 0)) {
      if (!overrun) {
        overrun = true;
        onOverrun();
      }
      return false;
    }
    return push(chunk, encoding);
  };
  return true;
}
