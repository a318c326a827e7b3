import { Composer, type Context } from 'grammy';
import type { AuditLog } from '../../audit/index.js';
import type { Authenticator } from '../../authenticator/index.js';
import type { ChannelLinks } from '../links/channel-links.store.js';
import { replies } from './replies.js';

export interface LinkComposerDeps {
  authenticator: Pick<Authenticator, 'authenticateTelegram'>;
  links: ChannelLinks;
  audit: AuditLog;
  baseUrl: string;
}

// Link codes are 22 base64url characters; anything else is not worth a database round trip.
const CODE_SHAPE = /^[A-Za-z0-9_-]{16,64}$/;

/** /start <code>, /link <code>, /whoami, /unlink: the Telegram side of account linking (private chats only). */
export function linkComposer(deps: LinkComposerDeps): Composer<Context> {
  const { authenticator, links, audit } = deps;
  const composer = new Composer<Context>();
  const chat = composer.chatType('private');

  async function redeem(ctx: Context, code: string) {
    const from = ctx.from;
    if (!from) return;
    const telegramUserId = String(from.id);
    if (!CODE_SHAPE.test(code)) {
      await ctx.reply(replies.codeInvalid);
      return;
    }
    const outcome = await links.redeemCode(code, 'telegram', telegramUserId);
    if (!outcome.ok) {
      const text = {
        invalid: replies.codeInvalid,
        expired: replies.codeExpired,
        linked_elsewhere: replies.linkedElsewhere,
      }[outcome.reason];
      await audit.record({
        event: 'channel.link_refused',
        channel: 'telegram',
        details: { channelType: 'telegram', channelUserId: telegramUserId, reason: outcome.reason },
      });
      await ctx.reply(text);
      return;
    }
    const auth = await authenticator.authenticateTelegram(telegramUserId);
    if (!outcome.alreadyLinked) {
      await audit.record({
        event: 'channel.linked',
        userId: outcome.userId,
        channel: 'telegram',
        details: { channelType: 'telegram', channelUserId: telegramUserId, method: 'code' },
      });
    }
    const email = auth?.email ?? '';
    await ctx.reply(outcome.alreadyLinked ? replies.alreadyLinked(email) : replies.linked(email));
  }

  chat.command('start', async (ctx) => {
    const code = ctx.match.trim();
    if (code) return redeem(ctx, code);
    const auth = await authenticator.authenticateTelegram(ctx.from.id);
    await ctx.reply(auth ? replies.welcomeBack(auth.name) : replies.howToLink(deps.baseUrl));
  });

  chat.command('link', async (ctx) => {
    const code = ctx.match.trim();
    if (!code) return void (await ctx.reply(replies.linkUsage));
    return redeem(ctx, code);
  });

  chat.command('whoami', async (ctx) => {
    const auth = await authenticator.authenticateTelegram(ctx.from.id);
    await ctx.reply(auth ? replies.whoami(auth.email, auth.name, auth.license.type) : replies.howToLink(deps.baseUrl));
  });

  chat.command('unlink', async (ctx) => {
    const telegramUserId = String(ctx.from.id);
    const userId = await links.unlinkAccount('telegram', telegramUserId);
    if (!userId) return void (await ctx.reply(replies.notLinked));
    await audit.record({
      event: 'channel.unlinked',
      userId,
      channel: 'telegram',
      details: { channelType: 'telegram', channelUserId: telegramUserId, via: 'telegram' },
    });
    await ctx.reply(replies.unlinked);
  });

  return composer;
}
