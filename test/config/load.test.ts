import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { describe, expect, it, vi } from 'vitest';
import { EXAMPLE_SECRET, loadConfig } from '../../src/config/index.js';
import { configErrorOf, configFiles } from '../helpers/config-files.js';
import { REPO_ROOT } from '../helpers/test-app.js';

const dir = () => mkdtempSync(join(tmpdir(), 'gw-config-'));

const load = configFiles;
const errorOf = configErrorOf;

describe('loadConfig', () => {
  it('loads the shipped config.yaml with defaults and freezes it', () => {
    const config = loadConfig({
      env: { CONFIG_FILE: join(REPO_ROOT, 'config.yaml'), DATA_DIR: join(dir(), 'data'), AUTH_SECRET: 'x'.repeat(40) },
      cwd: REPO_ROOT,
    });
    expect(config.server.port).toBe(3000);
    expect(config.server.base_url).toBe('http://localhost:3000');
    expect(config.auth.argon2).toMatchObject({ memory_cost: 19456, time_cost: 2, parallelism: 1 });
    expect(config.auth.session).toMatchObject({ expires_in: 604800, update_age: 86400 });
    expect(config.licenses.default_type).toBe('free');
    expect(Object.isFrozen(config.server)).toBe(true);
  });

  it('applies every documented env override', () => {
    const { load: run } = load(
      { config: '' },
      {
        PORT: '4000',
        HOST: '127.0.0.1',
        BASE_URL: 'https://auth.example.com',
        DATABASE_URL: 'postgres://u:p@db:5432/auth',
        AUTH_SECRET: 's'.repeat(32),
        LOG_LEVEL: 'debug',
        SMTP_URL: 'smtp://mail:25',
      },
    );
    const c = run();
    expect(c.server.port).toBe(4000);
    expect(c.server.host).toBe('127.0.0.1');
    expect(c.server.base_url).toBe('https://auth.example.com');
    expect(c.database.url).toBe('postgres://u:p@db:5432/auth');
    expect(c.auth.secret).toBe('s'.repeat(32));
    expect(c.log.level).toBe('debug');
    expect(c.email.smtp_url).toBe('smtp://mail:25');
  });

  it('names the key and the file for a wrong type', () => {
    const t = load({ config: 'server:\n  port: "eighty"\n' });
    const err = errorOf(t.load);
    expect(err.message).toContain('server.port');
    expect(err.message).toContain(t.configFile);
    expect(err.message.split('\n')).toHaveLength(1);
  });

  // Regression: an idle timeout beyond an int of seconds loaded, and GET /auth/sessions answered 500 (integer out of
  // range in the query that leaves idle sessions out).
  it('refuses auth.session.idle_timeout above a year, naming the key', () => {
    const err = errorOf(load({ config: 'auth:\n  session:\n    idle_timeout: 2147483600\n' }).load);
    expect(err.message).toContain('auth.session.idle_timeout');
    expect(load({ config: 'auth:\n  session:\n    idle_timeout: 31536000\n' }).load().auth.session.idle_timeout).toBe(
      31_536_000,
    );
  });

  it('names an unknown key and the file', () => {
    const t = load({ config: 'server:\n  prot: 80\n' });
    const err = errorOf(t.load);
    expect(err.message).toMatch(/^server\.prot: unknown key/);
    expect(err.message).toContain(t.configFile);
  });

  it('names an unknown top-level key', () => {
    const err = errorOf(load({ config: 'nonsense: 1\n' }).load);
    expect(err.message).toMatch(/^nonsense: unknown key/);
  });

  it('names the env variable for a bad override', () => {
    const err = errorOf(load({ config: '' }, { PORT: 'abc' }).load);
    expect(err.message).toBe('server.port: must be an integer (environment variable PORT)');
    const bool = errorOf(load({ config: '' }, { HTTPS_ONLY: 'yes' }).load);
    expect(bool.message).toBe('server.https_only: must be true or false (environment variable HTTPS_ONLY)');
  });

  // Regression: the shipped docker-compose (NODE_ENV=production, plain HTTP on port 3000) refused every API call with
  // 403 HTTPS_REQUIRED, and a container had no way to say otherwise, or to name its TLS proxy, but a config file.
  it('HTTPS_ONLY and TRUST_PROXY configure a container for plain HTTP or for its TLS proxy', () => {
    const plain = load({ config: '' }, { NODE_ENV: 'production', AUTH_SECRET: 's'.repeat(32), HTTPS_ONLY: 'false' });
    expect(plain.load().server.https_only).toBe(false);
    const proxied = load(
      { config: '' },
      { NODE_ENV: 'production', AUTH_SECRET: 's'.repeat(32), HTTPS_ONLY: 'true', TRUST_PROXY: '10.0.0.0/8,loopback' },
    ).load();
    expect(proxied.server.https_only).toBe(true);
    expect(proxied.server.trust_proxy).toBe('10.0.0.0/8,loopback');
    expect(load({ config: '' }, { TRUST_PROXY: 'true' }).load().server.trust_proxy).toBe(true);
    expect(load({ config: '' }, { TRUST_PROXY: 'false' }).load().server.trust_proxy).toBe(false);
  });

  it('names the secrets file for a bad secret entry', () => {
    const t = load({ config: '', secrets: 'auth:\n  secrte: x\n' });
    const err = errorOf(t.load);
    expect(err.message).toContain('auth.secrte');
    expect(err.message).toContain(t.secretsFile);
  });

  it('refuses invalid YAML and a missing explicit file with one line', () => {
    expect(errorOf(load({ config: 'server: [\n' }).load).message).toMatch(/not valid YAML/);
    expect(errorOf(load({}).load).message).toMatch(/config\.yaml: file not found$/);
  });

  // Regression: the parser's message was printed, and it quotes the source: an unquoted secret starting with "*" is an
  // alias, and "Unresolved alias (...): Dev-Password-7413" went to stderr with the rest of the password.
  it('reports a YAML error by key or file, position and code, never with the text of the file', () => {
    const secret = 'Dev-Password-7413';
    const alias = load({ config: '', secrets: `dev_user:\n  password: *${secret}\n` });
    expect(errorOf(alias.load).message).toBe(
      `dev_user.password: unresolved YAML alias at line 2, column 13 (BAD_ALIAS); quote a value that starts with * (${alias.secretsFile})`,
    );
    const inList = load({ config: 'admin:\n  emails:\n    - a@example.com\n    - *b-secret\n' });
    expect(errorOf(inList.load).message).toMatch(
      /^admin\.emails\.1: unresolved YAML alias at line 4, column 7 \(BAD_ALIAS\)/,
    );
    // Syntax errors in either file: the file, where, and the parser's code.
    const reserved = load({ config: '', secrets: `auth:\n  secret: @${secret}\n` });
    expect(errorOf(reserved.load).message).toBe(
      `${reserved.secretsFile}: not valid YAML at line 2, column 11 (BAD_SCALAR_START)`,
    );
    const open = load({ config: 'server: [\n' });
    expect(errorOf(open.load).message).toBe(`${open.configFile}: not valid YAML at line 2, column 1 (BAD_INDENT)`);
    // A parser warning (an unknown tag) went to stderr through process.emitWarning, quoting its line.
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      load({ config: '', secrets: `auth:\n  secret: !!int ${secret}\n` }).load();
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
  });

  it('refuses a bad URL and an unknown default license type', () => {
    expect(errorOf(load({ config: 'server:\n  base_url: not a url\n' }).load).message).toMatch(
      /^server\.base_url: not a valid URL/,
    );
    expect(errorOf(load({ config: 'licenses:\n  default_type: gold\n' }).load).message).toMatch(
      /^licenses\.default_type/,
    );
  });

  // Regression: "http://host/" made magic links "http://host//auth/magic-link/verify?...", which the gateway refuses.
  it('loads server.base_url without a trailing slash, from the file or BASE_URL, keeping a path prefix', () => {
    const baseUrl = (config: string, env: Record<string, string> = {}) =>
      load({ config }, { AUTH_SECRET: 's'.repeat(32), ...env }).load().server.base_url;
    expect(baseUrl('server:\n  base_url: https://auth.example.com/\n')).toBe('https://auth.example.com');
    expect(baseUrl('', { BASE_URL: 'https://auth.example.com//' })).toBe('https://auth.example.com');
    expect(baseUrl('', { BASE_URL: 'https://example.com/gateway/' })).toBe('https://example.com/gateway');
    expect(baseUrl('', { BASE_URL: 'https://example.com/gateway' })).toBe('https://example.com/gateway');
  });

  // Regression: "10.0.0.0/33" or a quoted "true" passed the schema and Fastify's proxy-addr threw at start (exit 1,
  // a stack trace) instead of the one-line config error (exit 78).
  it('takes exactly the server.trust_proxy values Fastify can compile, and refuses a hop count it would ignore', () => {
    const trustProxy = (value: string) => () => load({ config: `server:\n  trust_proxy: ${value}\n` }).load();
    const good = [
      'true',
      'false',
      '""',
      '"127.0.0.1"',
      '"10.0.0.1, 10.0.0.0/8 ,::1,fe80::/10"',
      '"loopback,uniquelocal"',
    ];
    const bad = ['"10.0.0.0/33"', '"true"', '"10.0.0.0/0"', '"::1/129"', '"10.0.0.1,"', '" "', '"proxy.internal"'];
    const more = ['"10.0.0.0/255.0.0.0"', '"10.0.0.0/255.0.255.0"', '"::ffff:10.0.0.1/8"', '"10.0.0.1/+8"'];
    for (const value of [...good, ...bad, ...more]) {
      const option = JSON.parse(value.startsWith('"') ? value : JSON.stringify(value === 'true'));
      let fastifyTakes = true;
      try {
        Fastify({ trustProxy: option });
      } catch {
        fastifyTakes = false;
      }
      if (good.includes(value)) expect([value, fastifyTakes]).toEqual([value, true]);
      if (bad.includes(value)) expect([value, fastifyTakes]).toEqual([value, false]);
      if (fastifyTakes) {
        expect(trustProxy(value)().server.trust_proxy, value).toEqual(option);
      } else {
        const message = errorOf(trustProxy(value)).message;
        expect(message, value).toMatch(/^server\.trust_proxy: ".*" is not an IP address, CIDR or range name/);
        expect(message.split('\n')).toHaveLength(1);
      }
    }
    expect(trustProxy('0')().server.trust_proxy).toBe(0);
    expect(errorOf(trustProxy('1')).message).toMatch(/^server\.trust_proxy: a hop count is not supported/);
    // Stricter than Fastify, which reads "1" as the address 0.0.0.1 and "10.1" as 10.0.0.1: TRUST_PROXY=1, the usual
    // spelling of one hop elsewhere, trusted no real proxy (review).
    expect(errorOf(trustProxy('"1"')).message).toMatch(/^server\.trust_proxy: a hop count is not supported/);
    expect(errorOf(trustProxy('"10.1"')).message).toMatch(/^server\.trust_proxy: "10\.1" is not an IP address/);
    const env = (value: string) => () => load({ config: '' }, { TRUST_PROXY: value }).load();
    expect(errorOf(env('2')).message).toBe(
      `server.trust_proxy: a hop count is not supported (Fastify trusts no proxy with one); list the proxies' addresses, e.g. "10.0.0.1,10.0.0.0/8" (environment variable TRUST_PROXY)`,
    );
  });

  // Regression: min_length above max_length was accepted, and then no password could be set.
  it('refuses auth.password.min_length above max_length', () => {
    const passwords = (min: number, max: number) => () =>
      load({ config: `auth:\n  password:\n    min_length: ${min}\n    max_length: ${max}\n` }).load();
    expect(errorOf(passwords(100, 50)).message).toMatch(
      /^auth\.password\.min_length: 100 is more than auth\.password\.max_length \(50\)/,
    );
    expect(passwords(64, 64)().auth.password).toMatchObject({ min_length: 64, max_length: 64 });
  });

  // Regression: dev_user.email was not checked, so the dev user could be stored under an address registration refuses
  // (or with surrounding spaces, which sign-in trims away: it could never sign in).
  it('refuses a dev_user.email that registration would refuse, naming the key and the file', () => {
    const devUser = (email: string) => load({ config: `dev_user:\n  email: ${JSON.stringify(email)}\n` });
    for (const email of ['ops@localhost', 'Dev <dev@example.com>', ' dev@example.com', 'a!b@example.com']) {
      const t = devUser(email);
      const err = errorOf(t.load);
      expect(err.message, email).toMatch(/^dev_user\.email: must be a bare address .*registration takes/);
      expect(err.message, email).toContain(t.configFile);
      expect(err.message.split('\n'), email).toHaveLength(1);
    }
    expect(devUser('Ops.Team+dev@example.co.uk').load().dev_user.email).toBe('Ops.Team+dev@example.co.uk');
    // The shipped default (config.yaml's, and the schema's when the key is absent) stays valid.
    expect(load({ config: '' }).load().dev_user.email).toBe('dev@example.com');
  });

  it('refuses rate-limit rules that share a bucket with different limits, naming the rule', () => {
    const rules = (window: number) =>
      load({
        config: `rate_limit:\n  rules:\n    - { prefix: /auth/login, max: 20, window: 60, bucket: sign-in }\n    - { prefix: /api/auth/sign-in/, max: 20, window: ${window}, bucket: sign-in }\n`,
      }).load;
    expect(errorOf(rules(300)).message).toMatch(/^rate_limit\.rules\.1: \/api\/auth\/sign-in\/ .* bucket "sign-in"/);
    expect(rules(60)().rate_limit.rules).toHaveLength(2);
  });

  describe('secrets in production', () => {
    const prod = { NODE_ENV: 'production' };
    it('refuses to start without a secret', () => {
      expect(errorOf(load({ config: '' }, prod).load).message).toMatch(/^auth\.secret: missing value/);
    });
    it('refuses the example secret', () => {
      const err = errorOf(load({ config: '', secrets: `auth:\n  secret: "${EXAMPLE_SECRET}"\n` }, prod).load);
      expect(err.message).toMatch(/example secret/);
    });
    it('refuses a secret shorter than 32 bytes', () => {
      expect(errorOf(load({ config: '' }, { ...prod, AUTH_SECRET: 'short' }).load).message).toMatch(
        /at least 32 bytes/,
      );
    });
    it('accepts a 32-byte secret from the secrets file', () => {
      const c = load({ config: '', secrets: `auth:\n  secret: "${'k'.repeat(32)}"\n` }, prod).load();
      expect(c.production).toBe(true);
      expect(c.devSecret).toBe(false);
    });
  });

  it('outside production generates a development secret once and keeps it under data_dir', () => {
    const t = load({ config: '' });
    const first = t.load();
    expect(first.devSecret).toBe(true);
    expect(first.auth.secret.length).toBeGreaterThanOrEqual(32);
    const file = join(t.dir, 'data', '.dev-auth-secret');
    expect(existsSync(file)).toBe(true);
    expect(readFileSync(file, 'utf8').trim()).toBe(first.auth.secret);
    expect(t.load().auth.secret).toBe(first.auth.secret);
    // A file cut short is replaced, not read as an empty (or short) key.
    for (const short of ['', 'abc\n']) {
      writeFileSync(file, short);
      const again = t.load().auth.secret;
      expect(again.length).toBeGreaterThanOrEqual(32);
      expect(readFileSync(file, 'utf8').trim()).toBe(again);
    }
  });
});
