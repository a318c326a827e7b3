import type { Database } from '../db/index.js';

/** The channel schema.sql's trigger notifies on every deleted session row. */
export const SESSION_ENDED_CHANNEL = 'gateway_session_ended';

export interface SessionEnded {
  sessionId: string;
  userId: string;
}

export interface SessionEvents {
  /** Calls `handler` for every session that ends, in this process or any other on the same database. */
  onSessionEnded(handler: (event: SessionEnded) => void): () => void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Session-end events from PostgreSQL LISTEN/NOTIFY (fed by the sessions_ended trigger), fanned out in-process. */
export function createSessionEvents(db: Database, log: { warn(obj: object, msg: string): void }): SessionEvents {
  const handlers = new Set<(event: SessionEnded) => void>();
  let unlisten: (() => Promise<void>) | null = null;

  const dispatch = (payload: string) => {
    let event: SessionEnded;
    try {
      const parsed = JSON.parse(payload) as { sid?: unknown; uid?: unknown };
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
    async start() {
      unlisten ??= await db.listen(SESSION_ENDED_CHANNEL, dispatch);
    },
    async stop() {
      await unlisten?.();
      unlisten = null;
      handlers.clear();
    },
  };
}
