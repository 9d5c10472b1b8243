import type { CommandTable } from '../control.js';
import { access } from './access.js';
import { data } from './data.js';
import { files } from './files.js';
import { hash } from './hash.js';
import { info } from './info.js';
import { listing } from './listing.js';
import { navigate } from './navigate.js';
import { site } from './site.js';
import { transfer } from './transfer.js';

/** Every verb the server knows; anything else is 500. The listener hands it to each connection. */
export const COMMANDS: CommandTable = { ...access, ...info, ...navigate, ...files, ...data, ...transfer, ...listing, ...site, ...hash };
