/**
 * Milliseconds of this process's CPU time since the call, for budgets of pure computation
 * (linear, not quadratic): the clock also counts the waits for a core, which on a loaded
 * machine failed such budgets without the code being any slower.
 */
export function cpuSince(): () => number {
  const start = process.cpuUsage();
  return () => {
    const { user, system } = process.cpuUsage(start);
    return (user + system) / 1000;
  };
}
