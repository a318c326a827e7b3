import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { createTestApp, REPO_ROOT, registerUser, type TestApp } from '../helpers/test-app.js';

const dir = () => mkdtempSync(join(tmpdir(), 'gw-config-urls-'));

/** A config file with `yaml` (and the shipped file's keys defaulted), loaded with `env`. */
function load(yaml: string, env: Record<string, string> = {}) {
  const d = dir();
  writeFileSync(join(d, 'config.yaml'), yaml);
  writeFileSync(join(d, 'secrets.yaml'), '{}\n');
  const file = join(d, 'config.yaml');
  return {
    file,
    load: () =>
      loadConfig({
        env: {
          CONFIG_FILE: file,
          SECRETS_FILE: join(d, 'secrets.yaml'),
          DATA_DIR: d,
          AUTH_SECRET: 's'.repeat(32),
          ...env,
        },
        cwd: d,
      }),
  };
}

const errorOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  return 'loaded';
};

// Regression: only `new URL()` was checked, so values that parse but can never work started the gateway.
describe('URL-valued settings', () => {
  it('server.base_url is an http(s) URL without a user, query or fragment; a path prefix is kept', () => {
    for (const bad of ['javascript:alert(1)', 'ftp://x', 'file:///etc/passwd']) {
      expect(errorOf(load('', { BASE_URL: bad }).load)).toBe(
        'server.base_url: must be an http:// or https:// URL (environment variable BASE_URL)',
      );
    }
    for (const bad of ['http://u:p@auth.example.com', 'https://auth.example.com/?a=1', 'https://auth.example.com/#x']) {
      const t = load(`server:\n  base_url: "${bad}"\n`);
      expect(errorOf(t.load)).toBe(
        `server.base_url: must not carry a user, password, query or fragment (paths are appended to it) (${t.file})`,
      );
    }
    const baseUrl = (value: string) => load('', { BASE_URL: value }).load().server.base_url;
    expect(baseUrl('HTTPS://Auth.Example.com:443/')).toBe('https://auth.example.com');
    expect(baseUrl('http://localhost:3000/gw/')).toBe('http://localhost:3000/gw');
  });

  it('server.trusted_origins entries are http(s) origins, loaded as a browser sends them', () => {
    const t = load(
      'server:\n  trusted_origins: ["https://app.example.com/", "HTTP://Other.Example.com:80", "https://*.example.com"]\n',
    );
    expect(t.load().server.trusted_origins).toEqual([
      'https://app.example.com',
      'http://other.example.com',
      'https://*.example.com',
    ]);
    for (const bad of ['https://app.example.com/app', 'https://app.example.com/?x=1', 'https://u@app.example.com']) {
      const b = load(`server:\n  trusted_origins: ["http://localhost:5173", "${bad}"]\n`);
      expect(errorOf(b.load)).toBe(
        `server.trusted_origins.1: must be an origin, scheme://host[:port] without a path, query or fragment (as a browser sends it) (${b.file})`,
      );
    }
    const scheme = load('server:\n  trusted_origins: ["chrome-extension://abcdef"]\n');
    expect(errorOf(scheme.load)).toBe(`server.trusted_origins.0: must be an http:// or https:// URL (${scheme.file})`);
  });

  it('the URLs the gateway calls or sends a browser to are http(s)', () => {
    const refused = (yaml: string, env: Record<string, string> = {}) => errorOf(load(yaml, env).load);
    expect(refused('', { CHAT_UPSTREAM_URL: 'ftp://chat' })).toBe(
      'chat.upstream_url: must be an http:// or https:// URL (environment variable CHAT_UPSTREAM_URL)',
    );
    expect(refused('', { TELEGRAM_API_ROOT: 'file:///tmp/api' })).toMatch(/^telegram\.api_root: must be an http/);
    expect(refused('', { TELEGRAM_API_ROOT: 'https://bot-api.internal/?x=1' })).toMatch(
      /^telegram\.api_root: must not carry/,
    );
    expect(refused('telegram:\n  webhook_url: "ws://gw.example.com/hook"\n')).toMatch(
      /^telegram\.webhook_url: must be/,
    );
    expect(refused('oauth:\n  redirect_url: "javascript:alert(1)"\n')).toMatch(/^oauth\.redirect_url: must be an http/);
    expect(refused('oauth:\n  oidc:\n    corp: { issuer: "ldap://idp.example.com", client_id: gw }\n')).toMatch(
      /^oauth\.oidc\.corp\.issuer: must be an http/,
    );
    for (const page of ['javascript:alert(1)', 'http://[bad']) {
      expect(refused(`auth:\n  password_reset_page: "${page}"\n`)).toMatch(
        /^auth\.password_reset_page: must be a path or an http/,
      );
    }
    expect(refused('oauth:\n  redirect_url: "app.example.com/done"\n')).toMatch(
      /^oauth\.redirect_url: not a valid URL/,
    );
    const good = load(
      'auth:\n  password_reset_page: reset-password\noauth:\n  redirect_url: "https://app.example.com/done?from=gw"\n',
      { CHAT_UPSTREAM_URL: 'http://chat:8080/reply', TELEGRAM_API_ROOT: 'http://bot-api:8081' },
    ).load();
    expect(good.oauth.redirect_url).toBe('https://app.example.com/done?from=gw');
  });
});

// Regression: "http://app.example.com/" never equalled an Origin header, so that web app was refused by CORS and by
// Better Auth's origin check.
describe('a trusted origin written with a trailing slash', () => {
  let t: TestApp;
  beforeAll(async () => {
    const file = join(dir(), 'config.yaml');
    const shipped = readFileSync(join(REPO_ROOT, 'config.yaml'), 'utf8');
    writeFileSync(file, shipped.replace(/^ {4}- http:\/\/localhost:5173.*$/m, '    - http://app.example.com/'));
    t = await createTestApp({ env: { CONFIG_FILE: file } });
  });
  afterAll(() => t?.close());

  it('admits that web app: CORS preflight and Better Auth sign-in', async () => {
    expect(t.config.server.trusted_origins).toContain('http://app.example.com');
    const origin = 'http://app.example.com';
    const preflight = await t.app.inject({
      method: 'OPTIONS',
      url: '/auth/login',
      headers: { origin, 'access-control-request-method': 'POST' },
    });
    expect(preflight.headers['access-control-allow-origin']).toBe(origin);
    const user = await registerUser(t.app);
    const signIn = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { origin, 'content-type': 'application/json' },
      payload: JSON.stringify({ email: user.email, password: user.password }),
    });
    expect(signIn.statusCode).toBe(200);
  });
});
