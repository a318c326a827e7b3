import type { Queryable } from '../db/index.js';

/** A stored passkey as the management routes show it (never the public key). */
export interface PasskeyInfo {
  id: string;
  name: string | null;
  deviceType: string;
  backedUp: boolean;
  transports: string[];
  aaguid: string | null;
  createdAt: Date;
}

/** What an assertion is checked against. */
export interface StoredCredential {
  id: string;
  userId: string;
  credentialId: string;
  publicKey: Uint8Array<ArrayBuffer>;
  counter: number;
  transports: string[];
}

export interface NewPasskey {
  id: string;
  userId: string;
  name: string | null;
  credentialId: string;
  publicKey: Uint8Array;
  counter: number;
  deviceType: string;
  backedUp: boolean;
  transports: string[];
  aaguid: string | null;
}

interface Row {
  id: string;
  name: string | null;
  user_id: string;
  credential_id: string;
  credential_public_key: string;
  /** BIGINT: node-postgres returns it as a string, PGlite as a number. */
  counter: string | number;
  device_type: string;
  backed_up: boolean;
  transports: string | null;
  aaguid: string | null;
  created_at: Date | string;
}

/** The columns of Row, named: a prepared `SELECT *` would fail once a migration adds a column to passkeys. */
const COLUMNS =
  'id, name, user_id, credential_id, credential_public_key, counter, device_type, backed_up, transports, aaguid, created_at';

const splitTransports = (t: string | null) => (t ? t.split(',').filter(Boolean) : []);

const infoOf = (r: Row): PasskeyInfo => ({
  id: r.id,
  name: r.name,
  deviceType: r.device_type,
  backedUp: r.backed_up,
  transports: splitTransports(r.transports),
  aaguid: r.aaguid,
  createdAt: new Date(r.created_at),
});

/**
 * Does the user have a way to sign in other than passkeys? A password (Better Auth's 'credential' account with a
 * hash) or any other linked account (an OAuth provider) counts.
 */
const OTHER_SIGN_IN_METHOD = `EXISTS (
  SELECT 1 FROM user_credentials c
   WHERE c.user_id = $1 AND (c.provider_id <> 'credential' OR c.password_hash IS NOT NULL))`;

/**
 * SQL of the `passkeys` table, in the same format Better Auth's passkey plugin reads and writes (public key as padded
 * standard base64, transports comma-separated), so passkeys made through either set of routes work with both.
 */
