import type { FastifyInstance } from 'fastify';
import { banTarget, notBanTarget, sourceOf } from '../auth/ip-rules.js';
import { MAX_BAN_SECONDS } from '../cli/ban.js';
import { BANNED_BY_ADMIN, endSessionsFrom } from '../coordinator/sessions.js';
import { clientAddress } from './auth.js';
import type { AdminContext } from './context.js';
import { BadInput, NotFound } from './errors.js';
import { StoreUnavailable } from '../store/store.js';

/*
 * Bans, in the store the server checks at every accept (as `sluice ban`
 * writes them); a ban added here also ends the address's live sessions. An
 * address, or an IPv6 network of limits.ipv6Prefix bits (as the defender bans).
 */

const banView = {
  type: 'object',
  properties: {
    address: { type: 'string' },
    until: { type: 'string', format: 'date-time', nullable: true, description: 'null: until removed' },
    count: { type: 'integer' },
    reason: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    held: { type: 'boolean', description: 'true: made by the defender and in force, but not yet in the store (its disk full, its server gone); offered to it each second' },
  },
} as const;
const addressParams = { type: 'object', additionalProperties: false, required: ['address'], properties: { address: { type: 'string', maxLength: 64 } } } as const;

function addressIn(field: string, text: string, ipv6Prefix: number, anySize = false): string {
  const address = banTarget(text, ipv6Prefix, anySize);
  if (address === null) throw new BadInput(field, notBanTarget(text, ipv6Prefix));
  return address;
}

export function banRoutes(api: FastifyInstance, { base, coordination, sessions }: AdminContext): void {
  const { ipv6Prefix } = base.config.limits;
  api.get('/bans', { schema: { summary: 'Bans in force, those the store has not taken yet included', response: { 200: { type: 'array', items: banView } } } }, async () => {
    const stored = await base.bans.active();
    const known = new Set(stored.map((b) => b.address));
    return [...stored, ...coordination.defender.heldBans().filter((b) => !known.has(b.address)).map((b) => ({ ...b, held: true }))];
  });

  api.post<{ Body: { address: string; seconds?: number } }>(
    '/bans',
    {
      schema: {
        summary: "Ban an address (for `seconds`, or until removed) and end its live sessions",
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['address'],
          properties: { address: { type: 'string', maxLength: 64 }, seconds: { type: 'integer', minimum: 1, maximum: MAX_BAN_SECONDS } },
        },
        response: { 201: { ...banView, properties: { ...banView.properties, sessionsEnded: { type: 'integer' } } } },
      },
    },
    async (req, reply) => {
      const address = addressIn('body.address', req.body.address, ipv6Prefix);
      // Refused at accept from then on, this client (the CLI on this host, often) could not lift it through the API.
      if (req.socket.remoteAddress !== undefined) {
        const client = clientAddress(req.socket);
        if (address === client || address === sourceOf(client, ipv6Prefix)) {
          throw new BadInput('body.address', `${address} is your own address: banned, it would lock you out of this API (ban it from another address, or see sluice ban --help)`);
        }
      }
      const { seconds } = req.body;
      await base.bans.add(address, seconds === undefined ? null : new Date(Date.now() + seconds * 1000));
      // This node's; every other node ends its own at the ban's notice (a shared store).
      const sessionsEnded = await endSessionsFrom(sessions, address, ipv6Prefix, BANNED_BY_ADMIN);
      return reply.code(201).send({ ...(await base.bans.get(address)), sessionsEnded });
    },
  );

  api.delete<{ Params: { address: string } }>(
    '/bans/:address',
    { schema: { summary: "Lift a ban (the defender also forgets the address's past bans); a network's '/' written %2F", params: addressParams, response: { 200: { type: 'object', properties: { lifted: { type: 'string' } } } } } },
    async (req) => {
      const address = addressIn('params.address', req.params.address, ipv6Prefix, true);
      // The held one first: it needs no store, which may be what cannot take it.
      const held = coordination.defender.lift(address);
      const removed = await base.bans.remove(address).catch((err: unknown) => {
        // Its 503 must not say nothing changed when the ban in force is lifted already (found by a review).
        if (held && err instanceof StoreUnavailable) {
          const why = err.cause instanceof Error ? err.cause.message : err.message;
          throw new StoreUnavailable(`the ban in force on ${address} is lifted; its stored record could not be removed (${why}): try again`, { cause: err });
        }
        throw err;
      });
      if (!removed && !held) throw new NotFound(`${address} is not banned`);
      return { lifted: address };
    },
  );
}
