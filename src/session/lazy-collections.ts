const NO_ENTRIES: ReadonlyMap<never, never> = new Map<never, never>();
const NO_VALUES: ReadonlySet<never> = new Set<never>();

/**
 * A Map and a Set that make their table with their first entry. V8 gives
 * each `new Map()` a table for four entries at once (about 184 bytes, 152
 * for a Set), and each session keeps a score of collections for what most
 * sessions never do (transfers, listings, in-place locks, requests ordered
 * on a handle): an idle session paid for all of them, empty. Only the
 * methods the sessions use are here, each as Map's and Set's, but for one
 * thing: iterating one still empty does not see an entry added meanwhile
 * (none of the users adds while it iterates).
 */
export class LazyMap<K, V> implements Iterable<[K, V]> {
  private map: Map<K, V> | null = null;

  get size(): number {
    return this.map?.size ?? 0;
  }

  get(key: K): V | undefined {
    return this.map?.get(key);
  }

  has(key: K): boolean {
    return this.map?.has(key) ?? false;
  }

  set(key: K, value: V): this {
    (this.map ??= new Map()).set(key, value);
    return this;
  }

  delete(key: K): boolean {
    return this.map?.delete(key) ?? false;
  }

  clear(): void {
    this.map?.clear();
  }

  values(): IterableIterator<V> {
    return (this.map ?? NO_ENTRIES).values();
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return (this.map ?? NO_ENTRIES)[Symbol.iterator]();
  }
}

/** See LazyMap. */
export class LazySet<T> implements Iterable<T> {
  private set: Set<T> | null = null;

  get size(): number {
    return this.set?.size ?? 0;
  }

  has(value: T): boolean {
    return this.set?.has(value) ?? false;
  }

  add(value: T): this {
    (this.set ??= new Set()).add(value);
    return this;
  }

  delete(value: T): boolean {
    return this.set?.delete(value) ?? false;
  }

  clear(): void {
    this.set?.clear();
  }

  values(): IterableIterator<T> {
    return (this.set ?? NO_VALUES).values();
  }

  [Symbol.iterator](): IterableIterator<T> {
    return this.values();
  }
}
