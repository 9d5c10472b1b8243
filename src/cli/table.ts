/**
 * Rows as columns padded to their widest cell, two spaces apart: the tables
 * of `user list`, `ban list`, `audit query` and the others. The cells are
 * shown as given (callers escape what a client chose). Widths are found in
 * loops, not by spreading a column into Math.max: a column is one argument
 * per row that way, and a trail of 125,000 records overflowed the stack.
 * `right(i)`: column i is aligned right (numbers); the last column is not
 * padded when it is aligned left.
 */
export function textTable(head: readonly string[], rows: readonly (readonly string[])[], right: (column: number) => boolean = () => false): string {
  const widths = head.map((h) => h.length);
  for (const row of rows) {
    row.forEach((cell, i) => {
      if (cell.length > (widths[i] ?? 0)) widths[i] = cell.length;
    });
  }
  const line = (row: readonly string[]) =>
    row.map((c, i) => (right(i) ? c.padStart(widths[i] ?? 0) : i === row.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ');
  const lines = [line(head)];
  for (const row of rows) lines.push(line(row));
  return lines.join('\n') + '\n';
}
