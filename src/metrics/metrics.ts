import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { AuditEntry } from '../audit/index.js';

/** A sign-in method as the audit rows name it, fit for a label value (our own constants; anything else is 'other'). */
const METHOD = /^[a-z_]{1,32}$/;
/** Failure reasons that are the gateway's doing, not the credentials' (`error`: an unexpected one). */
const NO_VERDICT = new Set(['SERVER_BUSY', 'DATABASE_UNAVAILABLE', 'INTERNAL_ERROR', 'error']);

/**
 * The gateway's Prometheus metrics, on a registry of its own (several apps in one process, as in tests, do not
 * collide). Modules get it as `app.metrics` and update the instruments; GET /metrics renders the registry.
 */
export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  let openWebSockets = () => 0;
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'gateway_' });
  const loginAttempts = new Counter({
    name: 'gateway_login_attempts_total',
    help: 'Sign-in attempts by method, channel and outcome',
    labelNames: ['method', 'channel', 'outcome'] as const,
    registers: [registry],
  });
  return {
    registry,
    /**
     * method: password, passkey, magic_link, oauth, telegram_widget; channel: rest; outcome: success, failure, locked.
     * Successes and failures are counted from the audit log's login events (observeAudit); `locked` (refused before
     * the password is looked at) where the lockout refuses.
     */
    loginAttempts,
    /**
     * The audit log's observer: each login.success / login.failure event is one attempt, whichever route made it,
     * and a passkey sign-in refused on our ceremony routes (passkey.refused, ceremony authentication) a failed one.
     * A failure the gateway caused (a full hash queue, the database away, a bug) is no verdict on the credentials
     * and is not counted: an outage must not read as a wave of failed logins.
     */
    observeAudit(entry: AuditEntry): void {
      const passkeySignIn = entry.event === 'passkey.refused' && entry.details?.ceremony === 'authentication';
      if (entry.event !== 'login.success' && entry.event !== 'login.failure' && !passkeySignIn) return;
      if (NO_VERDICT.has(String(entry.details?.reason))) return;
      const method = passkeySignIn ? 'passkey' : entry.details?.method;
      loginAttempts.inc({
        method: typeof method === 'string' && METHOD.test(method) ? method : 'other',
        channel: entry.channel ?? 'rest',
        outcome: entry.event === 'login.success' ? 'success' : 'failure',
      });
    },
    lockouts: new Counter({
      name: 'gateway_lockouts_total',
      help: 'Accounts locked after too many failed sign-ins',
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'gateway_rate_limited_total',
      help: 'Requests refused by a per-IP rate limit, by rule prefix',
      labelNames: ['rule'] as const,
      registers: [registry],
    }),
    /** Read at each scrape from what the WebSocket channel hands to countWebSockets (nothing per connection). */
    wsConnections: new Gauge({
      name: 'gateway_websocket_connections',
      help: 'Open WebSocket connections',
      registers: [registry],
      collect() {
        this.set(openWebSockets());
      },
    }),
    /** The WebSocket channel names its count of open sockets (authenticated or not). */
    countWebSockets(count: () => number): void {
      openWebSockets = count;
    },
    httpDuration: new Histogram({
      name: 'gateway_http_request_duration_seconds',
      help: 'Request latency by method, route pattern and status code',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    counterStoreFallbacks: new Counter({
      name: 'gateway_counter_store_fallbacks_total',
      help: 'Rate-limit/lockout operations served from process memory because Redis failed',
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
