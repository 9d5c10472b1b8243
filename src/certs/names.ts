// The names of the files in certsDir, apart from ensure.ts so that reading them needs neither ssh2 nor node-forge.
export const TLS_CERT = 'tls-cert.pem';
export const TLS_KEY = 'tls-key.pem';
export const HOST_KEYS = ['ssh_host_ed25519_key', 'ssh_host_rsa_key'] as const;
