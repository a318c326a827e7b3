import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Type as T, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import ipaddr from 'ipaddr.js';
import { type Document, isPair, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml';
import { invalidCidr } from '../access/ip-policy.js';
import { EMAIL_MAX_LENGTH, isNewEmailAddress } from '../accounts/email-address.js';
import { createIpMatcher } from '../ratelimit/client-key.js';
import { type Config, ConfigSchema, type RawConfig } from './schema.js';

/** A configuration problem: one line that names the key and where it came from. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** The value shipped in secrets.example.yaml: refused in production. */
export const EXAMPLE_SECRET = 'YOUR-SUPER-SECRET-KEY-HERE';
const MIN_SECRET_BYTES = 32;

const SecretsSchema = T.Object(
  {
    auth: T.Optional(T.Object({ secret: T.Optional(T.String()) }, { additionalProperties: false })),
    dev_user: T.Optional(T.Object({ password: T.Optional(T.String()) }, { additionalProperties: false })),
    redis: T.Optional(T.Object({ url: T.Optional(T.String()) }, { additionalProperties: false })),
    metrics: T.Optional(T.Object({ token: T.Optional(T.String()) }, { additionalProperties: false })),
    oauth: T.Optional(
      T.Object(
        {
          google: T.Optional(T.Object({ client_secret: T.Optional(T.String()) }, { additionalProperties: false })),
          github: T.Optional(T.Object({ client_secret: T.Optional(T.String()) }, { additionalProperties: false })),
          oidc: T.Optional(
            T.Record(T.String(), T.Object({ client_secret: T.Optional(T.String()) }, { additionalProperties: false })),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    telegram: T.Optional(
      T.Object(
        { bot_token: T.Optional(T.String()), webhook_secret: T.Optional(T.String()) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

/** Environment variables and the config key each one sets. Documented in the README's configuration table. */
export const ENV_OVERRIDES: ReadonlyArray<
  readonly [env: string, key: string, kind: 'string' | 'int' | 'bool' | 'bool-or-string']
> = [
  ['PORT', 'server.port', 'int'],
  ['HOST', 'server.host', 'string'],
  ['BASE_URL', 'server.base_url', 'string'],
  ['DATABASE_URL', 'database.url', 'string'],
  ['DATABASE_LISTEN_URL', 'database.listen_url', 'string'],
  ['DATA_DIR', 'data_dir', 'string'],
  ['AUTH_SECRET', 'auth.secret', 'string'],
  ['LOG_LEVEL', 'log.level', 'string'],
  ['SMTP_URL', 'email.smtp_url', 'string'],
  ['TELEGRAM_BOT_TOKEN', 'telegram.bot_token', 'string'],
  ['TELEGRAM_WEBHOOK_SECRET', 'telegram.webhook_secret', 'string'],
  ['TELEGRAM_API_ROOT', 'telegram.api_root', 'string'],
  ['TELEGRAM_MODE', 'telegram.mode', 'string'],
  ['CHAT_UPSTREAM_URL', 'chat.upstream_url', 'string'],
  ['REDIS_URL', 'redis.url', 'string'],
  ['METRICS_TOKEN', 'metrics.token', 'string'],
  // A container is configured through its environment: behind a TLS proxy it needs both, on plain HTTP neither.
  ['HTTPS_ONLY', 'server.https_only', 'bool'],
  ['TRUST_PROXY', 'server.trust_proxy', 'bool-or-string'],
];

type Env = Record<string, string | undefined>;
type Tree = Record<string, unknown>;

export interface LoadOptions {
  env?: Env;
  /** Working directory against which relative paths resolve. */
  cwd?: string;
}

/**
 * Loads config.yaml, the secrets file and the environment, validates the result against one schema and freezes it.
 * Throws ConfigError with a single line on any problem; nothing is started before this returns.
 */
export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const production = env.NODE_ENV === 'production';
  const configFile = resolve(cwd, env.CONFIG_FILE || 'config.yaml');
  const secretsFile = resolve(cwd, env.SECRETS_FILE || 'secrets.yaml');

  const origin = new Map<string, string>();
  const tree = readYaml(configFile, Boolean(env.CONFIG_FILE));
  const secrets = readYaml(secretsFile, Boolean(env.SECRETS_FILE));
  check(SecretsSchema, secrets, () => secretsFile);
  refuseSecretsInConfig(tree, configFile, secretsFile);
  recordOrigins(tree, '', configFile, origin);
  recordOrigins(secrets, '', secretsFile, origin);
  deepMerge(tree, secrets);

  for (const [name, key, kind] of ENV_OVERRIDES) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    let value: unknown = raw;
    if (kind === 'int') {
      if (!/^\d+$/.test(raw)) throw new ConfigError(`${key}: must be an integer (environment variable ${name})`);
      value = Number(raw);
    } else if (raw === 'true' || raw === 'false') {
      if (kind !== 'string') value = raw === 'true';
    } else if (kind === 'bool') {
      throw new ConfigError(`${key}: must be true or false (environment variable ${name})`);
    }
    setPath(tree, key, value);
    origin.set(key, `environment variable ${name}`);
  }

  const config = Value.Default(ConfigSchema, tree) as RawConfig;
  check(ConfigSchema, config, (key) => originOf(origin, key) ?? configFile);
  validateSemantics(config, (key) => originOf(origin, key) ?? configFile);

  // Paths are appended to it (Better Auth's base URL, the OAuth completion URL, links in emails): one spelling only, or
  // "http://host/" makes "http://host//auth/...", which the gateway refuses. Scheme and host as a browser writes them
  // ("HTTPS://Auth.Example.com:443/" is https://auth.example.com), as code compares them with startsWith('https:').
  const base = new URL(config.server.base_url);
  config.server.base_url = `${base.origin}${base.pathname}`.replace(/\/+$/, '');
  // Compared as strings with the Origin header, which has no trailing slash and the same normal form.
  config.server.trusted_origins = config.server.trusted_origins.map((o) => new URL(o).origin);
  config.data_dir = resolve(cwd, config.data_dir);
  config.email.outbox_dir = config.email.outbox_dir
    ? resolve(cwd, config.email.outbox_dir)
    : join(config.data_dir, 'outbox');
  config.server.https_only ??= production;
  validateNetworks(config, (key) => originOf(origin, key) ?? configFile);
  const devSecret = settleSecret(
    config,
    production,
    (key) => originOf(origin, key) ?? (key === 'data_dir' ? configFile : secretsFile),
  );
  if (!Object.hasOwn(config.licenses.types, config.licenses.default_type)) {
    throw new ConfigError(
      `licenses.default_type: "${config.licenses.default_type}" is not a key of licenses.types (${configFile})`,
    );
  }

  return deepFreeze({ ...config, production, devSecret, files: { config: configFile, secrets: secretsFile } });
}

/**
 * Keys the README puts in the secrets file only. config.yaml is committed and shown around; a password in it was
 * taken without a word.
 */
function refuseSecretsInConfig(tree: Tree, configFile: string, secretsFile: string): void {
  const devUser = tree.dev_user;
  if (devUser && typeof devUser === 'object' && Object.hasOwn(devUser, 'password')) {
    throw new ConfigError(
      `dev_user.password: not allowed in ${configFile}; put it in the secrets file (${secretsFile}, SECRETS_FILE)`,
    );
  }
}

/**
 * One YAML file as a tree. A file that does not parse is reported by position and the parser's error code, never by
 * the parser's message: that quotes the source, and a line of the secrets file is a secret (an unquoted value that
 * starts with `*` is read as an alias, and "Unresolved alias ...: <the rest of the password>" was printed).
 */
function readYaml(file: string, required: boolean): Tree {
  if (!existsSync(file)) {
    if (required) throw new ConfigError(`${file}: file not found`);
    return {};
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'read error'})`);
  }
  const lines = new LineCounter();
  // Warnings (an unknown tag, say) would go to stderr through process.emitWarning, quoting their line: never shown.
  const doc = parseDocument(text, { lineCounter: lines, logLevel: 'error' });
  const [error] = doc.errors;
  if (error) {
    const pos = error.linePos?.[0];
    throw new ConfigError(
      `${file}: not valid YAML${pos ? ` at line ${pos.line}, column ${pos.col}` : ''} (${error.code})`,
    );
  }
  let parsed: unknown;
  try {
    parsed = doc.toJS();
  } catch {
    // Aliases are expanded here, not by the parser, and these errors carry neither a code nor a position.
    throw aliasError(doc, file, lines);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`${file}: must be a YAML mapping`);
  return parsed as Tree;
}

/** The error for a document whose aliases cannot be expanded: the first alias with no anchor before it, by key. */
function aliasError(doc: Document, file: string, lines: LineCounter): ConfigError {
  let found: { key: string; offset: number } | undefined;
  visit(doc, {
    Alias(_, alias, path) {
      if (alias.resolve(doc)) return;
      // The key is the pair's key scalar, or the item's index in a sequence, from the root down.
      const chain = [...path, alias];
      const key = chain.flatMap((node, i) => {
        const next = chain[i + 1];
        if (isPair(node) && next !== node.key) return [String(isScalar(node.key) ? node.key.value : node.key)];
        if (isSeq(node) && next) return [String(node.items.indexOf(next as never))];
        return [];
      });
      found = { key: key.join('.') || '(root)', offset: alias.range?.[0] ?? 0 };
      return visit.BREAK;
    },
  });
  if (!found) return new ConfigError(`${file}: not valid YAML: its aliases cannot be expanded (RESOURCE_EXHAUSTION)`);
  const { line, col } = lines.linePos(found.offset);
  return new ConfigError(
    `${found.key}: unresolved YAML alias at line ${line}, column ${col} (BAD_ALIAS); quote a value that starts with * (${file})`,
  );
}

function check(schema: TSchema, value: unknown, where: (key: string) => string): void {
  const first = Value.Errors(schema, value).First();
  if (!first) return;
  const key = first.path.replace(/^\//, '').replaceAll('/', '.') || '(root)';
  const problem =
    first.type === 42 /* ObjectAdditionalProperties */
      ? 'unknown key'
      : first.value === undefined
        ? 'missing value'
        : first.message.toLowerCase();
  throw new ConfigError(`${key}: ${problem} (${where(key)})`);
}

/**
 * What a URL-valued key must be, beyond parsing. `http`: an http(s) URL (something the gateway calls, or sends a browser
 * to). `base`: http(s) too, without what appending a path would break (a query, a fragment) or a browser drops (a user
 * and password); a path is kept, for a proxy that strips it. `origin`: what a browser's Origin header can equal.
 * `any`: another scheme (postgres://). `smtp`: smtp:// or smtps:// with a host, what the mailer documents (nodemailer
 * takes a URL without one, or with no scheme at all, as "localhost:587 without authentication").
 */
type UrlRule = 'any' | 'http' | 'base' | 'origin' | 'smtp';

/** Why `value` does not meet `rule`, or null. */
function urlProblem(value: string, rule: UrlRule): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'not a valid URL';
  }
  if (rule === 'any') return null;
  if (rule === 'smtp') {
    return (url.protocol === 'smtp:' || url.protocol === 'smtps:') && url.hostname
      ? null
      : 'must be an smtp:// or smtps:// URL with a host, e.g. smtp://user:pass@host:587';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http:// or https:// URL';
  if (rule === 'http') return null;
  const extra = url.username || url.password || url.search || url.hash;
  if (rule === 'base') {
    return extra ? 'must not carry a user, password, query or fragment (paths are appended to it)' : null;
  }
  // "https://app.example.com/" is one (the trailing slash is dropped at load); a path would never match.
  if (extra || url.pathname !== '/') {
    return 'must be an origin, scheme://host[:port] without a path, query or fragment (as a browser sends it)';
  }
  return null;
}

function validateSemantics(config: RawConfig, where: (key: string) => string): void {
  const urls: Array<[string, string, UrlRule]> = [
    ['server.base_url', config.server.base_url, 'base'],
    ...config.server.trusted_origins.map((o, i): [string, string, UrlRule] => [
      `server.trusted_origins.${i}`,
      o,
      'origin',
    ]),
  ];
  if (config.database.url) urls.push(['database.url', config.database.url, 'any']);
  // Never echoed: the problem names the key only, as the URL carries the SMTP password.
  if (config.email.smtp_url) urls.push(['email.smtp_url', config.email.smtp_url, 'smtp']);
  if (config.database.listen_url) urls.push(['database.listen_url', config.database.listen_url, 'any']);
  if (config.chat.upstream_url) urls.push(['chat.upstream_url', config.chat.upstream_url, 'http']);
  if (config.telegram.api_root) urls.push(['telegram.api_root', config.telegram.api_root, 'base']);
  if (config.telegram.webhook_url) urls.push(['telegram.webhook_url', config.telegram.webhook_url, 'http']);
  if (config.oauth.redirect_url) urls.push(['oauth.redirect_url', config.oauth.redirect_url, 'http']);
  for (const [id, provider] of Object.entries(config.oauth.oidc)) {
    urls.push([`oauth.oidc.${id}.issuer`, provider.issuer, 'http']);
  }
  if (config.telegram.bot_token && config.telegram.mode === 'webhook') {
    // Telegram allows 1-256 of A-Z a-z 0-9 _ -; without it anyone could post fake updates to the webhook.
    if (!/^[A-Za-z0-9_-]{16,256}$/.test(config.telegram.webhook_secret)) {
      throw new ConfigError(
        `telegram.webhook_secret: webhook mode needs 16-256 characters of A-Z a-z 0-9 _ - (${where('telegram.webhook_secret')})`,
      );
    }
  }
  // Rules sharing a bucket share its counter, so they must agree on its limit: with two, which one applies is unclear.
  const firstOf = new Map<string, number>();
  config.rate_limit.rules.forEach((rule, i) => {
    if (rule.bucket === undefined) return;
    const j = firstOf.get(rule.bucket) ?? i;
    firstOf.set(rule.bucket, j);
    const other = config.rate_limit.rules[j];
    if (!other || (other.max === rule.max && other.window === rule.window)) return;
    throw new ConfigError(
      `rate_limit.rules.${i}: ${rule.prefix} (${rule.max} per ${rule.window} s) shares bucket "${rule.bucket}" with ` +
        `${other.prefix} (rate_limit.rules.${j}: ${other.max} per ${other.window} s); give them the same max and window ` +
        `(${where(`rate_limit.rules.${i}`)})`,
    );
  });
  // Otherwise no password could be set: every one is too short or too long.
  const { min_length, max_length } = config.auth.password;
  if (min_length > max_length) {
    throw new ConfigError(
      `auth.password.min_length: ${min_length} is more than auth.password.max_length (${max_length}) (${where('auth.password.min_length')})`,
    );
  }
  for (const [key, value, rule] of urls) {
    const problem = urlProblem(value, rule);
    if (problem) throw new ConfigError(`${key}: ${problem} (${where(key)})`);
  }
  // The emailed reset link: a page relative to base_url (as a directory, as account-hooks.ts resolves it) or absolute.
  let resetScheme = '';
  try {
    resetScheme = new URL(config.auth.password_reset_page, config.server.base_url.replace(/\/*$/, '/')).protocol;
  } catch {}
  if (resetScheme !== 'http:' && resetScheme !== 'https:') {
    throw new ConfigError(
      `auth.password_reset_page: must be a path or an http:// or https:// URL (${where('auth.password_reset_page')})`,
    );
  }
  // The dev user is stored as written (lowercased): an address the sign-up routes refuse would be an account they could
  // never have made, and one with surrounding spaces could never sign in (the routes trim what they look up).
  if (!isNewEmailAddress(config.dev_user.email)) {
    throw new ConfigError(
      `dev_user.email: must be a bare address of at most ${EMAIL_MAX_LENGTH} characters that registration takes ` +
        `(letters, digits and _ ' + - in dot-separated parts, @, a domain whose last part has two or more letters; ` +
        `no surrounding spaces) (${where('dev_user.email')})`,
    );
  }
  for (const list of ['allow', 'deny'] as const) {
    const entries = config.ip_restrictions[list];
    const bad = invalidCidr(entries);
    if (bad !== null) {
      const key = `ip_restrictions.${list}.${entries.indexOf(bad)}`;
      throw new ConfigError(`${key}: "${bad}" is not a CIDR or IP address (${where(key)})`);
    }
  }
}

function validateNetworks(config: RawConfig, where: (key: string) => string): void {
  const trustProxy = invalidTrustProxy(config.server.trust_proxy);
  if (trustProxy) throw new ConfigError(`server.trust_proxy: ${trustProxy} (${where('server.trust_proxy')})`);
  config.metrics.allowed_ips.forEach((range, i) => {
    try {
      createIpMatcher([range]);
    } catch {
      throw new ConfigError(`metrics.allowed_ips.${i}: not an IP address or CIDR (${where('metrics.allowed_ips')})`);
    }
  });
  if (config.redis.url) {
    try {
      new URL(config.redis.url);
    } catch {
      throw new ConfigError(`redis.url: not a valid URL (${where('redis.url')})`);
    }
  }
}

/** The names of address ranges @fastify/proxy-addr knows (its IP_RANGES). */
const PROXY_RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * Why Fastify cannot take `value` as its trustProxy (lib/request.js), or null. `true` trusts every proxy; `false`, 0
 * and "" none; a string is a comma list whose entries @fastify/proxy-addr compiles at start, throwing on one it cannot
 * read (the process died with a stack trace): an address, an address with a prefix length (1 to 32 or 128) or an IPv4
 * netmask, or a range name. The entries are read as proxy-addr reads them (ipaddr.js, the same parser). A hop count
 * is refused: Fastify 5 takes it but trusts no proxy at all ("cannot validate the immediate peer"), so every client
 * would have the proxy's address, in rate limits and IP restrictions alike.
 */
export function invalidTrustProxy(value: boolean | number | string): string | null {
  if (typeof value === 'boolean' || value === 0 || value === '') return null;
  // "1" from TRUST_PROXY is a hop count too (ipaddr would read it as the address 0.0.0.1).
  if (typeof value === 'number' || /^\s*\d+\s*$/.test(value)) {
    return 'a hop count is not supported (Fastify trusts no proxy with one); list the proxies\' addresses, e.g. "10.0.0.1,10.0.0.0/8"';
  }
  for (const raw of value.split(',')) {
    const entry = raw.trim();
    if (!PROXY_RANGE_NAMES.has(entry) && !isProxyAddress(entry)) {
      return `"${entry}" is not an IP address, CIDR or range name (loopback, linklocal, uniquelocal); use true, false or a comma list of those`;
    }
  }
  return null;
}

/** An address, `address/bits` or `IPv4/netmask`, as @fastify/proxy-addr's parseipNotation accepts it. */
function isProxyAddress(entry: string): boolean {
  const slash = entry.lastIndexOf('/');
  const address = slash < 0 ? entry : entry.slice(0, slash);
  // Only the written-out forms: ipaddr also takes "10.1" or "167772161" as IPv4, which nobody means in a proxy list.
  if (!ipaddr.IPv4.isValidFourPartDecimal(address) && !ipaddr.IPv6.isValid(address)) return false;
  if (slash < 0) return true;
  const kind = ipaddr.parse(address).kind();
  const range = entry.slice(slash + 1);
  let bits: number | null = null;
  if (/^\d+$/.test(range)) bits = Number.parseInt(range, 10);
  else if (kind === 'ipv4' && ipaddr.isValid(range)) {
    const mask = ipaddr.parse(range);
    bits = mask.kind() === 'ipv4' ? mask.prefixLengthFromSubnetMask() : null;
  }
  return bits !== null && bits > 0 && bits <= (kind === 'ipv6' ? 128 : 32);
}

/** Production demands a real secret; development generates one once and keeps it under data_dir. */
function settleSecret(config: RawConfig, production: boolean, where: (key: string) => string): boolean {
  const secret = config.auth.secret;
  if (secret) {
    if (secret === EXAMPLE_SECRET) {
      if (production)
        throw new ConfigError(`auth.secret: the example secret is not allowed in production (${where('auth.secret')})`);
    }
    if (production && Buffer.byteLength(secret) < MIN_SECRET_BYTES) {
      throw new ConfigError(
        `auth.secret: must be at least ${MIN_SECRET_BYTES} bytes in production (${where('auth.secret')})`,
      );
    }
    return false;
  }
  if (production) {
    throw new ConfigError(
      `auth.secret: missing value; set AUTH_SECRET or auth.secret in the secrets file (${where('auth.secret')})`,
    );
  }
  const file = join(config.data_dir, '.dev-auth-secret');
  // A data_dir that cannot be used (read-only, below a regular file) is a config error, not a stack trace.
  const unusable = (verb: string, err: unknown) => {
    const { code, path } = err as NodeJS.ErrnoException;
    return new ConfigError(`data_dir: cannot ${verb} ${path ?? file} (${code ?? 'error'}) (${where('data_dir')})`);
  };
  let kept = '';
  try {
    kept = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
  } catch (err) {
    throw unusable('read', err);
  }
  // A file cut short (a crash while writing it, a full disk) is replaced: an empty key would sign every token.
  if (Buffer.byteLength(kept) >= MIN_SECRET_BYTES) {
    config.auth.secret = kept;
  } else {
    config.auth.secret = randomBytes(32).toString('base64url');
    try {
      mkdirSync(config.data_dir, { recursive: true });
      writeFileSync(file, `${config.auth.secret}\n`, { mode: 0o600 });
    } catch (err) {
      throw unusable('create/write', err);
    }
  }
  return true;
}

function recordOrigins(tree: Tree, prefix: string, file: string, origin: Map<string, string>): void {
  for (const [k, v] of Object.entries(tree)) {
    const key = prefix ? `${prefix}.${k}` : k;
    origin.set(key, file);
    if (v && typeof v === 'object' && !Array.isArray(v)) recordOrigins(v as Tree, key, file, origin);
  }
}

function originOf(origin: Map<string, string>, key: string): string | undefined {
  for (let k = key; k; k = k.includes('.') ? k.slice(0, k.lastIndexOf('.')) : '') {
    const o = origin.get(k);
    if (o) return o;
  }
  return undefined;
}

function deepMerge(target: Tree, source: Tree): void {
  for (const [k, v] of Object.entries(source)) {
    const t = target[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && t && typeof t === 'object' && !Array.isArray(t)) {
      deepMerge(t as Tree, v as Tree);
    } else {
      target[k] = v;
    }
  }
}

function setPath(tree: Tree, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = tree;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (!next || typeof next !== 'object') node[part] = {};
    node = node[part] as Tree;
  }
  node[parts.at(-1) as string] = value;
}

function deepFreeze<O>(value: O): O {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Whether the gateway's cookies are Secure, and Better Auth's named with the `__Secure-` prefix: an https public URL,
 * or https_only on (the default under NODE_ENV=production, even with an http:// base_url behind a TLS proxy). One rule
 * for every module that sets, reads or clears a cookie, so a cookie is never looked up under the other name.
 */
export function usesSecureCookies(config: Config): boolean {
  return config.server.base_url.startsWith('https:') || config.server.https_only === true;
}
