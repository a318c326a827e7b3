import { type Static, Type as T } from '@sinclair/typebox';

/**
 * The one schema of the gateway's configuration. config.yaml, the secrets file and the environment are merged into
 * this shape, checked against it (unknown keys are errors), and frozen before anything else starts.
 */

// Unknown keys are errors; an absent section takes its defaults.
const Strict = { additionalProperties: false, default: {} } as const;
const Seconds = (def: number, description: string) => T.Integer({ minimum: 1, default: def, description });

const RateLimitRule = T.Object(
  {
    // Matched against the request path; the longest matching prefix wins, so later routes are covered by config.
    prefix: T.String({ minLength: 1, pattern: '^/' }),
    // Requests per window per client IP (IPv6: per /64); 0: not limited.
    max: T.Integer({ minimum: 0 }),
    window: Seconds(60, 'window length'),
    // This path only, not the paths under it (e.g. /auth/session without /auth/sessions).
    exact: T.Optional(T.Boolean()),
    // Rules naming one bucket share one budget per client IP (same max and window), for routes that do the same job
    // (ours and Better Auth's sign-in): apart, alternating them doubles it. No `/`, so it never equals a prefix.
    bucket: T.Optional(T.String({ pattern: '^[a-z0-9-]{1,32}$' })),
  },
  Strict,
);

/**
 * Per client IP. Auth routes that do not exist yet are covered by their prefix's rule or a catch-all. Our routes and
 * Better Auth's that do the same job (sign-in, sign-up, 2FA codes, password reset) share a bucket.
 */
export const DEFAULT_RATE_LIMIT_RULES: RateLimitRule[] = [
  { prefix: '/auth/', max: 300, window: 60 },
  { prefix: '/auth/health', max: 0, window: 60 },
  // The bearer check: a client (every tab of a web app, every office behind one NAT address) calls it on each page and
  // poll, it needs a valid token to learn anything, and a cached check costs less than counting it (a Redis round trip
  // with redis.url set). Its siblings under /auth/sessions stay under the catch-all.
  { prefix: '/auth/session', max: 0, window: 60, exact: true },
  { prefix: '/auth/login', max: 20, window: 60, bucket: 'sign-in' },
  { prefix: '/auth/register', max: 20, window: 3600, bucket: 'sign-up' },
  { prefix: '/auth/password/', max: 10, window: 900, bucket: 'reset' },
  { prefix: '/auth/2fa/', max: 20, window: 300, bucket: '2fa' },
  { prefix: '/auth/channels/telegram/link-code', max: 20, window: 300 },
  { prefix: '/auth/channels/', max: 30, window: 300 },
  { prefix: '/auth/passkey/', max: 60, window: 60 },
  { prefix: '/auth/email/verify', max: 20, window: 900 },
  { prefix: '/auth/email/verify/resend', max: 5, window: 900 },
  { prefix: '/auth/magic-link', max: 10, window: 900 },
  // The link's page and its button: their own budget, so opening links does not use up asking for them.
  { prefix: '/auth/magic-link/verify', max: 30, window: 900 },
  { prefix: '/auth/oauth/', max: 60, window: 60 },
  { prefix: '/auth/anonymous', max: 10, window: 3600 },
  { prefix: '/auth/account/delete', max: 10, window: 900 },
  // The admin API: an administrator's console or script, and any signed-in account probing it (every refusal writes an
  // audit row, so an unlimited loop would grow the audit table without bound).
  { prefix: '/admin/', max: 120, window: 60 },
  { prefix: '/api/auth/', max: 300, window: 60 },
  { prefix: '/api/auth/sign-in/', max: 20, window: 60, bucket: 'sign-in' },
  { prefix: '/api/auth/sign-up/', max: 20, window: 3600, bucket: 'sign-up' },
  { prefix: '/api/auth/passkey/', max: 60, window: 60 },
  { prefix: '/api/auth/reset-password', max: 10, window: 900, bucket: 'reset' },
  { prefix: '/api/auth/two-factor/', max: 20, window: 300, bucket: '2fa' },
];

