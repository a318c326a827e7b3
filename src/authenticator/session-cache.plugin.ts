import type { FastifyInstance } from 'fastify';
import type { SessionCache } from './session-cache.js';
import type { SessionEvents } from './session-events.js';

/** Methods that cannot end sessions; any other may (sign-out, revocation, password change or reset, deletion). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * A route that changes state but never ends a session nor changes what a cached authentication holds (a password
     * sign-in) sets this: its answer need not wait for the session events (one NOTIFY round trip on every sign-in
     * otherwise).
     */
    endsNoSession?: boolean;
  }
  interface FastifyRequest {
    /**
     * Set by a GET that may have changed what cached authentications hold (Better Auth's OAuth callback, which can
     * turn an anonymous user into a registered one): its answer waits for the events as a POST's does.
     */
    changedSessions: boolean;
  }
}

/**
 * Keeps the validated-session cache truthful:
 * - every session end, in any process, drops its entry (LISTEN/NOTIFY through the sessions DELETE trigger);
 * - every change to a user's row or license drops that user's entries (the users / user_licenses triggers);
 * - the cache is flushed and bypassed while the LISTEN connection is down, and resumes once it is back;
 * - a state-changing request in this process waits, before its response leaves, until this process has received the
 *   events of everything committed so far. So "sign out, then use the token" on the same process is refused even
 *   though the NOTIFY travels through PostgreSQL. If that cannot be confirmed, the cache is flushed instead.
 */
export function bindSessionCache(app: FastifyInstance, cache: SessionCache, events: SessionEvents): void {
  app.decorateRequest('changedSessions', false);
  const offEnded = events.onSessionEnded(({ sessionId }) => cache.forget(sessionId));
  // A changed email, name, license, role or disabled flag must show on the user's next request.
  const offUser = events.onUserChanged((userId) => cache.forgetUser(userId));
  const offListening = events.onListening((up) => {
    cache.setEnabled(up);
    app.log.warn(
      { listening: up },
      up ? 'session events restored: session cache on' : 'session events lost: session cache flushed and off',
    );
  });
  cache.setEnabled(events.listening);

  // Callback-style: a GET (the hot path) passes without creating a promise.
  app.addHook('onSend', (request, _reply, payload, done) => {
    if (
      (SAFE_METHODS.has(request.method) && !request.changedSessions) ||
      cache.idle ||
      request.routeOptions.config.endsNoSession
    ) {
      return done(null, payload);
    }
    events.sync().then(
      () => done(null, payload),
      () => {
        cache.clear();
        done(null, payload);
      },
    );
  });
  app.addHook('onClose', async () => {
    offEnded();
    offUser();
    offListening();
    cache.setEnabled(false);
  });
}
