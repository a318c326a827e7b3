import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The gateway's Prometheus metrics, on a registry of its own (several apps in one process, as in tests, do not
 * collide). Modules get it as `app.metrics` and update the instruments; GET /metrics renders the registry.
 */
export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  let openWebSockets = () => 0;
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'gateway_' });
  return {
    registry,
    /** method: password, passkey, ...; channel: rest, websocket, telegram; outcome: success, failure, locked. */
    loginAttempts: new Counter({
      name: 'gateway_login_attempts_total',
      help: 'Sign-in attempts by method, channel and outcome',
      labelNames: ['method', 'channel', 'outcome'] as const,
      registers: [registry],
    }),
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
