import http from 'node:http';
import https from 'node:https';

export interface AdminTarget {
  /** TCP port on 127.0.0.1, or a unix socket path. */
  readonly port?: number;
  readonly socketPath?: string;
  readonly tls?: boolean;
  /** Loopback address to connect from (127.0.0.2...), so each test's failures score their own address. */
  readonly from?: string;
}

export interface AdminReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: unknown;
}

/** One request to the admin API with Node's own client (over TCP, TLS or the unix socket). */
export function adminRequest(
  target: AdminTarget,
  method: string,
  path: string,
  options: { token?: string; body?: unknown; rawBody?: string | Buffer; contentType?: string; localAddress?: string } = {},
): Promise<AdminReply> {
  const body = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  // Node sends a DELETE's body neither chunked nor with a length unless told: the server reads it as the next request.
  if (body !== undefined && (method === 'DELETE' || method === 'OPTIONS')) headers['content-length'] = String(Buffer.byteLength(body));
  const lib = target.tls ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(
      {
        method,
        path,
        headers,
        agent: false,
        ...(target.socketPath ? { socketPath: target.socketPath } : { host: '127.0.0.1', port: target.port }),
        ...(options.localAddress ?? target.from ? { localAddress: options.localAddress ?? target.from } : {}),
        ...(target.tls ? { rejectUnauthorized: false } : {}),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          let json: unknown = null;
          try {
            json = JSON.parse(text);
          } catch {
            // NDJSON or empty: the caller reads text.
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
