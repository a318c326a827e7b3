import type { FastifyReply } from 'fastify';
import type { ExchangeCodes } from '../../accounts/index.js';
import { ERROR_CATALOGUE, type ErrorCode } from '../../errors/index.js';

/**
 * How a browser sign-in (OAuth, magic link) ends: a redirect to the configured front-end URL with a one-time code
 * or an error code, never a token in a URL. Without a front-end URL: JSON (the code, or the error).
 */
export function createBrowserFinish(redirectUrl: string, codes: ExchangeCodes) {
  const target = (params: Record<string, string>) => {
    const url = new URL(redirectUrl);
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    return url.toString();
  };
  const noStore = (reply: FastifyReply) =>
    reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer');
  const failure = (reply: FastifyReply, code: ErrorCode) => {
    noStore(reply);
    if (!redirectUrl) {
      return reply
        .status(ERROR_CATALOGUE[code].status)
        .send({ success: false, error: { code, message: ERROR_CATALOGUE[code].message } });
    }
    return reply.redirect(target({ error: code }), 302);
  };

  return {
    /** `challenge`: the flow's code challenge, which the code is bound to (see accounts/code-challenge.ts). */
    async success(reply: FastifyReply, session: { sessionId: string; userId: string }, challenge: string | null) {
      const code = await codes.mint(session.sessionId, session.userId, challenge);
      // The session ended (revoked, its account deleted) since the sign-in made it: no code for it.
      if (!code) return failure(reply, 'INVALID_TOKEN');
      noStore(reply);
      if (!redirectUrl) return reply.status(200).send({ success: true, code });
      return reply.redirect(target({ code }), 302);
    },
    failure,
    linked(reply: FastifyReply, provider: string) {
      noStore(reply);
      if (!redirectUrl) return reply.status(200).send({ success: true, linked: provider });
      return reply.redirect(target({ linked: provider }), 302);
    },
  };
}

export type BrowserFinish = ReturnType<typeof createBrowserFinish>;
