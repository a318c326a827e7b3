import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../errors/index.js';

/** Answered over plain HTTP anyway: load balancers and orchestrators probe health inside the network. */
const PLAIN_HTTP_ALLOWED = new Set(['/auth/health']);

/**
 * server.https_only: a request that arrived over plain HTTP is refused with 403 HTTPS_REQUIRED, whatever its method.
 * `request.protocol` is 'https' for a TLS socket, or per X-Forwarded-Proto only when the proxy is trusted
 * (server.trust_proxy), so a client cannot claim HTTPS itself.
 *
 * Refused rather than redirected: this is an API, and by the time a redirect is sent the bearer token, cookie or
 * password has already crossed the network in clear; a redirect would teach clients that this works. Refusing makes
 * the misconfiguration visible at once (OWASP REST Security: "do not redirect HTTP to HTTPS for APIs").
 */
export const httpsOnlyPlugin = fp(
  async (app: FastifyInstance) => {
    app.addHook('onRequest', (request, _reply, done) => {
      if (request.protocol === 'https' || PLAIN_HTTP_ALLOWED.has(request.url.split('?', 1)[0] ?? '')) return done();
      done(new AppError('HTTPS_REQUIRED'));
    });
  },
  { name: 'https-only', dependencies: ['errors'] },
);
