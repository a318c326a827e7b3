import type { Database } from '../db/index.js';
import type { NewSession } from './engine.js';

/** The session Better Auth just created, by its opaque token (Better Auth's API answers with the token only). */
export async function sessionOf(db: Database, token: string): Promise<NewSession> {
  const { rows } = await db.query<{ id: string; user_id: string; expires_at: Date }>(
    'SELECT id, user_id, expires_at FROM sessions WHERE token = $1',
    [token],
  );
  const row = rows[0];
  if (!row) throw new Error('session created by Better Auth was not found');
  return { userId: row.user_id, sessionId: row.id, expiresAt: new Date(row.expires_at) };
}
