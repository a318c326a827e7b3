import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ENV_OVERRIDES } from '../src/config/index.js';
import { REPO_ROOT } from './helpers/test-app.js';

// No Docker engine runs here: the compose file is parsed and its wiring checked.
interface Service {
  image?: string;
  build?: string;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
}
const compose = parse(readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8')) as {
  services: Record<string, Service>;
};
const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');

describe('docker-compose.yml', () => {
  const pg = compose.services.postgres as Service;
  const gw = compose.services.gateway as Service;

  it('runs PostgreSQL with a healthcheck and the schema applied', () => {
    expect(pg.image).toMatch(/^postgres:\d+/);
    expect(pg.healthcheck?.test.join(' ')).toContain('pg_isready');
    expect(pg.volumes).toContain('./schema.sql:/docker-entrypoint-initdb.d/01-schema.sql:ro');
  });

  it('builds the gateway, points it at that database and waits for it to be healthy', () => {
    expect(gw.build).toBe('.');
    const env = gw.environment ?? {};
    const pgEnv = pg.environment ?? {};
    const url = new URL(env.DATABASE_URL?.replace(/\$\{POSTGRES_PASSWORD:-(\w+)\}/, '$1') ?? '');
    expect(url.hostname).toBe('postgres');
    expect(url.username).toBe(pgEnv.POSTGRES_USER);
    expect(url.pathname).toBe(`/${pgEnv.POSTGRES_DB}`);
    expect(env.NODE_ENV).toBe('production');
    expect(env.AUTH_SECRET).toMatch(/^\$\{AUTH_SECRET:\?/); // required, never a default secret
    expect(gw.depends_on?.postgres?.condition).toBe('service_healthy');
    expect(gw.healthcheck?.test.join(' ')).toContain('/auth/health');
  });

  it('publishes the port the gateway listens on', () => {
    const env = gw.environment ?? {};
    expect(gw.ports).toContain(`${env.PORT}:${env.PORT}`);
    expect(dockerfile).toContain(`EXPOSE ${env.PORT}`);
  });

  it('sets only environment variables the gateway reads', () => {
    const known = new Set([...ENV_OVERRIDES.map(([name]) => name), 'NODE_ENV', 'CONFIG_FILE', 'SECRETS_FILE']);
    for (const name of Object.keys(gw.environment ?? {})) expect(known, name).toContain(name);
  });

  it('the image starts the server with node directly (signals reach it), as npm start does, and ships the schema', () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
    const start = pkg.scripts.start.split(/\s+/);
    expect(start.slice(0, 1).concat(start.slice(-3))).toEqual(['node', '--import', 'tsx', 'src/server.ts']);
    expect(dockerfile).toContain(`CMD ${JSON.stringify(start).replaceAll(',', ', ')}`);
    expect(dockerfile).toContain('COPY schema.sql');
  });
});