export function createPasskeyStore(db: Queryable) {
  return {
    async insert(p: NewPasskey): Promise<PasskeyInfo> {
      const { rows } = await db.query<Row>(
        `INSERT INTO passkeys (id, name, user_id, credential_id, credential_public_key, counter, device_type, backed_up,
                               transports, aaguid)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ${COLUMNS}`,
        [
          p.id,
          p.name,
          p.userId,
          p.credentialId,
          Buffer.from(p.publicKey).toString('base64'),
          p.counter,
          p.deviceType,
          p.backedUp,
          p.transports.join(','),
          p.aaguid,
        ],
      );
      return infoOf(rows[0] as Row);
    },

    async findByCredentialId(credentialId: string): Promise<StoredCredential | null> {
      const { rows } = await db.query<Row>(`SELECT ${COLUMNS} FROM passkeys WHERE credential_id = $1`, [credentialId]);
      const r = rows[0];
      if (!r) return null;
      return {
        id: r.id,
        userId: r.user_id,
        credentialId: r.credential_id,
        publicKey: new Uint8Array(Buffer.from(r.credential_public_key, 'base64')),
        // Exact: a signature counter is at most 2^32 - 1, far below 2^53.
        counter: Number(r.counter),
        transports: splitTransports(r.transports),
      };
    },

    /** Credential ids and transports of a user's passkeys (excludeCredentials / allowCredentials). */
    async descriptorsOf(userId: string): Promise<{ id: string; transports: string[] }[]> {
      const { rows } = await db.query<Row>(
        'SELECT credential_id, transports FROM passkeys WHERE user_id = $1 ORDER BY created_at',
        [userId],
      );
      return rows.map((r) => ({ id: r.credential_id, transports: splitTransports(r.transports) }));
    },

    async listForUser(userId: string): Promise<PasskeyInfo[]> {
      const { rows } = await db.query<Row>(
        `SELECT ${COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id`,
        [userId],
      );
      return rows.map(infoOf);
    },

    /** Renames the user's own passkey; null when the user has no passkey with this id. */
    async rename(userId: string, id: string, name: string): Promise<PasskeyInfo | null> {
      const { rows } = await db.query<Row>(
        `UPDATE passkeys SET name = $3 WHERE id = $2 AND user_id = $1 RETURNING ${COLUMNS}`,
        [userId, id, name],
      );
      return rows[0] ? infoOf(rows[0]) : null;
    },

    /**
     * Records a verified assertion's counter only if it moved forward (or both are zero: authenticators without a
     * counter). False when it did not: a cloned authenticator, or a concurrent sign-in got there first.
     */
    async advanceCounter(id: string, counter: number): Promise<boolean> {
      const { rowCount } = await db.query(
        'UPDATE passkeys SET counter = $2 WHERE id = $1 AND (counter < $2 OR (counter = 0 AND $2 = 0))',
        [id, counter],
      );
      return rowCount > 0;
    },

    /** Would removing this passkey leave the user with no way to sign in? */
    async isLastSignInMethod(userId: string, id: string): Promise<boolean> {
      const { rows } = await db.query<{ locked_out: boolean }>(
        `SELECT NOT ${OTHER_SIGN_IN_METHOD}
                AND NOT EXISTS (SELECT 1 FROM passkeys WHERE user_id = $1 AND id <> $2) AS locked_out`,
        [userId, id],
      );
      return rows[0]?.locked_out === true;
    },

    /** Deletes the user's own passkey; false when the user has no passkey with this id. */
    async delete(userId: string, id: string): Promise<boolean> {
      const { rowCount } = await db.query('DELETE FROM passkeys WHERE id = $2 AND user_id = $1', [userId, id]);
      return rowCount > 0;
    },

    /** Takes the per-user lock that serialises removals, so two concurrent deletes cannot both remove "the other". */
    async lockUser(userId: string): Promise<boolean> {
      const { rows } = await db.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [userId]);
      return rows.length > 0;
    },

    /**
     * Waits for a change that holds the user row (a reclaim, a disable) to commit, and keeps the next one waiting until
     * this transaction ends. FOR NO KEY UPDATE, not FOR SHARE: the insert's trigger may write the row (an anonymous
     * user made permanent), and two registrations sharing it would each wait for the other to write it (a deadlock).
     */
    async lockUserForPasskey(userId: string): Promise<void> {
      await db.query('SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE', [userId]);
    },

    /**
     * 'fresh': live and made at most `maxAgeSeconds` ago, or any live session of an anonymous user; 'stale': live but
     * older; 'ended': expired or gone.
     */
    async sessionState(sessionId: string, maxAgeSeconds: number): Promise<'fresh' | 'stale' | 'ended'> {
      const { rows } = await db.query<{ fresh: boolean }>(
        `SELECT s.created_at > now() - make_interval(secs => $2) OR u.is_anonymous AS fresh
           FROM sessions s JOIN users u ON u.id = s.user_id
          WHERE s.id = $1 AND s.expires_at > now()`,
        [sessionId, maxAgeSeconds],
      );
      const row = rows[0];
      if (!row) return 'ended';
      return row.fresh ? 'fresh' : 'stale';
    },

    async userIdByEmail(email: string): Promise<string | null> {
      const { rows } = await db.query<{ id: string }>('SELECT id FROM users WHERE lower(email) = lower($1)', [email]);
      return rows[0]?.id ?? null;
    },
  };
}

export type PasskeyStore = ReturnType<typeof createPasskeyStore>;
