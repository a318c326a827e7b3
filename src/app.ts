import { availableParallelism } from 'node:os';
import fastifyJwt from '@fastify/jwt';
import type {} from '@fastify/swagger'; // route schema fields (summary, tags) for the OpenAPI document
import Fastify, { type FastifyReply, type FastifyServerOptions } from 'fastify';
import { accessPlugin } from './access/access.plugin.js';
import { createIpPolicy, type IpPolicy } from './access/ip-policy.js';
import { createSignInGuard } from './access/sign-in-guard.js';
import { settleAfterAnswer } from './account/deferred.js';
import {
  createAccountHooks,
  createAccountStore,
  createEmailVerification,
  createRecentAuth,
  createSecurityNotices,
  createSendLimit,
  type RecentAuth,
} from './account/index.js';
import { createAccountsStore, createAdminStore } from './accounts/accounts.store.js';
import { proveAddress } from './accounts/address-proof.js';
import { createDeviceStore, type DeviceStore, deviceKeyOf } from './accounts/devices.js';
import { signInMethodsPlugin } from './accounts/sign-in-methods.plugin.js';
import { type AuditLog, createAuditLog, restOrigin } from './audit/index.js';
import {
  type AccountHooks,
  type AuthEngine,
  betterAuthMount,
  betterAuthOpenApi,
  createAuthEngine,
  generateId,
  type MountedSession,
} from './auth/index.js';
import {
  type AuthContext,
  type Authenticator,
  createAuthenticator,
  createSessionEvents,
  createSessionStore,
  createTokenCodec,
  type SessionEvents,
  type SessionStore,
} from './authenticator/index.js';
import { createSessionCache, type SessionCache } from './authenticator/session-cache.js';
import { bindSessionCache } from './authenticator/session-cache.plugin.js';
import { channelsPlugin } from './channels/channels.plugin.js';
import { accountRoutes } from './channels/rest/account.routes.js';
import { adminRoutes } from './channels/rest/admin.routes.js';
import { auditRoutes } from './channels/rest/audit.routes.js';
import { authRoutes } from './channels/rest/auth.routes.js';
import { passkeyRoutes } from './channels/rest/passkeys.routes.js';
import { requireRecentAuth } from './channels/rest/require-recent-auth.js';
import { sessionsRoutes } from './channels/rest/sessions.routes.js';
import { twoFactorRoutes } from './channels/rest/two-factor.routes.js';
import { vendorRoutes } from './channels/rest/vendor.routes.js';
import { type Config, usesSecureCookies } from './config/index.js';
import { consolePlugin } from './console/console.plugin.js';
import { type Database, isUnavailableError } from './db/index.js';
import { docsPlugin } from './docs/docs.plugin.js';
import { createMailer, type Mailer } from './email/index.js';
import { AppError } from './errors/index.js';
import { housekeepingPlugin } from './housekeeping/housekeeping.plugin.js';
import { createClientErrorHandler, createExpectationHandler } from './http/client-errors.js';
import { errorsPlugin, render as renderError } from './http/errors.plugin.js';
import { httpsOnlyPlugin } from './http/https-only.plugin.js';
import { genReqId, lazyChildLogger, loggerOptions } from './http/logging.js';
import { nulGuardPlugin } from './http/nul-guard.plugin.js';
import { securityHeaders, securityPlugin } from './http/security.plugin.js';
import { closeDetachedAfter } from './http/upgrade-close.js';
import { createLicenseEvents, createLicenseResolver, type LicenseEvents } from './licenses/index.js';
import { createMetrics } from './metrics/metrics.js';
import { metricsPlugin } from './metrics/metrics.plugin.js';
import { createPasskeyService, type PasskeyService, relyingPartyOf } from './passkeys/index.js';
import { createHashProcess, createPasswordHasher, type PasswordHasher } from './passwords/index.js';
import { clientKey } from './ratelimit/client-key.js';
import { createOncePerWindow } from './ratelimit/once-per-window.js';
import { throttlePlugin } from './ratelimit/throttle.plugin.js';
import { VERSION } from './version.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    db: Database;
    authenticator: Authenticator;
    engine: AuthEngine;
    sessions: SessionStore;
    hasher: PasswordHasher;
    sessionEvents: SessionEvents;
    audit: AuditLog;
    mailer: Mailer;
    passkeys: PasskeyService;
    /** Sensitive operations: requireRecentAuth(app.recentAuth) after requireAuth. */
    recentAuth: RecentAuth;
    sessionCache: SessionCache;
    /** License changes from any process (trigger on user_licenses): refresh open sockets' limits. */
    licenseEvents: LicenseEvents;
    /** Devices; isTrusted(userId, key): does a device skip two-factor prompts (the password sign-in asks in SQL). */
    devices: DeviceStore;
    ipPolicy: IpPolicy;
  }
}

