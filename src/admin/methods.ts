import type { FastifyInstance } from 'fastify';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/** A request's path: its URL without the query. */
export const pathOf = (url: string): string => url.split('?')[0] ?? '';

/** The methods some route takes at `path` (a request's, as the router matches it). */
export function allowedMethods(app: FastifyInstance, path: string): string[] {
  return METHODS.filter((method) => app.findRoute({ method, url: path }) !== null);
}
