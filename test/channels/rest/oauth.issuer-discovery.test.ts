import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OidcProvider, startOidcProvider } from '../../helpers/oidc-provider.js';
import { createTestApp, type TestApp } from '../../helpers/test-app.js';

const BASE = 'http://localhost:3000';
const FRONT = 'http://localhost:5173/signed-in';

// OpenID Connect Discovery 1.0, section 4.3: the announced issuer must be the one configured.
describe('OIDC provider whose discovery announces another issuer', () => {
  let idp: OidcProvider;
  let t: TestApp;

  beforeAll(async () => {
    // Listens at http://127.0.0.1:<port> but announces http://127.0.0.1:<port>/tenant-b as its issuer.
    idp = await startOidcProvider({ redirectUris: [`${BASE}/api/auth/callback/corp`], issuerPath: '/tenant-b' });
    t = await createTestApp({
      config: {
        oauth: {
          redirect_url: FRONT,
          oidc: {
            corp: {
              issuer: idp.url,
              client_id: idp.clientId,
              client_secret: idp.clientSecret,
              name: '',
              scopes: ['openid', 'email'],
              token_auth: 'client_secret_basic',
            },
          },
        },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await idp?.close();
  });

  it('refuses to start a sign-in (OAUTH_ISSUER_MISMATCH), through our route and Better Auth own', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/auth/oauth/corp' });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('OAUTH_ISSUER_MISMATCH');
    const direct = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/social',
      payload: { provider: 'corp', callbackURL: `${BASE}/auth/oauth/complete` },
    });
    expect(direct.statusCode).toBe(400);
    expect(direct.json().code).toBe('OAUTH_ISSUER_MISMATCH');
  });
});
