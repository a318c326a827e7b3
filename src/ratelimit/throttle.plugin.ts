import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { type AuditLog, restOrigin } from '../audit/index.js';
import type { Config } from '../config/index.js';
import type { Queryable } from '../db/index.js';
import { AppError } from '../errors/index.js';
import { betterAuthBodyField } from '../http/better-auth-body.js';
import type { Metrics } from '../metrics/metrics.js';
import { accountKey, createLoginThrottle, type LoginAttempt, type LoginThrottle } from './login-throttle.js';
import { createRateLimiter, requestPath } from './rate-limiter.js';
import { createRedisStore } from './redis.store.js';
import { createResilientStore } from './resilient.store.js';
import { type CounterStore, createMemoryStore, type LockoutPolicy } from './store.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Per-account failed-login throttle; any route verifying a password for an email reserves a slot first. */
    loginThrottle: LoginThrottle;
  }
  interface FastifyRequest {
    loginAttempt: LoginAttempt | null;
    /** The user whose pending 2FA sign-in this request to Better Auth's 2FA routes completes (read before it runs). */
    twoFactorUser: string | null;
  }
}

export interface ThrottlePluginOptions {
  config: Config;
  db: Queryable;
  audit: AuditLog;
  metrics: Metrics;
  /** Our JWT (sent back in X-Auth-Token after a Better Auth sign-in) -> its claims, unverified (we just minted it). */
  decodeToken(token: string): { sub?: string; sid?: string } | null;
  /** The user of the live 2FA sign-in challenge a Cookie header carries, or null (none, expired or used). */
  twoFactorChallengeUser(cookieHeader: string | undefined): Promise<string | null>;
}

interface ApiAuthEvent {
  /** second-factor: completes a password sign-in that answered a 2FA challenge (Better Auth's challenge cookie). */
  kind: 'login' | 'signup' | 'second-factor';
  method: string;
  secondFactor?: 'totp' | 'backup_code';
}

/**
 * Better Auth routes that sign in or sign up (the ones the mount serves): no route code of ours sees their outcome, so
 * this plugin audits them as our routes audit theirs. A password sign-in of a 2FA account answers the challenge
 * (`twoFactorRedirect`): the sign-in happens, and is recorded, when a code completes it on the two-factor routes.
 */
const API_AUTH_EVENTS: Record<string, ApiAuthEvent> = {
  '/api/auth/sign-in/email': { kind: 'login', method: 'password' },
  '/api/auth/sign-up/email': { kind: 'signup', method: 'password' },
  '/api/auth/two-factor/verify-totp': { kind: 'second-factor', method: 'password', secondFactor: 'totp' },
  '/api/auth/two-factor/verify-backup-code': {
    kind: 'second-factor',
    method: 'password',
    secondFactor: 'backup_code',
  },
};

/** Password sign-in routes whose body names an account: the lockout applies to each, whichever route is used. */
const PASSWORD_ROUTES = new Set(['/auth/login', '/api/auth/sign-in/email']);
/**
 * The other routes the mount serves whose body names an email (src/auth/mount.plugin.ts SERVED): capped as the sign-ins
 * are. Better Auth's schema has no cap, and an account signed up with a longer address could never sign in.
 */
const EMAIL_ROUTES = new Set(['/api/auth/sign-up/email']);

/**
 * Rate limits per client IP on every auth route (a rules table of path prefixes), and the per-account lockout on
 * password sign-ins. Counters are in memory, or in Redis when redis.url is set (shared by every process).
 */
