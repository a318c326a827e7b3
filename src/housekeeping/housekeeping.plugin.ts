import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { createExpiredRowsPurge, type PurgeCounts } from './expired-rows.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** One pass of the periodic purge of expired sessions and verification tokens (the timer calls this). */
    purgeExpiredRows(): Promise<PurgeCounts>;
  }
}

/** Hourly: a day's expired rows are a small batch, and nothing depends on a row being gone sooner. */
const INTERVAL_MS = 3600 * 1000;

/** The periodic purge of expired rows: an unref'd timer (it never keeps the process alive), stopped on close. */
export const housekeepingPlugin = fp(
  async (app: FastifyInstance) => {
    const purge = createExpiredRowsPurge(app.db);
    app.decorate('purgeExpiredRows', purge);
    const timer = setInterval(() => {
      purge().then(
        (counts) => {
          if (counts.sessions > 0 || counts.verification_tokens > 0) app.log.info(counts, 'expired rows purged');
        },
        (err: Error) => app.log.warn({ err: { message: err.message } }, 'purging expired rows failed'),
      );
    }, INTERVAL_MS);
    timer.unref();
    app.addHook('onClose', async () => clearInterval(timer));
  },
  { name: 'housekeeping' },
);
