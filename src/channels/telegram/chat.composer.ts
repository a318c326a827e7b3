import { Composer, type Context } from 'grammy';
import type { AuthContext, Authenticator } from '../../authenticator/index.js';
import type { ChatService } from '../chat/chat-service.js';
import type { UsageLimits } from '../chat/usage-limits.js';
import { replies, splitMessage } from './replies.js';

/** How long a reply may take before the user is told the chat is unavailable. */
const REPLY_TIMEOUT_MS = 120_000;
/**
 * The most messages one reply is sent as, the last saying it was cut: Telegram sends about one message a second in a
 * chat and refuses the rest (429; the bot waits and retries a few times), so a longer answer would take minutes.
 */
const MAX_REPLY_PARTS = 16;
/** Reading an answer stops past this many UTF-16 units (what fills MAX_REPLY_PARTS messages): memory stays bounded. */
const MAX_REPLY_LENGTH = MAX_REPLY_PARTS * 4096;

export interface ChatComposerDeps {
  authenticator: Pick<Authenticator, 'authenticateTelegram'>;
  chat: ChatService;
  limits: UsageLimits;
  baseUrl: string;
  log: { warn(obj: object, msg: string): void };
  /** Replies still being produced: the bot waits for them, until the shutdown's deadline, before it stops. */
  inflight: Set<Promise<void>>;
  /** Aborted when the shutdown stops waiting for them: a reply in progress is given up (stop() counts it). */
  cutoff: AbortSignal;
}

/**
 * Text from a linked user goes to the same ChatService, under the same per-user message limit, as the WebSocket
 * channel. Unlinked users get the how-to-link answer and nothing else happens. The reply is produced in the
 * background so one slow answer does not hold up the updates of other users.
 */
export function chatComposer(deps: ChatComposerDeps): Composer<Context> {
  const { authenticator, chat, limits, log } = deps;
  const composer = new Composer<Context>();

  composer.chatType('private').on('message:text', async (ctx) => {
    const text = ctx.message.text;
    if (text.startsWith('/')) return void (await ctx.reply(replies.unknownCommand));
    const auth = await authenticator.authenticateTelegram(ctx.from.id);
    if (!auth) return void (await ctx.reply(replies.howToLink(deps.baseUrl)));
    if (auth.license.features.chat === false) return void (await ctx.reply(replies.noChat));
    const verdict = limits.takeMessage(auth.userId, auth.license);
    if (!verdict.ok) return void (await ctx.reply(replies.rateLimited(verdict.retryAfter)));
    const job = answer(ctx, auth, String(ctx.message.message_id), text).finally(() => deps.inflight.delete(job));
    deps.inflight.add(job);
  });

  async function answer(ctx: Context, auth: AuthContext, id: string, text: string): Promise<void> {
    const timeout = AbortSignal.timeout(REPLY_TIMEOUT_MS);
    // Aborted once reading ends, for whatever reason: the upstream request ends with it.
    const done = new AbortController();
    let reply = '';
    let truncated = false;
    try {
      for await (const chunk of chat.reply(auth, { id, text }, AbortSignal.any([timeout, done.signal, deps.cutoff]))) {
        reply += chunk;
        if (reply.length > MAX_REPLY_LENGTH) {
          truncated = true;
          break;
        }
      }
    } catch (err) {
      // Given up at the shutdown's deadline (here and below): stop() logged it, and nothing more is sent.
      if (deps.cutoff.aborted) return;
      log.warn({ err: { message: (err as Error).message } }, 'chat service failed (telegram)');
      await ctx.reply(replies.chatUnavailable).catch(() => {});
      return;
    } finally {
      done.abort();
    }
    // The service ends its stream normally when the signal fires (the caller went away): what came is only a part.
    if (deps.cutoff.aborted) return;
    if (timeout.aborted && !truncated) {
      log.warn({ timeoutMs: REPLY_TIMEOUT_MS }, 'chat reply took too long (telegram)');
      await ctx.reply(replies.chatUnavailable).catch(() => {});
      return;
    }
    let parts = splitMessage(reply.trim() ? reply : '…');
    if (truncated || parts.length > MAX_REPLY_PARTS) {
      parts = [...parts.slice(0, MAX_REPLY_PARTS - 1), replies.truncated];
    }
    try {
      for (const part of parts) {
        if (deps.cutoff.aborted) return;
        await ctx.reply(part);
      }
    } catch (err) {
      if (deps.cutoff.aborted) return;
      log.warn({ err: { message: (err as Error).message } }, 'telegram reply failed');
    }
  }

  return composer;
}
