import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { anonymousRoutes } from '../channels/rest/anonymous.routes.js';
import { createBrowserFinish } from '../channels/rest/browser-finish.js';
import { magicLinkRoutes } from '../channels/rest/magic-link.routes.js';
import { oauthRoutes } from '../channels/rest/oauth.routes.js';
import { type AnonymousUsers, createAnonymousUsers } from './anonymous-users.js';
import { createExchangeCodes, type ExchangeCodes } from './exchange-codes.js';
import { createMagicLinks, type MagicLinks } from './magic-links.js';

declare module 'fastify' {
  interface FastifyInstance {
    anonymousUsers: AnonymousUsers;
    exchangeCodes: ExchangeCodes;
    magicLinks: MagicLinks;
    /** One cleanup pass: old anonymous users, expired codes and magic links (the periodic job calls this). */
    runSignInCleanup(): Promise<{ anonymousUsers: number; codes: number; magicLinks: number }>;
  }
}

/**
 * OAuth / OIDC, magic-link and anonymous sign-in: their stores, routes and the periodic cleanup (an unref'd timer,
 * so it never keeps the process alive; stopped on close).
 */
export const signInMethodsPlugin = fp(
  async (app: FastifyInstance) => {
    const { config, db, engine, authenticator, sessions, audit, mailer, hasher } = app;
    const codes = createExchangeCodes(db, config.oauth.code_ttl);
    const anonymousUsers = createAnonymousUsers(db, hasher, config.anonymous.max_age);
    const magicLinks = createMagicLinks(
      {
        baseUrl: config.server.base_url,
        expiresIn: config.magic_link.expires_in,
        createAccounts: config.magic_link.create_accounts,
        maxPerWindow: config.magic_link.max_per_window,
        window: config.magic_link.window,
      },
      { db, mailer, createUser: (email) => engine.methods.createUser(email), audit, log: app.log },
    );
    const finish = createBrowserFinish(config.oauth.redirect_url, codes);

    app.decorate('exchangeCodes', codes);
    app.decorate('anonymousUsers', anonymousUsers);
    app.decorate('magicLinks', magicLinks);
    app.decorate('runSignInCleanup', async () => ({
      anonymousUsers: config.anonymous.enabled ? await anonymousUsers.cleanup() : 0,
      codes: await codes.purgeExpired(),
      magicLinks: await magicLinks.purgeExpired(),
    }));

    const timer = setInterval(() => {
      app.runSignInCleanup().then(
        (n) => {
          if (n.anonymousUsers > 0) app.log.info(n, 'sign-in cleanup');
        },
        (err: Error) => app.log.warn({ err: { message: err.message } }, 'sign-in cleanup failed'),
      );
    }, config.anonymous.cleanup_interval * 1000);
    timer.unref();
    app.addHook('onClose', async () => clearInterval(timer));

    await app.register(oauthRoutes, {
      config,
      db,
      engine,
      authenticator,
      sessions,
      audit,
      codes,
      finish,
      recentAuth: app.recentAuth,
      isAnonymous: (userId) => anonymousUsers.isAnonymous(userId),
    });
    await app.register(magicLinkRoutes, {
      enabled: config.magic_link.enabled,
      redirectUrl: config.oauth.redirect_url,
      engine,
      authenticator,
      sessions,
      audit,
      links: magicLinks,
      codes,
      finish,
    });
    const freeType = config.licenses.types.free ? 'free' : config.licenses.default_type;
    await app.register(anonymousRoutes, {
      enabled: config.anonymous.enabled,
      licenseType: freeType,
      db,
      engine,
      authenticator,
      sessions,
      audit,
    });
  },
  { name: 'sign-in-methods' },
);
