import type { Replaced } from '../audit/events.js';
import type { NodeStat } from './storage/storage.js';

/**
 * What an act that takes a name (a rename over it, an upload put in its
 * place) replaced, or a delete removed, from the node held when the name was looked at: `before`
 * its stat then, `after` through the hold once the act is done. Only if that
 * node lost a name did the act replace it. Null otherwise: another request
 * moved or removed it between the look and the act, and what the act
 * replaced then (nothing, or a node put there meanwhile) cannot be known
 * without a race; the record says so (replaced_unknown). `known`: the SHA-256
 * the server already holds for `before` (an upload's receipt), kept only while
 * size and mtime say the bytes did not change between the look and the act.
 * For `before` itself, the look under the node's lock, never an earlier one:
 * a write in place between that one and the lock went unseen, and the record
 * claimed an upload's hash for bytes the file no longer held (found while
 * carrying receipts across renames; test/receipt-window).
 */
export function replacedThrough(before: NodeStat, after: NodeStat, known: string | null): Replaced | null {
  if (after.nlink >= before.nlink) return null;
  const file = after.type === 'file';
  const same = after.size === before.size && after.mtime.getTime() === before.mtime.getTime();
  return {
    size: after.size,
    ...(known !== null && file && same ? { sha256: known } : {}),
    ...(file ? {} : { type: after.type as Exclude<NodeStat['type'], 'file'> }),
    ...(file && after.nlink > 0 ? { links: after.nlink } : {}),
  };
}

/** A record's fields for what an act replaced: null, nothing (none was there, as far as the act could tell). */
export function replacedFields(replaced: Replaced | 'unknown' | null): { replaced?: Replaced; replaced_unknown?: true } {
  if (replaced === null) return {};
  return replaced === 'unknown' ? { replaced_unknown: true } : { replaced };
}
