/**
 * After the first SIGTERM or SIGINT: the next one, which cuts the drain short
 * (transfers still running are ended as aborted). Listening replaces Node's
 * default, which would kill the process before the audit trail is flushed;
 * `dispose` gives it back, so a third signal still kills a stuck process.
 */
export function nextStopSignal(): { readonly signalled: Promise<string>; dispose(): void } {
  let handler: (signal: string) => void = () => undefined;
  const signalled = new Promise<string>((resolve) => (handler = resolve));
  const signals = ['SIGINT', 'SIGTERM'] as const;
  for (const s of signals) process.once(s, handler);
  return {
    signalled,
    dispose: () => {
      for (const s of signals) process.off(s, handler);
    },
  };
}