export const throttlePlugin = fp<ThrottlePluginOptions>(
  async (app: FastifyInstance, { config, db, audit, metrics, decodeToken, twoFactorChallengeUser }) => {
    const store = await buildStore(config, app, metrics);
    app.addHook('onClose', () => store.close());

    const policy: LockoutPolicy = {
      maxFailures: config.lockout.max_failures,
      baseMs: config.lockout.base_lockout * 1000,
      factor: config.lockout.factor,
      maxMs: config.lockout.max_lockout * 1000,
      failureWindowMs: config.lockout.failure_window * 1000,
      forgetAfterMs: config.lockout.forget_after * 1000,
    };
    const throttle = createLoginThrottle({
      store,
      policy,
      async onLockout(account, lockedMs) {
        metrics.lockouts.inc();
        const { rows } = await db.query<{ id: string }>('SELECT id FROM users WHERE lower(email) = $1', [account]);
        await audit.record({
          event: 'lockout',
          userId: rows[0]?.id ?? null,
          details: { failures: policy.maxFailures, lockedSeconds: Math.ceil(lockedMs / 1000) },
        });
      },
    });
    app.decorate('loginThrottle', throttle);
    app.decorateRequest('loginAttempt', null);
    app.decorateRequest('twoFactorUser', null);

    if (config.rate_limit.enabled) {
      const limiter = createRateLimiter(store, config.rate_limit.rules);
      // Callback-style hooks in this plugin: a request no rule or lockout concerns passes without a promise.
      app.addHook('onRequest', (request, _reply, done) => {
        if (request.method === 'OPTIONS') return done(); // CORS preflights carry no credentials
        const path = requestPath(request.url);
        const rule = limiter.ruleFor(path);
        if (!rule || rule.max === 0) return done();
        limit(request, path).then(() => done(), done);
      });
      const limit = async (request: FastifyRequest, path: string) => {
        // The audit row (written once per window and client) is in before the 429 leaves: no lost or late rows.
        let audited: Promise<void> | undefined;
        try {
          await limiter.check(path, request.ip, ({ rule, firstOver }) => {
            metrics.rateLimited.inc({ rule: rule.prefix });
            if (firstOver) {
              audited = audit.record({
                event: 'rate_limit.hit',
                ...restOrigin(request),
                details: { rule: rule.prefix, max: rule.max, window: rule.window },
              });
            }
          });
        } finally {
          await audited;
        }
      };
    }

    app.addHook('preHandler', (request, _reply, done) => {
      if (request.method !== 'POST') return done();
      const path = requestPath(request.url);
      // Callback style throughout: a hook that returns a promise is also awaited by Fastify, which would run the rest
      // of the request twice (once per done).
      if (PASSWORD_ROUTES.has(path)) {
        reserve(request).then(() => done(), done);
      } else if (EMAIL_ROUTES.has(path)) {
        // An absent email is Better Auth's to refuse, in its own words.
        cappedEmail(request).then(() => done(), done);
      } else if (API_AUTH_EVENTS[path]?.kind === 'second-factor') {
        // Whose sign-in a code completes is read before Better Auth runs: a used challenge is gone after.
        twoFactorChallengeUser(request.headers.cookie).then((user) => {
          request.twoFactorUser = user;
          done();
        }, done);
      } else {
        done();
      }
    });
    const reserve = async (request: FastifyRequest) => {
      const email = await cappedEmail(request);
      if (email === null) throw new AppError('VALIDATION_FAILED', 'email is required', { field: 'email' });
      try {
        request.loginAttempt = await throttle.reserve(email);
      } catch (err) {
        metrics.loginAttempts.inc({ method: 'password', channel: 'rest', outcome: 'locked' });
        throw err;
      }
    };

    // Only a password sign-in (it holds a reserved attempt) or one of Better Auth's sign-in/up POSTs has work here.
    app.addHook('onSend', (request, reply, payload, done) => {
      if (!request.loginAttempt && request.method !== 'POST') return done(null, payload);
      settle(request, reply, payload).then(() => done(null, payload), done);
    });
    const settle = async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
      const attempt = request.loginAttempt;
      const status = reply.statusCode;
      const path = requestPath(request.url);
      if (attempt) {
        request.loginAttempt = null;
        if (status >= 200 && status < 300) await attempt.succeeded();
        // Only a wrong password counts toward the lockout: not a 401 for a bad bearer sent along (the mount's).
        else if (status === 401 && WRONG_PASSWORD.has(errorCodeOf(payload) ?? '')) await attempt.failed();
        else await attempt.released();
      }
      const api = API_AUTH_EVENTS[path];
      if (api && request.method === 'POST') await recordApiEvent(request, reply, payload, api);
    };
    // A request that ended without a reply (client gone, hook error): its slot must not stay taken.
    app.addHook('onResponse', (request, _reply, done) => {
      if (!request.loginAttempt) return done();
      request.loginAttempt.released().then(() => done(), done);
    });

    /** Better Auth answered one of its sign-in or sign-up routes: record it as our routes record theirs. */
    async function recordApiEvent(
      request: FastifyRequest,
      reply: FastifyReply,
      payload: unknown,
      api: ApiAuthEvent,
    ): Promise<void> {
      const status = reply.statusCode;
      const ok = status >= 200 && status < 300;
      if (api.kind === 'second-factor') return recordSecondFactor(request, reply, payload, ok, api);
      if (ok && api.kind === 'login' && twoFactorPending(payload)) return;
      const details = { method: api.method, api: 'better-auth' };
      if (!ok) {
        // Failures that are a verdict on this sign-in, in Better Auth's own body ({code}): a wrong password, or the
        // sign-in guard's refusal. Not what was refused before any credential was looked at (a malformed body, an
        // origin or IP refused, a bad bearer sent along), as /auth/login records none of those either.
        const code = api.kind === 'login' ? betterAuthCodeOf(payload) : null;
        const reason =
          code && WRONG_PASSWORD.has(code) ? 'INVALID_CREDENTIALS' : code && REFUSALS.has(code) ? code : null;
        if (reason) {
          await audit.record({ event: 'login.failure', ...restOrigin(request), details: { ...details, reason } });
        }
        return;
      }
      const token = reply.getHeader('x-auth-token');
      const claims = typeof token === 'string' ? decodeToken(token) : null;
      await audit.record({
        event: api.kind === 'login' ? 'login.success' : 'signup',
        userId: claims?.sub ?? userIdOf(payload),
        sessionId: claims?.sid ?? null,
        ...restOrigin(request),
        details,
      });
    }

    /**
     * A code sent to Better Auth's own 2FA routes, which the mount serves for a sign-in's challenge only (it strips
     * sessions there). Recorded as /auth/2fa/verify records it: a wrong code twofactor.failed, a locked account
     * lockout, a right one twofactor.used and, when it made the challenge user's session, login.success.
     */
    async function recordSecondFactor(
      request: FastifyRequest,
      reply: FastifyReply,
      payload: unknown,
      ok: boolean,
      api: ApiAuthEvent,
    ) {
      const userId = request.twoFactorUser;
      if (!userId) return; // no live challenge: Better Auth refuses without one
      const status = reply.statusCode;
      const at = { userId, ...restOrigin(request) };
      if (!ok) {
        const refusal = betterAuthCodeOf(payload);
        if (refusal === 'ACCOUNT_DISABLED' || refusal === 'IP_NOT_ALLOWED') {
          // A right code, and no session: the sign-in guard refused it (as /auth/2fa/verify records it).
          await audit.record({
            event: 'login.failure',
            ...at,
            details: { method: api.method, reason: refusal, api: 'better-auth' },
          });
        } else if (status === 429) {
          await audit.record({ event: 'lockout', ...at, details: { reason: 'TWO_FACTOR_LOCKED', api: 'better-auth' } });
        } else if (status < 500) {
          const reason = status === 401 ? 'TWO_FACTOR_INVALID_CODE' : 'REFUSED';
          await audit.record({ event: 'twofactor.failed', ...at, details: { reason, api: 'better-auth' } });
        }
        return;
      }
      const token = reply.getHeader('x-auth-token');
      const claims = typeof token === 'string' ? decodeToken(token) : null;
      const sessionId = claims?.sub === userId ? (claims.sid ?? null) : null;
      await audit.record({
        event: 'twofactor.used',
        ...at,
        sessionId,
        details: { method: api.secondFactor, api: 'better-auth' },
      });
      // A verification that was asked not to make a session (disableSession) is no sign-in.
      if (!sessionId) return;
      await audit.record({
        event: 'login.success',
        ...at,
        sessionId,
        details: { method: api.method, secondFactor: api.secondFactor, api: 'better-auth' },
      });
    }
  },
  { name: 'throttle', dependencies: ['errors'] },
);

