import { existsSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';

/**
 * Every file a hook command may run or read, as far as its words tell:
 * the program (found in PATH as spawn finds it, when named bare) and every
 * word of every argument that looks like a path ('/' in it), relative ones
 * taken from the working directory as spawn does, words of a shell script
 * (`sh -c '/opt/x/run.sh "$1"' sh {path}`) included. Placeholders are what the
 * event fills in, not files. No home may hold one of these (app.ts
 * serverFilesOf): a user who could rewrite a hook's script would run code
 * as the server. Over-inclusion only keeps a home out of one more place.
 */
export function hookNamedFiles(command: readonly string[], path = process.env.PATH ?? ''): string[] {
  const [program = '', ...args] = command;
  const files: string[] = [];
  if (program !== '' && !program.includes('/')) {
    for (const dir of path.split(delimiter)) if (dir !== '' && existsSync(join(dir, program))) files.push(join(dir, program));
  }
  for (const arg of [program, ...args]) {
    for (const word of arg.split(/[\s'"`;|&()<>=]+/)) {
      if (word.includes('/') && !word.includes('{')) files.push(resolve(word));
    }
  }
  return files;
}
