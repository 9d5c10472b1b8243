// The names of the files in certsDir, apart from ensure.ts so that reading them needs neither ssh2 nor node-forge.
export const TLS_CERT = 'tls-cert.pem';
export const TLS_KEY = 'tls-key.pem';
export const HOST_KEYS = ['ssh_host_ed25519_key', 'ssh_host_rsa_key'] as const;
/** The key type each host key file must hold, as ssh2 names it. */
export const HOST_KEY_TYPES: Readonly<Record<(typeof HOST_KEYS)[number], string>> = { ssh_host_ed25519_key: 'ssh-ed25519', ssh_host_rsa_key: 'ssh-rsa' };