async function buildStore(config: Config, app: FastifyInstance, metrics: Metrics): Promise<CounterStore> {
  const memory = createMemoryStore();
  if (!config.redis.url) return memory;
  let lastWarn = 0;
  // One warning per 10 s at most: a Redis outage must not flood the log at request rate.
  const warn = (err: Error, msg: string) => {
    if (Date.now() - lastWarn < 10_000) return;
    lastWarn = Date.now();
    app.log.warn({ err: { message: err.message } }, msg);
  };
  const redis = createRedisStore({ url: config.redis.url, onError: (err) => warn(err, 'redis connection error') });
  // Start with shared counters when Redis answers within 2 s; if not, start anyway (memory fallback) and heal later.
  if (!(await redis.ready(2000))) app.log.warn('redis not reachable at start: counters are per process until it is');
  return createResilientStore(redis, memory, (err) => {
    metrics.counterStoreFallbacks.inc();
    warn(err, 'redis unavailable: rate limits and lockouts use this process only');
  });
}

/**
 * The email of a sign-in body, read exactly as the code that checks the password reads it: the lockout must count the
 * account whose password is verified, not a decoy. Our routes hand over Fastify's parsed body; Better Auth's mount the
 * raw bytes, read as better-call reads them (betterAuthBodyField: what could be read two ways is refused first).
 */
