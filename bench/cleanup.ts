/**
 * Everything the bench starts or creates registers its undoing here, so that
 * servers, PAM files and temp dirs go on success, on failure and on Ctrl-C.
 */
const undo: (() => Promise<void> | void)[] = [];

export function onCleanup(fn: () => Promise<void> | void): void {
  undo.push(fn);
}

/** Runs every registered step once, newest first; one failing does not stop the rest. */
export async function cleanupAll(): Promise<void> {
  while (undo.length > 0) {
    const fn = undo.pop() as () => Promise<void> | void;
    try {
      await fn();
    } catch (err) {
      console.error(`cleanup: ${(err as Error).message}`);
    }
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping servers and removing temp files`);
    void cleanupAll().finally(() => process.exit(130));
  });
}
