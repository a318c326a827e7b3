import { randomBytes } from 'node:crypto';

const PREFIX: Record<string, string> = {
  user: 'user',
  session: 'sess',
  account: 'cred',
  verification: 'vt',
  passkey: 'pk',
  twoFactor: 'tf',
};

/**
 * Ids of the design's form `user_<ms>_<random>`: sortable by creation, and the random part (60 bits from the CSPRNG)
 * makes them unguessable and collision-free across processes.
 */
export function generateId(model: string): string {
  const random = randomBytes(8).readBigUInt64BE() >> 4n;
  return `${PREFIX[model] ?? model}_${Date.now()}_${random.toString(36)}`;
}
