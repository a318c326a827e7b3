import type { Database } from '../db/index.js';
import type { License, LicenseResolver, LicenseRow } from './licenses.js';

/** The channel schema.sql's user_licenses trigger notifies on every insert, update and delete. */
export const LICENSE_CHANGED_CHANNEL = 'gateway_license_changed';

export interface LicenseChanged {
  userId: string;
  /** The license now in force (read once per event per process, after the change committed). */
  license: License;
}

export interface LicenseEvents {
  /**
   * Calls `handler` whenever a user's license row changes, in this process or any other on the same database (admin
   * API, CLI, psql). Sockets re-read the license (a new authentication or a lookup) to apply the new limits.
   */
  onLicenseChanged(handler: (event: LicenseChanged) => void): () => void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** A failed read of a changed license is retried after 0.5 s, then twice as long each time, up to every 4 s. */
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 4000;

interface Queue {
  tail: Promise<void>;
  latest: number;
  wake: (() => void) | null;
}

/** License-change events from PostgreSQL LISTEN/NOTIFY (fed by the user_licenses_changed trigger), fanned out. */
export function createLicenseEvents(
  db: Database,
  resolve: LicenseResolver,
  log: { warn(obj: object, msg: string): void },
): LicenseEvents {
  const handlers = new Set<(event: LicenseChanged) => void>();
  let unlisten: (() => Promise<void>) | null = null;
  let running = false;

  /**
   * Per user, the delivery of the latest event (the tail of a chain). Each read starts after the previous one for the
   * same user was delivered: reads on different pool connections can answer out of order, and the last event handed
   * over must be the license now in force (the WebSocket channel applies each one). Dropped when idle, so the map holds
   * only users with an event in flight. `latest` numbers the user's events; `wake` cuts short a read's wait to retry.
   */
  const queues = new Map<string, Queue>();

  const dispatch = (payload: string) => {
    const userId = userOf(payload);
    if (userId === null || handlers.size === 0) return;
    let queue = queues.get(userId);
    if (!queue) {
      queue = { tail: Promise.resolve(), latest: 0, wake: null };
      queues.set(userId, queue);
    }
    const q = queue;
    const seq = ++q.latest;
    // A read waiting to be retried gives way at once: this event's read answers with the license now in force.
    q.wake?.();
    const delivered = q.tail.then(() => deliver(userId, q, seq));
    q.tail = delivered;
    void delivered.then(() => {
      if (q.tail === delivered) queues.delete(userId);
    });
  };

  const userOf = (payload: string): string | null => {
    try {
      const { uid } = JSON.parse(payload) as { uid?: unknown };
      return typeof uid === 'string' ? uid : null;
    } catch {
      log.warn({ channel: LICENSE_CHANGED_CHANNEL }, 'ignored a malformed license event');
      return null;
    }
  };

  /**
   * Reads the user's license and hands it to the handlers; never rejects. A failed read (a statement or connect
   * timeout, a failover) is retried with backoff: a lost change would leave open sockets with a license the user no
   * longer has. Given up when the events stop, or when a newer event for the user is queued (its own read gives the
   * license now in force).
   */
  const deliver = async (userId: string, queue: Queue, seq: number) => {
    if (handlers.size === 0) return;
    const superseded = () => !running || handlers.size === 0 || queue.latest !== seq;
    let event = await read(userId);
    for (let delay = RETRY_FIRST_MS; event === null; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      if (superseded()) return;
      await pause(queue, delay);
      if (superseded()) return;
      event = await read(userId);
    }
    for (const handler of handlers) {
      try {
        handler(event);
      } catch (err) {
        log.warn({ err: { message: (err as Error).message } }, 'a license-changed handler threw');
      }
    }
  };

  /** The user's license now, or null when it could not be read (logged). */
  const read = async (userId: string): Promise<LicenseChanged | null> => {
    try {
      const { rows } = await db.query<LicenseRow>(
        'SELECT license_type, features, resource_limits FROM user_licenses WHERE user_id = $1',
        [userId],
      );
      return { userId, license: resolve(rows[0] ?? null) };
    } catch (err) {
      log.warn({ err: { message: (err as Error).message }, userId }, 'could not read a changed license; retrying');
      return null;
    }
  };

  /** Waits `ms`, or less if a newer event for the user or stop() calls `queue.wake`. */
  const pause = (queue: Queue, ms: number) =>
    new Promise<void>((done) => {
      const timer = setTimeout(() => queue.wake?.(), ms);
      timer.unref();
      queue.wake = () => {
        clearTimeout(timer);
        queue.wake = null;
        done();
      };
    });

  return {
    onLicenseChanged(handler) {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    async start() {
      running = true;
      unlisten ??= await db.listen(LICENSE_CHANGED_CHANNEL, dispatch);
    },
    async stop() {
      running = false;
      for (const queue of queues.values()) queue.wake?.();
      await unlisten?.();
      unlisten = null;
      handlers.clear();
    },
  };
}