async function emailOf(body: unknown, contentType: string | undefined): Promise<string | null> {
  const email = Buffer.isBuffer(body)
    ? await betterAuthBodyField(contentType, body, 'email')
    : (body as { email?: unknown } | null)?.email;
  return typeof email === 'string' && email.trim() !== '' ? accountKey(email) : null;
}

/** RFC 5321's cap on a path, as the Email schema of our routes has it. */
const MAX_EMAIL_LENGTH = 254;

/**
 * The email of a body, or null when it has none, refused (400 VALIDATION_FAILED) over MAX_EMAIL_LENGTH. Our routes'
 * schema caps it; Better Auth's does not: a sign-in's lockout key would be kept for the failure window, a sign-up's
 * account could never sign in.
 */
async function cappedEmail(request: FastifyRequest): Promise<string | null> {
  const email = await emailOf(request.body, request.headers['content-type']);
  if (email !== null && email.length > MAX_EMAIL_LENGTH) {
    throw new AppError('VALIDATION_FAILED', `email must be at most ${MAX_EMAIL_LENGTH} characters`, { field: 'email' });
  }
  return email;
}

/** A wrong password, as our routes (INVALID_CREDENTIALS) and Better Auth's (INVALID_EMAIL_OR_PASSWORD) say it. */
const WRONG_PASSWORD = new Set(['INVALID_CREDENTIALS', 'INVALID_EMAIL_OR_PASSWORD']);
/** The sign-in guard's refusals and the verification requirement, after the password was checked. */
const REFUSALS = new Set(['ACCOUNT_DISABLED', 'IP_NOT_ALLOWED', 'EMAIL_NOT_VERIFIED']);

function jsonOf(payload: unknown): unknown {
  try {
    const text = Buffer.isBuffer(payload) ? payload.toString('utf8') : typeof payload === 'string' ? payload : '';
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The code of a Better Auth error body (`{"code": ...}`): only Better Auth's own answers have it at the top. */
function betterAuthCodeOf(payload: unknown): string | null {
  const code = (jsonOf(payload) as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : null;
}

/** The error code of an answer in either format: ours (`{"error": {"code"}}`) or Better Auth's (`{"code"}`). */
function errorCodeOf(payload: unknown): string | null {
  const body = jsonOf(payload) as { code?: unknown; error?: { code?: unknown } } | null;
  const code = body?.error?.code ?? body?.code;
  return typeof code === 'string' ? code : null;
}

/** Better Auth's answer to a password sign-in of a 2FA account: the challenge, not yet a sign-in. */
function twoFactorPending(payload: unknown): boolean {
  return (jsonOf(payload) as { twoFactorRedirect?: unknown } | null)?.twoFactorRedirect === true;
}

function userIdOf(payload: unknown): string | null {
  const id = (jsonOf(payload) as { user?: { id?: unknown } } | null)?.user?.id;
  return typeof id === 'string' ? id : null;
}
