/**
 * Everything the bench starts or creates registers its undoing here, so that
 * clients, servers, PAM files, cgroups and temp dirs go on success, on
 * failure and on Ctrl-C.
 */
type Step = () => Promise<void> | void;

/** Run first, in order: clients, before the servers they talk to. */
const first: Step[] = [];
/** Then newest first: a server stops before its cgroup and its directory go. */
const undo: Step[] = [];
/** Starts under way: their cleanup is registered once they finish, so cleanupAll waits for them first. */
const pending = new Set<Promise<unknown>>();
let cleaning: Promise<void> | null = null;
/** Set once cleanupAll has taken the registered steps: later ones are chained after them. */
let taken = false;
let interrupted = false;

async function run(fn: Step): Promise<void> {
  try {
    await fn();
  } catch (err) {
    console.error(`cleanup: ${(err as Error).message}`);
  }
}

/** Registers `fn`; once cleanup has taken its steps (a start finishing after Ctrl-C), it runs right after them. */
export function onCleanup(fn: Step): void {
  if (cleaning && taken) cleaning = cleaning.then(() => run(fn));
  else undo.push(fn);
}

export function onCleanupFirst(fn: Step): void {
  first.push(fn);
}

/**
 * Starts a server unless the bench is being stopped; cleanupAll waits for
 * the start to finish, since the start registers its own stop when done.
 */
export function starting<T>(start: () => Promise<T>): Promise<T> {
  if (interrupted) return Promise.reject(new Error('interrupted'));
  const started = start();
  const settled: Promise<unknown> = started.catch(() => undefined).finally(() => pending.delete(settled));
  pending.add(settled);
  return started;
}

/** True once Ctrl-C or SIGTERM came: clients started after it would only fail against stopped servers. */
export function isInterrupted(): boolean {
  return interrupted;
}

/**
 * Runs every registered step once; one failing does not stop the rest. A
 * second call (the run ending while Ctrl-C's cleanup runs) waits for the first.
 */
export async function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.allSettled(pending);
    taken = true;
    for (const fn of [...first, ...undo.reverse()]) await run(fn);
  })();
  for (let seen = cleaning; ; seen = cleaning) {
    await seen;
    if (seen === cleaning) return;
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    console.error(`\n${signal}: stopping clients and servers, removing temp files`);
    void cleanupAll().finally(() => process.exit(130));
  });
}
