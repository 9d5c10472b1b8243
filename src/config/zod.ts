/**
 * The part of zod the configuration's schema is built from. `npm run build`
 * bundles this file with what it uses of zod into one (scripts/bundle-zod.mjs):
 * zod's package is about a hundred files and 1 MB, 64 locales among them, and
 * loading it took 80-110 ms of CPU in every process (each CLI command, a
 * server and each of its workers), a quarter of `sluice user show`; the
 * bundle is about 0.2 MB and loads in about 30. Its messages are zod's own
 * (English, registered as the first schema is made).
 */
export { NEVER, array, boolean, enum, ipv4, literal, number, object, string, union, url } from 'zod';
