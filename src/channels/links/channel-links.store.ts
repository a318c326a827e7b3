import { createHash, randomBytes } from 'node:crypto';
import type { Database, Queryable } from '../../db/index.js';

/** How long a link code stays valid: long enough to switch to the Telegram app, short enough to be useless later. */
export const LINK_CODE_TTL_SECONDS = 600;

export interface ChannelLink {
  channelType: string;
  channelUserId: string;
  createdAt: string;
}

export type LinkOutcome =
  | { ok: true; userId: string; alreadyLinked: boolean }
  | { ok: false; reason: 'invalid' | 'expired' | 'linked_elsewhere' };

/** 128 random bits, URL-safe (22 characters): fits Telegram's deep-link start parameter (A-Z a-z 0-9 _ -, <= 64). */
export function newLinkCode(): string {
  return randomBytes(16).toString('base64url');
}

/** Codes carry 128 random bits, so a plain SHA-256 is enough: no salt or slow hash is needed against guessing. */
export function hashLinkCode(code: string): string {
  return createHash('sha256').update(code, 'utf8').digest('hex');
}

/**
 * Inside `tx`: whether the session (of that user, unexpired) still exists, and if so, it stays until `tx` ends: a
 * session ended by a password change, a revocation or a reclaim must not link an account or hand out a code after its
 * end (README: a new password voids any pending link code). FOR SHARE waits for a DELETE of the session in flight,
 * then sees it gone; one that starts later waits for `tx`, and the codes it voids are then seen by it.
 * The locks come in the order the writers that end sessions take them, so no pair can deadlock: the user row first
 * (a reclaim holds it FOR UPDATE while it deletes sessions, links and codes; KEY SHARE is what an insert's foreign key
 * takes anyway, which would come last), then the password (a change updates it, voids codes through the trigger,
 * then deletes sessions, all in one transaction: waiting for it means the deletion is seen), then the session. All
 * before the caller touches a code row, which a disable deletes after the sessions.
 */
async function holdSession(tx: Queryable, userId: string, sessionId: string): Promise<boolean> {
  await tx.query('SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE', [userId]);
  await tx.query(`SELECT 1 FROM user_credentials WHERE user_id = $1 AND provider_id = 'credential' FOR SHARE`, [
    userId,
  ]);
  const { rows } = await tx.query(
    'SELECT 1 FROM sessions WHERE id = $1 AND user_id = $2 AND expires_at > now() FOR SHARE',
    [sessionId, userId],
  );
  return rows.length > 0;
}

class Rollback extends Error {
  constructor(readonly outcome: LinkOutcome) {
    super('rollback');
  }
}

