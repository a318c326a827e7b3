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

/** License-change events from PostgreSQL LISTEN/NOTIFY (fed by the user_licenses_changed trigger), fanned out. */
export function createLicenseEvents(
  db: Database,
  resolve: LicenseResolver,
  log: { warn(obj: object, msg: string): void },
): LicenseEvents {
  const handlers = new Set<(event: LicenseChanged) => void>();
  let unlisten: (() => Promise<void>) | null = null;

  const dispatch = async (payload: string) => {
    let userId: string;
    try {
      const parsed = JSON.parse(payload) as { uid?: unknown };
      if (typeof parsed.uid !== 'string') return;
      userId = parsed.uid;
    } catch {
      log.warn({ channel: LICENSE_CHANGED_CHANNEL }, 'ignored a malformed license event');
      return;
    }
    if (handlers.size === 0) return;
    let event: LicenseChanged;
    try {
      const { rows } = await db.query<LicenseRow>(
        'SELECT license_type, features, resource_limits FROM user_licenses WHERE user_id = $1',
        [userId],
      );
      event = { userId, license: resolve(rows[0] ?? null) };
    } catch (err) {
      log.warn({ err: { message: (err as Error).message } }, 'could not read a changed license');
      return;
    }
    for (const handler of handlers) {
      try {
        handler(event);
      } catch (err) {
        log.warn({ err: { message: (err as Error).message } }, 'a license-changed handler threw');
      }
    }
  };

  return {
    onLicenseChanged(handler) {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    async start() {
      unlisten ??= await db.listen(LICENSE_CHANGED_CHANNEL, (payload) => void dispatch(payload));
    },
    async stop() {
      await unlisten?.();
      unlisten = null;
      handlers.clear();
    },
  };
}
