import type ssh2 from 'ssh2';

/** The service a client asks for before it authenticates (RFC 4252). */
const USERAUTH = 'ssh-userauth';

/** What ssh2's Connection keeps of its wire protocol: its handler of each message type, and its SERVICE_ACCEPT writer. */
interface Wire {
  _protocol?: { _handlers?: { SERVICE_REQUEST?: unknown }; serviceAccept?: unknown };
}

/**
 * Accepts `ssh-userauth`'s SERVICE_REQUEST again until the client has logged
 * in, as OpenSSH's sshd does (auth2.c, input_service_request). paramiko sends
 * one before each authentication attempt, and its SSHClient tries the key it
 * was given, the agent's and ~/.ssh's before the password: ssh2 accepts the
 * first request only and ends the connection at the next
 * (SERVICE_NOT_AVAILABLE), so a key the user did not have cost the password
 * its turn, and Ansible, Fabric or Airflow with any key at hand reported
 * "Authentication failed" (found driving paramiko: a wrong key, then the
 * right password). Each attempt is still counted and judged as one
 * (auth.maxTries); a SERVICE_REQUEST itself opens nothing. The first one, any
 * other service, and any after the login go to ssh2, which accepts or ends
 * the connection as before. Nothing changes with an ssh2 whose handlers are
 * not there (test/interop-paramiko.test.ts then fails).
 */
export function acceptRepeatedUserauth(client: ssh2.Connection): void {
  const protocol = (client as unknown as Wire)._protocol;
  const handlers = protocol?._handlers;
  if (!protocol || !handlers || typeof handlers.SERVICE_REQUEST !== 'function' || typeof protocol.serviceAccept !== 'function') return;
  const passOn = handlers.SERVICE_REQUEST as (p: unknown, service: string) => unknown;
  const serviceAccept = protocol.serviceAccept as (service: string) => void;
  // ssh2 accepts only after the first key exchange (before it, it ends the connection): so does this.
  let keyed = false;
  client.once('handshake', () => {
    keyed = true;
  });
  let accepted = false;
  handlers.SERVICE_REQUEST = (p: unknown, service: string): unknown => {
    if (service === USERAUTH && keyed && !client.authenticated) {
      if (accepted) return serviceAccept.call(protocol, service);
      accepted = true;
    }
    return passOn(p, service);
  };
}