/** SQL for user_channel_links and channel_link_codes. Channel types are data, so a new channel needs no change here. */
export function createChannelLinks(db: Database) {
  /**
   * Links a channel account to the user of a signed-in session, only while that session exists. Null: the session
   * is gone (ended meanwhile).
   */
  async function link(
    userId: string,
    sessionId: string,
    channelType: string,
    channelUserId: string,
  ): Promise<LinkOutcome | null> {
    return db.transaction(async (tx) => {
      if (!(await holdSession(tx, userId, sessionId))) return null;
      const inserted = await tx.query(
        `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, $2, $3)
         ON CONFLICT (channel_type, channel_user_id) DO NOTHING`,
        [userId, channelType, channelUserId],
      );
      if (inserted.rowCount > 0) return { ok: true, userId, alreadyLinked: false } as const;
      const owner = await ownerOf(channelType, channelUserId, tx);
      return owner === userId
        ? ({ ok: true, userId, alreadyLinked: true } as const)
        : ({ ok: false, reason: 'linked_elsewhere' } as const);
    });
  }

  async function ownerOf(channelType: string, channelUserId: string, on: Queryable = db): Promise<string | null> {
    const { rows } = await on.query<{ user_id: string }>(
      'SELECT user_id FROM user_channel_links WHERE channel_type = $1 AND channel_user_id = $2',
      [channelType, channelUserId],
    );
    return rows[0]?.user_id ?? null;
  }

  return {
    link,
    ownerOf,

    /**
     * A new code for the user, issued by their session `sessionId`; their earlier unused codes for this channel stop
     * working. Returns the plain code, or null when the session is gone (ended meanwhile, by a password change say).
     * The code records the session: ending it deletes the code (ON DELETE CASCADE), however it ends.
     */
    async issueCode(
      userId: string,
      sessionId: string,
      channelType: string,
    ): Promise<{ code: string; expiresAt: Date } | null> {
      const code = newLinkCode();
      const expiresAt = new Date(Date.now() + LINK_CODE_TTL_SECONDS * 1000);
      const issued = await db.transaction(async (tx) => {
        // Serialises a user's requests for this channel: under READ COMMITTED two of them would each delete nothing
        // and both insert, leaving two live codes. After the wait, the DELETE sees the code the other one committed.
        await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`channel-link-code:${channelType}:${userId}`]);
        // Checked after the wait, not before it: requests queued here outlived a password change that ended their
        // session and voided the codes there were, then inserted theirs.
        if (!(await holdSession(tx, userId, sessionId))) return false;
        await tx.query(
          'DELETE FROM channel_link_codes WHERE (user_id = $1 AND channel_type = $2) OR expires_at < now()',
          [userId, channelType],
        );
        await tx.query(
          `INSERT INTO channel_link_codes (code_hash, user_id, channel_type, expires_at, session_id)
           VALUES ($1, $2, $3, $4, $5)`,
          [hashLinkCode(code), userId, channelType, expiresAt, sessionId],
        );
        return true;
      });
      return issued ? { code, expiresAt } : null;
    },

    /**
     * After a sign-in as the owner of a channel account: whether the link still holds. A reclaim (or an unlink)
     * committing between the lookup of the owner and the new session deleted the link and the sessions it saw, not
     * the one made after: the caller ends that one when this says no. The user row first, as holdSession explains:
     * a reclaim in flight holds it, so this waits for it and then sees the link gone; one that starts later deletes
     * the new session itself.
     */
    async stillLinked(userId: string, channelType: string, channelUserId: string): Promise<boolean> {
      return db.transaction(async (tx) => {
        await tx.query('SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE', [userId]);
        const { rows } = await tx.query(
          `SELECT 1 FROM user_channel_links WHERE user_id = $1 AND channel_type = $2 AND channel_user_id = $3
           FOR SHARE`,
          [userId, channelType, channelUserId],
        );
        return rows.length > 0;
      });
    },

    /**
     * Redeems a code for a channel account. Deleting the row is the claim: of two concurrent redemptions only one
     * DELETE returns it. A code presented by an account already linked to someone else is left unused. A code of a
     * disabled user is used up and answered like an unknown one: disabling voids codes, so one still there slipped in
     * beside the disable, and it must not link (or say who it belonged to) now or after a re-enable. So is a code whose
     * session has ended: a revoked intruder's code must not link their account. Ending a session deletes its codes;
     * the check here covers a session expired but not yet purged, and a code from before codes recorded their session
     * (session_id NULL), which cannot be told from one a session since revoked took.
     */
    async redeemCode(code: string, channelType: string, channelUserId: string): Promise<LinkOutcome> {
      try {
        return await db.transaction(async (tx) => {
          // No lock on the session: a deletion of it waits, in its cascade, for the code row this DELETE holds (the
          // link then came first), or deleted the row first and this finds none.
          const { rows } = await tx.query<{ user_id: string; fresh: boolean; valid: boolean }>(
            `WITH used AS (
               DELETE FROM channel_link_codes c USING users u
                WHERE c.code_hash = $1 AND c.channel_type = $2 AND u.id = c.user_id
               RETURNING c.user_id, c.session_id, c.expires_at > now() AS fresh, u.disabled_at IS NULL AS enabled)
             SELECT user_id, fresh, enabled AND EXISTS (
                      SELECT 1 FROM sessions s
                       WHERE s.id = used.session_id AND s.user_id = used.user_id AND s.expires_at > now()) AS valid
               FROM used`,
            [hashLinkCode(code), channelType],
          );
          const row = rows[0];
          if (!row?.valid) return { ok: false, reason: 'invalid' } as const;
          if (!row.fresh) return { ok: false, reason: 'expired' } as const;
          const inserted = await tx.query(
            `INSERT INTO user_channel_links (user_id, channel_type, channel_user_id) VALUES ($1, $2, $3)
             ON CONFLICT (channel_type, channel_user_id) DO NOTHING`,
            [row.user_id, channelType, channelUserId],
          );
          if (inserted.rowCount > 0) return { ok: true, userId: row.user_id, alreadyLinked: false } as const;
          const owner = await tx.query<{ user_id: string }>(
            'SELECT user_id FROM user_channel_links WHERE channel_type = $1 AND channel_user_id = $2',
            [channelType, channelUserId],
          );
          if (owner.rows[0]?.user_id === row.user_id) return { ok: true, userId: row.user_id, alreadyLinked: true };
          throw new Rollback({ ok: false, reason: 'linked_elsewhere' });
        });
      } catch (err) {
        if (err instanceof Rollback) return err.outcome;
        throw err;
      }
    },

    async listForUser(userId: string): Promise<ChannelLink[]> {
      const { rows } = await db.query<{ channel_type: string; channel_user_id: string; created_at: Date | string }>(
        `SELECT channel_type, channel_user_id, created_at FROM user_channel_links
          WHERE user_id = $1 ORDER BY created_at, id`,
        [userId],
      );
      return rows.map((r) => ({
        channelType: r.channel_type,
        channelUserId: r.channel_user_id,
        createdAt: new Date(r.created_at).toISOString(),
      }));
    },

    /** Removes the user's links of a type (or the one account given); returns the channel user ids removed. */
    async unlinkForUser(userId: string, channelType: string, channelUserId?: string): Promise<string[]> {
      const { rows } = await db.query<{ channel_user_id: string }>(
        `DELETE FROM user_channel_links WHERE user_id = $1 AND channel_type = $2 AND ($3::text IS NULL OR channel_user_id = $3)
         RETURNING channel_user_id`,
        [userId, channelType, channelUserId ?? null],
      );
      return rows.map((r) => r.channel_user_id);
    },

    /** Removes a channel account's link from the channel side (/unlink); returns the user it belonged to. */
    async unlinkAccount(channelType: string, channelUserId: string): Promise<string | null> {
      const { rows } = await db.query<{ user_id: string }>(
        'DELETE FROM user_channel_links WHERE channel_type = $1 AND channel_user_id = $2 RETURNING user_id',
        [channelType, channelUserId],
      );
      return rows[0]?.user_id ?? null;
    },
  };
}

export type ChannelLinks = ReturnType<typeof createChannelLinks>;
