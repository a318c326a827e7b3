import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../errors/index.js';
import { createIpMatcher } from '../ratelimit/client-key.js';
import { createMetrics, type Metrics } from './metrics.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

export interface MetricsPluginOptions {
  /** The instruments, when made before the plugin (the audit log reports sign-ins to them); default: new ones. */
  metrics?: Metrics;
  enabled: boolean;
  token: string;
  allowedIps: readonly string[];
}

/**
 * Decorates `app.metrics`, times every request by its route pattern (routeOptions.url: `/auth/session`, never the raw
 * URL, so ids and query strings cannot explode the label set), and serves GET /metrics when enabled.
 */
export const metricsPlugin = fp<MetricsPluginOptions>(
  async (app: FastifyInstance, options) => {
    const metrics = options.metrics ?? createMetrics();
    app.decorate('metrics', metrics);
    app.addHook('onResponse', (request, reply, done) => {
      metrics.httpDuration.observe(
        { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: reply.statusCode },
        reply.elapsedTime / 1000,
      );
      done();
    });
    if (!options.enabled) return;

    const matches = options.allowedIps.length > 0 ? createIpMatcher(options.allowedIps) : () => true;
    // Every address the request came through or names: the TCP peer, and each X-Forwarded-For entry whether or not
    // server.trust_proxy believes it. Behind a proxy on loopback the peer alone would admit the whole internet; with
    // trust_proxy true the client IP alone would be whatever the client wrote.
    const ipAllowed = (request: FastifyRequest) => {
      const forwarded = request.headers['x-forwarded-for'];
      const claimed = (Array.isArray(forwarded) ? forwarded.join(',') : (forwarded ?? '')).split(',');
      return [request.socket.remoteAddress ?? '', request.ip, ...claimed.map((a) => a.trim()).filter(Boolean)].every(
        (address) => matches(address),
      );
    };
    const expected = Buffer.from(`Bearer ${options.token}`);
    const tokenOk = (header: string | undefined) => {
      if (!options.token) return true;
      const given = Buffer.from(header ?? '');
      return given.length === expected.length && timingSafeEqual(given, expected);
    };

    app.get(
      '/metrics',
      {
        schema: {
          summary: 'Prometheus metrics (access limited by metrics.token and metrics.allowed_ips)',
          tags: ['monitoring'],
          security: [{ bearer: [] }],
          produces: ['text/plain'],
        },
      },
      async (request, reply) => {
        if (!ipAllowed(request)) throw new AppError('FORBIDDEN', 'Metrics are not served to this address.');
        if (!tokenOk(request.headers.authorization)) {
          throw new AppError(request.headers.authorization ? 'INVALID_TOKEN' : 'AUTH_REQUIRED');
        }
        reply.type(metrics.registry.contentType);
        return metrics.registry.metrics();
      },
    );
  },
  { name: 'metrics' },
);
