/** Where admin.listen says to listen: a unix socket path (anything with a /), or a TCP address and port. */
export type AdminEndpoint = { path: string } | { host: string; port: number };

/** Pure: admin.listen as an endpoint; the config schema has checked its form. */
export function adminEndpoint(listen: string): AdminEndpoint {
  if (listen.includes('/')) return { path: listen };
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(listen.slice(colon + 1)) };
}
