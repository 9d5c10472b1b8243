import { access } from './access.js';
import { data } from './data.js';
import { files } from './files.js';
import { info } from './info.js';
import { navigate } from './navigate.js';
import type { CommandSpec } from './spec.js';
import { transfer } from './transfer.js';

export type { CommandSpec } from './spec.js';

/** Every verb the server knows; anything else is 500. */
export const COMMANDS = { ...access, ...info, ...navigate, ...files, ...data, ...transfer } satisfies Record<string, CommandSpec>;

const HTTP_VERBS = new Set(['GET', 'POST', 'PUT', 'HEAD', 'CONNECT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE']);

/** A browser or cross-protocol attack (ALPACA) talking HTTP to us: close, answer nothing. */
export function isHttpVerb(verb: string, line: string): boolean {
  return HTTP_VERBS.has(verb) || /\sHTTP\/\d/i.test(line);
}