const LicenseType = T.Object(
  {
    features: T.Record(T.String(), T.Unknown(), { default: {} }),
    resource_limits: T.Record(T.String(), T.Unknown(), { default: {} }),
  },
  Strict,
);

export const ConfigSchema = T.Object(
  {
    server: T.Object(
      {
        // Loaded without a trailing slash (load.ts): code appends paths to it.
        base_url: T.String({ minLength: 1, default: 'http://localhost:3000' }),
        host: T.String({ minLength: 1, default: '0.0.0.0' }),
        port: T.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
        trusted_origins: T.Array(T.String({ minLength: 1 }), { default: [] }),
        // false: use the socket address; true: trust X-Forwarded-For from anyone (only behind a proxy you own);
        // a number: trust that many hops; a string: comma-separated addresses/CIDRs of trusted proxies.
        trust_proxy: T.Union([T.Boolean(), T.Integer({ minimum: 0 }), T.String()], { default: false }),
        body_limit: T.Integer({ minimum: 1024, maximum: 10485760, default: 65536 }),
        shutdown_timeout: Seconds(10, 'seconds to finish in-flight requests after SIGTERM'),
        // Unset: true when NODE_ENV=production. Secure cookies, HSTS, plain-HTTP requests refused (403 HTTPS_REQUIRED).
        https_only: T.Optional(T.Boolean()),
      },
      Strict,
    ),
    database: T.Object(
      {
        // Empty: the embedded PostgreSQL (PGlite) under data_dir.
        url: T.String({ default: '' }),
        pool_max: T.Integer({ minimum: 1, maximum: 500, default: 10 }),
        connect_timeout: Seconds(5, 'seconds to wait for a PostgreSQL connection'),
        statement_timeout: Seconds(10, 'seconds a single statement may run'),
        // The LISTEN connection (session-end events) and the Telegram polling lock; empty: url. Must reach PostgreSQL in
        // session mode (not PgBouncer's transaction mode, where neither survives the transaction).
        listen_url: T.String({ default: '' }),
        // Our queries as server-side prepared statements (parsed and planned once per connection). Off behind a
        // transaction-mode pooler that does not track them (PgBouncer before 1.21, or max_prepared_statements = 0).
        prepared_statements: T.Boolean({ default: true }),
      },
      Strict,
    ),
    data_dir: T.String({ minLength: 1, default: './data' }),
    log: T.Object(
      {
        level: T.Union(
          ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => T.Literal(l)),
          { default: 'info' },
        ),
      },
      Strict,
    ),
    auth: T.Object(
      {
        secret: T.String({ default: '' }),
        session: T.Object(
          {
            expires_in: Seconds(604800, 'session and token lifetime (7 days)'),
            update_age: Seconds(86400, 'a session used after this age is extended (24 hours)'),
            // 0: off. A session unused for longer is refused (last use is recorded at most once a minute). At most a
            // year: the database adds it to timestamps as an int of seconds.
            idle_timeout: T.Integer({ minimum: 0, maximum: 31_536_000, default: 0, description: 'seconds' }),
          },
          Strict,
        ),
        password: T.Object(
          {
            min_length: T.Integer({ minimum: 8, maximum: 128, default: 8 }),
            // Longer passwords are refused before hashing: argon2 cost grows with input only slightly, but an
            // unbounded body would still be hashed.
            max_length: T.Integer({ minimum: 16, maximum: 1024, default: 128 }),
          },
          Strict,
        ),
        argon2: T.Object(
          {
            // OWASP Password Storage Cheat Sheet minimum for argon2id: m=19 MiB, t=2, p=1.
            memory_cost: T.Integer({ minimum: 1024, default: 19456, description: 'KiB' }),
            time_cost: T.Integer({ minimum: 1, default: 2 }),
            parallelism: T.Integer({ minimum: 1, maximum: 16, default: 1 }),
            // Hashes running at once (0: the core count, twice that with nice > 0) and waiting beyond that; more get
            // 503 SERVER_BUSY.
            max_concurrent: T.Integer({ minimum: 0, maximum: 256, default: 0 }),
            max_queue: T.Integer({ minimum: 0, maximum: 100000, default: 64 }),
            // Hash in a child process at this lower CPU priority (nice 1-19), so a login flood takes only the CPU
            // that requests leave idle; 0: hash in the gateway process at equal priority.
            nice: T.Integer({ minimum: 0, maximum: 19, default: 10 }),
          },
          Strict,
        ),
        // Account emails, password reset, two-factor and re-authentication (README: "Email verification", ...).
        require_email_verification: T.Boolean({ default: false }),
        email_verification_ttl: Seconds(86400, 'lifetime of an email verification link (24 hours)'),
        email_verification_resend_interval: Seconds(60, 'per account: at most one verification email this often'),
        password_reset_ttl: Seconds(3600, 'lifetime of a password reset link (1 hour)'),
        // The web page (relative to server.base_url, or absolute) that reads ?token= and POSTs /auth/password/reset.
        password_reset_page: T.String({ minLength: 1, default: '/reset-password' }),
        recent_auth_window: Seconds(600, 'sensitive operations need a session younger than this, or a TOTP code'),
        two_factor: T.Object(
          {
            issuer: T.String({ minLength: 1, default: 'Auth Gateway' }),
            challenge_ttl: Seconds(300, 'lifetime of the pending login after a correct password'),
            lockout_threshold: T.Integer({ minimum: 1, default: 10, description: 'wrong codes in a row' }),
            lockout_duration: Seconds(900, 'how long 2FA stays locked after lockout_threshold wrong codes'),
          },
          { ...Strict, default: {} },
        ),
        // Validated sessions kept in memory per process so a bearer check needs no database read. Session ends empty
        // it at once in every process (LISTEN/NOTIFY); ttl is the safety net for changes no event announces.
        session_cache: T.Object(
          {
            ttl: T.Integer({ minimum: 0, maximum: 3600, default: 30, description: 'seconds; 0 disables the cache' }),
            max_entries: T.Integer({ minimum: 0, default: 10000, description: 'sessions kept; 0 disables' }),
          },
          { ...Strict, default: {} },
        ),
        // How long a device marked trusted stays trusted: POST /auth/login skips the two-factor prompt on it.
        trusted_device_days: T.Integer({ minimum: 1, maximum: 400, default: 30 }),
      },
      Strict,
    ),
    licenses: T.Object(
      {
        default_type: T.String({ minLength: 1, default: 'free' }),
        types: T.Record(T.String({ minLength: 1 }), LicenseType, {
          default: { free: { features: {}, resource_limits: {} } },
        }),
      },
      Strict,
    ),
    email: T.Object(
      {
        from: T.String({ minLength: 3, default: 'Auth Gateway <no-reply@localhost>' }),
        // smtp://user:pass@host:587 or smtps://...; empty: .eml files in outbox_dir (development).
        smtp_url: T.String({ default: '' }),
        // Empty: <data_dir>/outbox.
        outbox_dir: T.String({ default: '' }),
        // The product name in account emails' subjects and text.
        app_name: T.String({ minLength: 1, default: 'Auth Gateway' }),
      },
      Strict,
    ),
    redis: T.Object(
      {
        // redis://[:password@]host:6379/0; empty: counters in this process's memory. REDIS_URL overrides.
        url: T.String({ default: '' }),
      },
      { ...Strict, default: {} },
    ),
    rate_limit: T.Object(
      {
        enabled: T.Boolean({ default: true }),
        rules: T.Array(RateLimitRule, { default: DEFAULT_RATE_LIMIT_RULES }),
      },
      { ...Strict, default: {} },
    ),
    lockout: T.Object(
      {
        // Failed password sign-ins per account (normalized email, known or not) before it is locked.
        max_failures: T.Integer({ minimum: 1, maximum: 1000, default: 5 }),
        base_lockout: Seconds(60, 'first lockout'),
        factor: T.Number({ minimum: 1, maximum: 10, default: 2 }),
        max_lockout: Seconds(3600, 'longest lockout'),
        failure_window: Seconds(900, 'failures are forgotten this long after the first of a series'),
        forget_after: Seconds(86400, 'past lockouts stop lengthening the next one after this'),
      },
      { ...Strict, default: {} },
    ),
    metrics: T.Object(
      {
        enabled: T.Boolean({ default: true }),
        // When set, GET /metrics needs Authorization: Bearer <token>. Belongs in the secrets file (or METRICS_TOKEN).
        token: T.String({ default: '' }),
        // When not empty, only these addresses/CIDRs may read /metrics. Both conditions apply when both are set.
        allowed_ips: T.Array(T.String({ minLength: 1 }), { default: ['127.0.0.1', '::1'] }),
      },
      { ...Strict, default: {} },
    ),
    dev_user: T.Object(
      {
        // Never created when NODE_ENV=production, whatever this says.
        enabled: T.Boolean({ default: true }),
        email: T.String({ minLength: 3, default: 'dev@example.com' }),
        // From the secrets file only: load.ts refuses it in config.yaml.
        password: T.String({ default: '' }),
        license: T.String({ minLength: 1, default: 'pro' }),
      },
      Strict,
    ),
    passkeys: T.Object(
      {
        rp_name: T.String({ minLength: 1, maxLength: 64, default: 'Dexorder AI' }),
        // WebAuthn's own recommended ceremony timeout is 5 minutes; a challenge older than that is refused.
        challenge_ttl: T.Integer({ minimum: 10, maximum: 3600, default: 300, description: 'seconds' }),
      },
      Strict,
    ),
    oauth: T.Object(
      {
        // Front-end URL that receives ?code=<one-time code> (or ?error=<CODE>) after an OAuth or magic-link sign-in;
        // empty: /auth/oauth/complete answers JSON instead of redirecting.
        redirect_url: T.String({ default: '' }),
        code_ttl: Seconds(60, 'lifetime of the one-time code POST /auth/oauth/exchange accepts'),
        // A signed-in user may link a provider account whose (verified) email differs from theirs.
        link_different_emails: T.Boolean({ default: true }),
        google: T.Object(
          { client_id: T.String({ default: '' }), client_secret: T.String({ default: '' }) },
          { ...Strict, default: {} },
        ),
        github: T.Object(
          { client_id: T.String({ default: '' }), client_secret: T.String({ default: '' }) },
          { ...Strict, default: {} },
        ),
        // Generic OpenID Connect providers by id (used in URLs: /auth/oauth/<id>); the secret sits in the secrets file.
        oidc: T.Record(
          T.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' }),
          T.Object(
            {
              issuer: T.String({ minLength: 1 }),
              client_id: T.String({ minLength: 1 }),
              // Optional, not defaulted: TypeBox fills no defaults inside a Record (src/auth/sign-in-methods.ts does).
              client_secret: T.Optional(T.String()),
              name: T.Optional(T.String({ description: 'shown to users; default: the id' })),
              scopes: T.Optional(T.Array(T.String(), { description: 'default: openid, email, profile' })),
              token_auth: T.Optional(
                T.Union([T.Literal('client_secret_basic'), T.Literal('client_secret_post')], {
                  description: 'default: client_secret_basic',
                }),
              ),
            },
            Strict,
          ),
          { default: {} },
        ),
      },
      { ...Strict, default: {} },
    ),
    magic_link: T.Object(
      {
        enabled: T.Boolean({ default: true }),
        expires_in: Seconds(600, 'lifetime of a magic link (10 minutes)'),
        // false: an unknown address gets no email (the answer is the same); true: the link creates the account.
        create_accounts: T.Boolean({ default: false }),
        // At most max_per_window links per address per window seconds (a small built-in limit).
        max_per_window: T.Integer({ minimum: 1, default: 3 }),
        window: Seconds(900, 'seconds over which max_per_window counts'),
      },
      { ...Strict, default: {} },
    ),
    anonymous: T.Object(
      {
        enabled: T.Boolean({ default: true }),
        max_age: Seconds(2592000, 'anonymous users older than this are deleted (30 days)'),
        cleanup_interval: Seconds(3600, 'seconds between cleanup runs'),
      },
      { ...Strict, default: {} },
    ),
    websocket: T.Object(
      {
        // Seconds (fractions allowed) a new socket has to authenticate before it is closed with 4408.
        auth_timeout: T.Number({ exclusiveMinimum: 0, maximum: 300, default: 10 }),
        // Frames larger than this close the socket with 1009; one chat message is one frame.
        max_frame_bytes: T.Integer({ minimum: 256, maximum: 1048576, default: 16384 }),
        // Seconds between pings; a socket that has not answered the previous ping by the next one is dropped.
        heartbeat_interval: T.Number({ exclusiveMinimum: 0, maximum: 3600, default: 30 }),
        // Sockets that may wait for their auth frame at once (per process); more are closed with 1013.
        max_unauthenticated: T.Integer({ minimum: 1, default: 1000 }),
      },
      Strict,
    ),
    chat: T.Object(
      {
        // Empty: the EchoChatService. Otherwise each message is POSTed here and the reply streamed back.
        upstream_url: T.String({ default: '' }),
        upstream_timeout: Seconds(60, 'seconds an upstream reply may take in total'),
      },
      Strict,
    ),
    telegram: T.Object(
      {
        // Empty: the bot is off (logged at start).
        bot_token: T.String({ default: '' }),
        mode: T.Union([T.Literal('polling'), T.Literal('webhook')], { default: 'polling' }),
        // Required in webhook mode: Telegram sends it in X-Telegram-Bot-Api-Secret-Token.
        webhook_secret: T.String({ default: '' }),
        // Empty: <server.base_url>/telegram/webhook.
        webhook_url: T.String({ default: '' }),
        // Empty: https://api.telegram.org; set it for a self-hosted Bot API server.
        api_root: T.String({ default: '' }),
        // Seconds between attempts of a standby process to take over polling (PostgreSQL advisory lock).
        standby_retry: T.Number({ exclusiveMinimum: 0, maximum: 3600, default: 5 }),
        // Seconds any Bot API call may take (grammY's own default is 500); polling long-polls for half of it, <= 30 s.
        api_timeout: T.Integer({ minimum: 2, maximum: 600, default: 60 }),
        // Seconds a Login Widget signature stays acceptable after its auth_date.
        widget_max_age: Seconds(600, 'seconds a Login Widget auth_date stays fresh'),
      },
      Strict,
    ),
    // CIDRs (IPv4 or IPv6; a bare address is a /32 or /128). deny wins; a non-empty allow admits only its ranges.
    ip_restrictions: T.Object(
      {
        allow: T.Array(T.String({ minLength: 1 }), { default: [] }),
        deny: T.Array(T.String({ minLength: 1 }), { default: [] }),
      },
      { ...Strict, default: {} },
    ),
    admin: T.Object(
      {
        // Users with these emails get role 'admin' once their address is verified: at start (when they exist) and at
        // each sign-in.
        emails: T.Array(T.String({ minLength: 3 }), { default: [] }),
      },
      { ...Strict, default: {} },
    ),
  },
  Strict,
);

export type RateLimitRule = Static<typeof RateLimitRule>;

export type RawConfig = Static<typeof ConfigSchema>;

export interface Config extends RawConfig {
  /** NODE_ENV === 'production'. */
  readonly production: boolean;
  /** Where each value came from, for error messages: the config file and the secrets file. */
  readonly files: { readonly config: string; readonly secrets: string };
  /** True when auth.secret was generated for development and kept under data_dir. */
  readonly devSecret: boolean;
}