export interface BuildOptions {
  config: Config;
  /** An open, migrated database. The app does not close it: its owner (server.ts, a test) does. */
  db: Database;
  /** Override Fastify's logger (tests pass a stream to assert on log lines). */
  logger?: FastifyServerOptions['logger'];
}

/**
 * Builds the gateway: infrastructure (errors, security headers, CORS, JWT), then the auth engine, then the
 * Authenticator, then the channels. Never listens: server.ts does, and tests use inject or listen themselves.
 */
export async function buildApp({ config, db, logger }: BuildOptions) {
  // The security headers of every answer, also of those written where no hook runs (frameworkErrors, client errors).
  const baseHeaders = securityHeaders(usesSecureCookies(config));
  const app = Fastify({
    logger: logger ?? loggerOptions(config.log.level),
    genReqId,
    childLoggerFactory: lazyChildLogger,
    bodyLimit: config.server.body_limit,
    // Fastify accepts a hop count too; its typings lag behind.
    trustProxy: config.server.trust_proxy as boolean | string,
    // While closing, the hook below answers in the gateway's envelope (Fastify's own 503 has neither a code nor the
    // request id, Retry-After or security headers).
    return503OnClosing: false,
    // A body must arrive within 5 minutes (then 408 REQUEST_TIMEOUT and the connection closes), or a client trickling
    // one byte at a time would hold its socket forever: Fastify sets Node's requestTimeout itself, to 0 (off) unless
    // told. Headers have Node's headersTimeout (60 s).
    requestTimeout: 300_000,
    // Errors the router raises before any route (a path parameter over maxParamLength, a malformed URL) use the
    // same JSON envelope as everything else instead of Fastify's default body, which echoes the path.
    frameworkErrors: (err, request, reply) => {
      const { status, body } = renderError(err);
      request.log.info({ code: body.error.code, status }, 'request refused');
      // The hook's reply is typed for no route at all; the raw send is what it is.
      const answer = reply as unknown as FastifyReply;
      // No hook runs here: an upgrade request refused this early is closed from here (see upgrade-close.ts).
      closeDetachedAfter(answer);
      answer.headers(baseHeaders).status(status).type('application/json; charset=utf-8').send(body);
    },
    // A request Node cannot parse (a malformed header or chunk, headers over the limit) never reaches a route: the
    // same envelope and security headers, written on the socket, and no raw request bytes in the log.
    clientErrorHandler: createClientErrorHandler(baseHeaders),
    ajv: { customOptions: { coerceTypes: false, removeAdditional: true } },
  });
  // An Expect header other than 100-continue never reaches a route either: the same envelope and headers (417).
  app.server.on('checkExpectation', createExpectationHandler(baseHeaders, app.log));
  // The API speaks JSON only: a text/plain body is 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain');
  // Hooks on every request are callback-style, not async: on the hot path (a cached session check costs tens of
  // microseconds) each promise an async hook creates is a measurable share.
  // Set when the close begins (SIGTERM): a request arriving after it, on a kept-alive connection, is answered 503
  // SERVER_BUSY with Retry-After and Connection: close, so the client retries on another instance.
  let closingSince = 0;
  app.addHook('preClose', (done) => {
    closingSince = Date.now();
    done();
  });
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    closeDetachedAfter(reply);
    if (closingSince !== 0) {
      // Before the security plugin's hook, which an error here skips: its headers too.
      reply.headers(baseHeaders).header('connection', 'close');
      done(new AppError('SERVER_BUSY', 'The server is shutting down; try again.', { retryAfter: 1 }));
      return;
    }
    done();
  });

  const origins = [...new Set([new URL(config.server.base_url).origin, ...config.server.trusted_origins])];
  // Hashes at once: the core count; twice that when they run at lower priority, where they only take idle CPU and a
  // queued one per core keeps a core from idling while the event loop hands out the next. The child still runs only
  // one thread per core: the extra hashes wait in its pool's queue, since argon2 (memory-hard) on more threads than
  // cores loses throughput (measured here: 70 verifies/s on 4 threads, 83 on 2, 50 in flight on 2 cores).
  const { nice, max_concurrent: maxConcurrent } = config.auth.argon2;
  const hashConcurrency = maxConcurrent || availableParallelism() * (nice > 0 ? 2 : 1);
  const hasher = createPasswordHasher(
    {
      memoryCost: config.auth.argon2.memory_cost,
      timeCost: config.auth.argon2.time_cost,
      parallelism: config.auth.argon2.parallelism,
    },
    {
      maxLength: config.auth.password.max_length,
      concurrency: hashConcurrency,
      maxQueue: config.auth.argon2.max_queue,
      runner:
        nice > 0
          ? createHashProcess({
              nice,
              threads: Math.min(hashConcurrency, availableParallelism()),
              onLost: (reason) =>
                app.log.error(
                  { reason },
                  'hash process lost: the hashes it held answered 503; the next starts a new one',
                ),
            })
          : undefined,
    },
  );
  app.addHook('onClose', async () => hasher.close());

  await app.register(errorsPlugin);
  await app.register(nulGuardPlugin);
  await app.register(securityPlugin, {
    origins,
    https: usesSecureCookies(config),
  });
  await app.register(fastifyJwt, {
    secret: config.auth.secret,
    sign: { algorithm: 'HS256' },
    verify: { algorithms: ['HS256'] },
  });

  // Account emails need the mailer and the audit log, which come later: Better Auth calls these only per request.
  let accountHooks: AccountHooks | null = null;
  const lateHooks: AccountHooks = {
    sendVerificationEmail: (user) => (accountHooks as AccountHooks).sendVerificationEmail(user),
    existingUserSignUp: (user) => (accountHooks as AccountHooks).existingUserSignUp(user),
    sendPasswordReset: (user, token) => (accountHooks as AccountHooks).sendPasswordReset(user, token),
    passwordReset: (user) => (accountHooks as AccountHooks).passwordReset(user),
  };
  const metrics = createMetrics();
  const mailer = createMailer({
    from: config.email.from,
    smtpUrl: config.email.smtp_url,
    outboxDir: config.email.outbox_dir,
    log: app.log,
  });
  app.decorate('mailer', mailer);
  app.addHook('onClose', async () => mailer.close());
  // Security notices, a few per address per interval (the verification resend's): an owner hears of each change made
  // together (two-factor on, then a passkey), and whoever registered an address without holding it (nothing proves it
  // by default) cannot have the gateway flood it.
  const noticeEmails = createSendLimit(db, 'security-notice', config.auth.email_verification_resend_interval, 3);
  const notices = createSecurityNotices({
    db,
    mailer,
    appName: config.email.app_name,
    limit: noticeEmails,
    log: app.log,
  });
  const audit = createAuditLog(db, app.log, (entry) => {
    metrics.observeAudit(entry);
    notices.observe(entry);
  });
  const ipPolicy = createIpPolicy(config.ip_restrictions);
  const devices = createDeviceStore(db);
  const signInGuard = createSignInGuard({ db, ipPolicy, audit, adminEmails: config.admin.emails });
  const engine = createAuthEngine({
    config,
    db,
    hasher,
    trustedOrigins: origins,
    logger: app.log,
    accountHooks: lateHooks,
    sessionGuard: {
      beforeSession: (session) => signInGuard.beforeSession(session),
      afterSession: ({ headers, ...session }) =>
        signInGuard.afterSession({ ...session, deviceKey: headers ? deviceKeyOf(headers) : null }),
    },
  });
  const sessions = createSessionStore(db, { log: app.log });
  app.addHook('onClose', () => sessions.close());
  const sessionCache = createSessionCache({
    maxEntries: config.auth.session_cache.max_entries,
    ttlMs: config.auth.session_cache.ttl * 1000,
  });
  const ipRefusedOnce = createOncePerWindow();
  const authenticator = createAuthenticator({
    tokens: createTokenCodec(app.jwt, { cacheSize: config.auth.session_cache.max_entries }),
    sessions,
    licenses: createLicenseResolver(config.licenses),
    cookieSession: (headers) => engine.sessionIdFromHeaders(toHeaders(headers)),
    refreshCookieSession: (headers) => engine.refreshCookieSession(toHeaders(headers)),
    session: {
      expiresIn: config.auth.session.expires_in,
      updateAge: config.auth.session.update_age,
      idleTimeout: config.auth.session.idle_timeout,
    },
    cache: sessionCache,
    ipPolicy,
    // Every refusal is a 403, but a row only once per user, client and reason a minute: GET /auth/session is exempt
    // from the rate limits, so a token used from a refused address would otherwise write a row per request.
    async onIpRefused({ reason, ...event }) {
      if (!ipRefusedOnce.first(`${event.userId ?? event.sessionId}|${clientKey(event.ip)}|${reason}`)) return;
      await audit.record({ event: 'ip.refused', ...event, details: { reason } });
    },
  });

  app.decorate('config', config);
  app.decorate('db', db);
  app.decorate('engine', engine);
  app.decorate('sessions', sessions);
  app.decorate('authenticator', authenticator);
  app.decorate('hasher', hasher);
  const sessionEvents = createSessionEvents(db, app.log);
  await sessionEvents.start();
  app.decorate('sessionEvents', sessionEvents);
  app.addHook('onClose', () => sessionEvents.stop());
  app.decorate('sessionCache', sessionCache);
  bindSessionCache(app, sessionCache, sessionEvents);
  app.decorate('audit', audit);
  app.decorate('devices', devices);
  app.decorate('ipPolicy', ipPolicy);
  const licenseEvents = createLicenseEvents(db, createLicenseResolver(config.licenses), app.log);
  await licenseEvents.start();
  app.decorate('licenseEvents', licenseEvents);
  app.addHook('onClose', () => licenseEvents.stop());
  app.decorateRequest('auth', null);
  // Before every route: @fastify/swagger builds the OpenAPI document from the routes registered after it.
  await app.register(docsPlugin, {
    version: VERSION,
    baseUrl: config.server.base_url,
    betterAuthDocument: () => betterAuthOpenApi(engine.betterAuth),
  });

  // Before every route: metrics time all of them, HTTPS and the rate limits guard all of them.
  await app.register(metricsPlugin, {
    metrics,
    enabled: config.metrics.enabled,
    token: config.metrics.token,
    allowedIps: config.metrics.allowed_ips,
  });
  if (config.server.https_only === true) await app.register(httpsOnlyPlugin);
  await app.register(throttlePlugin, {
    config,
    db,
    audit: app.audit,
    metrics: app.metrics,
    decodeToken: (token) => app.jwt.decode<{ sub?: string; sid?: string }>(token),
    async twoFactorChallengeUser(cookieHeader) {
      const challenge = engine.twoFactor.challengeOfRequest(cookieHeader);
      return challenge ? engine.twoFactor.challengeUser(challenge) : null;
    },
  });
  await app.register(accessPlugin, {
    ipPolicy,
    audit,
    secureCookies: usesSecureCookies(config),
  });

  await app.register(betterAuthMount, {
    engine,
    baseUrl: config.server.base_url,
    sessionFromJwt: async (token, ip) => mountedSession(await authenticator.authenticateToken(token, 'rest', ip)),
    admitSession: async (sessionId, ip) =>
      mountedSession(await authenticator.authenticateSession(sessionId, 'rest', ip)),
    async jwtForSessionToken(token) {
      const session = await sessions.findByToken(token);
      return session ? authenticator.issueToken(session.userId, session.id, session.expiresAt) : null;
    },
    async signedOut({ userId, sessionId }, request) {
      // Better Auth answers a sign-out with success even when deleting the session failed (it only logs that): the
      // session is deleted here too (a no-op once Better Auth's delete worked), so no logout is recorded for a
      // session that still works; a failure here fails the request.
      await sessions.delete(sessionId);
      await audit.record({ event: 'logout', userId, sessionId, ...restOrigin(request) });
    },
  });

  const recentAuth = createRecentAuth({
    db,
    windowSeconds: config.auth.recent_auth_window,
    checkCode: (userId, code) => engine.twoFactor.checkCode(userId, code),
  });
  app.decorate('recentAuth', recentAuth);
  await app.register(signInMethodsPlugin);
  await app.register(housekeepingPlugin);
  await app.register(authRoutes, {
    config,
    engine,
    authenticator,
    sessions,
    audit: app.audit,
    anonymous: app.anonymousUsers,
    recentAuth,
    sendVerificationEmail: (user) => lateHooks.sendVerificationEmail(user),
    version: VERSION,
    async health() {
      try {
        await db.query('SELECT 1');
        return { kind: db.kind, reachable: true };
      } catch (err) {
        if (!isUnavailableError(err)) app.log.error({ err }, 'health check query failed');
        return { kind: db.kind, reachable: false };
      }
    },
  });

  const rp = relyingPartyOf(config);
  const passkeys = createPasskeyService({
    db,
    rp,
    audit: app.audit,
    log: app.log,
    newId: generateId,
    createSession: (userId, meta) => engine.createSession(userId, meta),
    freshSessionSeconds: config.auth.recent_auth_window,
  });
  app.decorate('passkeys', passkeys);
  app.log.info({ rpID: rp.rpID, origins: rp.origins, rpName: rp.rpName }, 'passkeys: relying party');
  await app.register(vendorRoutes);
  // Reset emails, one per address per interval (the verification resend's, the same kind of limit on the same inbox):
  // /auth/password/forgot's, and the resend's password choice for an unverified account.
  const resetEmails = createSendLimit(db, 'password-reset', config.auth.email_verification_resend_interval);
  const verification = createEmailVerification({
    db,
    mailer,
    log: app.log,
    baseUrl: config.server.base_url,
    appName: config.email.app_name,
    ttlSeconds: config.auth.email_verification_ttl,
    resendIntervalSeconds: config.auth.email_verification_resend_interval,
    sendPasswordChoice: async (email) => {
      await resetEmails.run(email, () => engine.requestPasswordReset(email, new Headers()));
    },
  });
  accountHooks = createAccountHooks({
    mailer,
    audit: app.audit,
    addressProven: async (userId) => {
      // Better Auth's reset hook has no request: the channel only, as the reset's own audit rows.
      const proof = {
        method: 'password_reset',
        origin: { channel: 'rest', ip: null, userAgent: null },
        audit: app.audit,
      };
      await db.transaction((tx) => proveAddress(tx, userId, { ...proof, keepPassword: true }));
    },
    verification,
    notices,
    log: app.log,
    baseUrl: config.server.base_url,
    appName: config.email.app_name,
    resetPage: config.auth.password_reset_page,
    resetTtlSeconds: config.auth.password_reset_ttl,
  });
  const accounts = createAccountStore(db, hasher);
  await app.register(passkeyRoutes, {
    passkeys,
    authenticator,
    sessions,
    recentAuth: requireRecentAuth(recentAuth),
    sessionExpiresIn: config.auth.session.expires_in,
  });
  await app.register(accountRoutes, {
    config,
    engine,
    authenticator,
    audit: app.audit,
    verification,
    accounts,
    recentAuth,
    notices,
    loginThrottle: app.loginThrottle,
    resetEmails,
  });
  await app.register(twoFactorRoutes, {
    config,
    engine,
    authenticator,
    sessions,
    audit: app.audit,
    recentAuth,
    hasher,
    loginThrottle: app.loginThrottle,
    passwordHash: (userId) => accounts.passwordHash(userId),
  });
  await app.register(channelsPlugin);
  await app.register(consolePlugin, { authenticator, baseUrl: config.server.base_url });

  await app.register(auditRoutes, { audit: app.audit, authenticator });
  const admin = createAdminStore(db);
  await app.register(sessionsRoutes, {
    authenticator,
    accounts: createAccountsStore(db, sessions.flushUses, config.auth.session.idle_timeout),
    devices,
    ipPolicy,
    audit,
    trustedDeviceDays: config.auth.trusted_device_days,
    recentAuth,
    forgetUser: (userId) => sessionCache.forgetUser(userId),
  });
  await app.register(adminRoutes, {
    config,
    db,
    authenticator,
    admin,
    accounts: createAccountsStore(db, sessions.flushUses, config.auth.session.idle_timeout),
    licenses: createLicenseResolver(config.licenses),
    audit,
    ipPolicy,
    recentAuth,
    forgetUser: (userId) => sessionCache.forgetUser(userId),
  });
  await admin.promoteAdmins(config.admin.emails);

  // Registered last, so that it runs first of the onClose hooks (Fastify runs them in reverse order), once the server
  // has finished its requests: what they do after their answer (an email a 202 promised) ends before the mailer and
  // the pool close. Within half of server.shutdown_timeout, counted from the start of the close: the other half is for
  // the rest of it (the bot, the pool) before the process gives up.
  app.addHook('onClose', async () => {
    const deadline = (closingSince || Date.now()) + (config.server.shutdown_timeout * 1000) / 2;
    if (!(await settleAfterAnswer(deadline))) {
      app.log.warn({}, 'closing without waiting longer for work after an answer (an email on its way)');
    }
  });

  return app;
}

/**
 * The session an authentication names, for the Better Auth mount (null without one: a link has no session), with the
 * token of an extension it made, which the mount hands back.
 */
function mountedSession(auth: AuthContext | null): MountedSession | null {
  return auth?.sessionId ? { sessionId: auth.sessionId, userId: auth.userId, renewedToken: auth.renewedToken } : null;
}

function toHeaders(headers: Record<string, string | string[] | undefined>): Headers {
  const out = new Headers();
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  return out;
}
