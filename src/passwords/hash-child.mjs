// The argon2 process (see hash-process.ts). Plain JavaScript: it runs under plain node, with no TypeScript loader to
// start, and does one thing: hash and verify on request. Passwords arrive over the IPC channel and are never logged.
import argon2 from 'argon2';

process.on('message', async (message) => {
  const { id, op, password, hash, options } = message;
  try {
    const value =
      op === 'hash'
        ? await argon2.hash(password, { ...options, type: argon2.argon2id })
        : await argon2.verify(hash, password);
    process.send?.({ id, value });
  } catch (err) {
    process.send?.({ id, error: err instanceof Error ? err.message : 'argon2 failed' });
  }
});

// The gateway is gone (or closed us): nothing is left to answer.
process.on('disconnect', () => process.exit(0));

// A stop signal sent to the whole process group (Ctrl-C, systemd's control-group stop) is the gateway's to handle:
// it finishes the sign-ins in flight, which need this process, then disconnects, which ends it.
process.on('SIGTERM', () => {});
process.on('SIGINT', () => {});
