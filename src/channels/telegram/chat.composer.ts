import { Composer, type Context } from 'grammy';
import type { AuthContext, Authenticator } from '../../authenticator/index.js';
import type { ChatService } from '../chat/chat-service.js';
import type { UsageLimits } from '../chat/usage-limits.js';
import { replies, splitMessage } from './replies.js';

export interface ChatComposerDeps {
  authenticator: Pick<Authenticator, 'authenticateTelegram'>;
  chat: ChatService;
  limits: UsageLimits;
  baseUrl: string;
  log: { warn(obj: object, msg: string): void };
  /** Replies still being produced: the bot waits for them before it stops. */
  inflight: Set<Promise<void>>;
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
    let reply = '';
    try {
      for await (const chunk of chat.reply(auth, { id, text }, AbortSignal.timeout(120_000))) reply += chunk;
    } catch (err) {
      log.warn({ err: { message: (err as Error).message } }, 'chat service failed (telegram)');
      reply = '';
      await ctx.reply(replies.chatUnavailable).catch(() => {});
      return;
    }
    try {
      for (const part of splitMessage(reply.trim() ? reply : '…')) await ctx.reply(part);
    } catch (err) {
      log.warn({ err: { message: (err as Error).message } }, 'telegram reply failed');
    }
  }

  return composer;
}
