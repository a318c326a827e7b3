import { randomUUID } from 'node:crypto';
import type { Database } from '../db/index.js';

/**
 * The channel schema.sql's triggers notify on: every deleted session row ({"sid","uid"}), and every change to a user's
 * identity or license ({"uid","user":true}: users UPDATE, user_licenses INSERT/UPDATE/DELETE). One channel keeps the
 * two kinds in commit order, which sync() relies on.
 */
export const SESSION_ENDED_CHANNEL = 'gateway_session_ended';

export interface SessionEnded {
  sessionId: string;
  userId: string;
}

export interface SessionEvents {
  /** Calls `handler` for every session that ends, in this process or any other on the same database. */
  onSessionEnded(handler: (event: SessionEnded) => void): () => void;
  /** Calls `handler` when a user's row or license changes, in this process or any other on the same database. */
  onUserChanged(handler: (userId: string) => void): () => void;
  /** Whether events are being received (false while the LISTEN connection is down: events are then lost). */
  readonly listening: boolean;
  /** Calls `handler(false)` when the LISTEN connection drops and `handler(true)` once it is back. */
  onListening(handler: (up: boolean) => void): () => void;
  /**
   * Resolves once this process has received every session-end event committed before the call (NOTIFY delivers in
   * commit order, so a marker sent now arrives after them). Rejects after `timeoutMs` or without a listener.
   */
  sync(timeoutMs?: number): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Session-end events from PostgreSQL LISTEN/NOTIFY (fed by the sessions_ended trigger), fanned out in-process. */
export function createSessionEvents(db: Database, log: { warn(obj: object, msg: string): void }): SessionEvents {
  const handlers = new Set<(event: SessionEnded) => void>();
  const userHandlers = new Set<(userId: string) => void>();
  let unlisten: (() => Promise<void>) | null = null;
  const syncWaiters = new Map<string, () => void>();

  const dispatch = (payload: string) => {
    let event: SessionEnded;
    try {
      const parsed = JSON.parse(payload) as { sid?: unknown; uid?: unknown; sync?: unknown; user?: unknown };
      if (typeof parsed.sync === 'string') {
        syncWaiters.get(parsed.sync)?.();
        return;
      }
      if (parsed.user === true && typeof parsed.uid === 'string') {
        for (const handler of userHandlers) handler(parsed.uid);
        return;
      }
      if (typeof parsed.sid !== 'string' || typeof parsed.uid !== 'string') return;
      event = { sessionId: parsed.sid, userId: parsed.uid };
    } catch {
      log.warn({ channel: SESSION_ENDED_CHANNEL }, 'ignored a malformed session event');
      return;
    }
    for (const handler of handlers) handler(event);
  };

  return {
    onSessionEnded(handler) {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    onUserChanged(handler) {
      userHandlers.add(handler);
      return () => userHandlers.delete(handler);
    },
    get listening() {
      return unlisten !== null && db.listening;
    },
    onListening: (handler) => db.onListenerChange(handler),
    async sync(timeoutMs = 2000) {
      if (!unlisten || !db.listening) throw new Error('session events are not being received');
      const marker = randomUUID();
      let timer: NodeJS.Timeout | undefined;
      const arrived = new Promise<void>((resolve, reject) => {
        syncWaiters.set(marker, resolve);
        timer = setTimeout(() => reject(new Error('session events sync timed out')), timeoutMs);
      });
      arrived.catch(() => {}); // awaited below; this only keeps an early timeout from counting as unhandled
      try {
        await db.notify(SESSION_ENDED_CHANNEL, JSON.stringify({ sync: marker }));
        await arrived;
      } finally {
        clearTimeout(timer);
        syncWaiters.delete(marker);
      }
    },
    async start() {
      unlisten ??= await db.listen(SESSION_ENDED_CHANNEL, dispatch);
    },
    async stop() {
      await unlisten?.();
      unlisten = null;
      handlers.clear();
      userHandlers.clear();
    },
  };
}
