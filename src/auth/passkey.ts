import { passkey } from '@better-auth/passkey';
import { APIError, createAuthMiddleware } from 'better-auth/api';
import type { Database } from '../db/index.js';
import { ERROR_CATALOGUE } from '../errors/index.js';
import { createPasskeyStore, type RelyingParty } from '../passkeys/index.js';

/**
 * Better Auth's passkey plugin on the design's `passkeys` table, with our relying party (rpID, name, origins), so its
 * own /api/auth/passkey/* routes keep working next to the design's routes (src/passkeys/), which share the rows.
 * Its delete route gets the same last-sign-in-method guard as DELETE /auth/passkeys/:id.
 */
export function passkeyPlugin(rp: RelyingParty, db: Database) {
  const store = createPasskeyStore(db);
  const plugin = passkey({
    rpID: rp.rpID,
    rpName: rp.rpName,
    origin: rp.origins,
    schema: {
      passkey: {
        modelName: 'passkeys',
        fields: {
          publicKey: 'credential_public_key',
          userId: 'user_id',
          credentialID: 'credential_id',
          deviceType: 'device_type',
          backedUp: 'backed_up',
          createdAt: 'created_at',
        },
      },
    },
  });
  return {
    ...plugin,
    hooks: {
      before: [
        {
          matcher: (ctx: { path?: string }) => ctx.path === '/passkey/delete-passkey',
          handler: createAuthMiddleware(async (ctx) => {
            // The bearer plugin's cookie translation is not applied yet when plugin hooks run, so the caller's
            // session is read here from the raw header; refusing is the only thing it can cause.
            const userId = await sessionUser(db, ctx.headers ?? new Headers());
            const id = (ctx.body as { id?: unknown } | undefined)?.id;
            if (!userId || typeof id !== 'string') return;
            const own = (await store.listForUser(userId)).some((p) => p.id === id);
            if (own && (await store.isLastSignInMethod(userId, id))) {
              const { message } = ERROR_CATALOGUE.PASSKEY_LAST_SIGN_IN_METHOD;
              throw new APIError('CONFLICT', { code: 'PASSKEY_LAST_SIGN_IN_METHOD', message });
            }
          }),
        },
      ],
    },
  };
}

const SESSION_COOKIE = /(?:^|;\s*)(?:__Secure-)?better-auth\.session_token=([^;.]*)/;

/** The user of the Better Auth session named by a bearer token or the session cookie (signature not needed here). */
async function sessionUser(db: Database, headers: Headers): Promise<string | null> {
  const bearer = /^Bearer\s+([^\s.]+)/i.exec(headers.get('authorization') ?? '')?.[1];
  const cookie = SESSION_COOKIE.exec(headers.get('cookie') ?? '')?.[1];
  const token = bearer ?? (cookie ? decodeURIComponent(cookie) : undefined);
  if (!token) return null;
  const { rows } = await db.query<{ user_id: string }>(
    'SELECT user_id FROM sessions WHERE token = $1 AND expires_at > now()',
    [token],
  );
  return rows[0]?.user_id ?? null;
}
