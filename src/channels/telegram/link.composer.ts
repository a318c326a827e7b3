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

/**
 * Codes one Telegram account may have checked per window before the bot refuses without a lookup: a real user
 * mistypes a few; a guesser costs a transaction and an audit row per try (the REST side of linking allows 30 requests
 * per 5 minutes). A successful link clears the count.
 */
const MAX_CODE_TRIES = 10;
const CODE_TRY_WINDOW_MS = 5 * 60_000;
/** Accounts tracked at once, so memory stays bounded under many accounts; past it the oldest count is forgotten. */
const MAX_TRACKED_ACCOUNTS = 10_000;

interface CodeTries {
  count: number;
  resetAt: number;
  /** Whether the refusals of this window have their (one) audit row. */
  refusalAudited: boolean;
}

/**
 * Per-account count of link codes checked, in fixed windows. Kept in this process: with several gateway processes
 * (webhook mode, or a change of poller) each keeps its own count. A try is counted before the lookup, so concurrent
 * updates (webhook mode) cannot all pass a check made before any of them failed.
 */
function createCodeTries() {
  const now = Date.now;
  const byAccount = new Map<string, CodeTries>();
  /** The account's window, or undefined once it has expired (and is forgotten). */
  const current = (account: string): CodeTries | undefined => {
    const entry = byAccount.get(account);
    if (entry && entry.resetAt <= now()) byAccount.delete(account);
    return entry && entry.resetAt > now() ? entry : undefined;
  };
  return {
    /** Counts a try, or returns the refused window when the account has used its tries up. */
    take(account: string): { ok: true } | { ok: false; entry: CodeTries } {
      const entry = current(account);
      if (entry && entry.count >= MAX_CODE_TRIES) return { ok: false, entry };
      if (entry) {
        entry.count++;
        return { ok: true };
      }
      // Insertion order is expiry order (every window has the same length): the oldest entries come first.
      for (const [key, old] of byAccount) {
        if (old.resetAt > now() && byAccount.size < MAX_TRACKED_ACCOUNTS) break;
        byAccount.delete(key);
      }
      byAccount.set(account, { count: 1, resetAt: now() + CODE_TRY_WINDOW_MS, refusalAudited: false });
      return { ok: true };
    },
    clear(account: string): void {
      byAccount.delete(account);
    },
  };
}

/** /start <code>, /link <code>, /whoami, /unlink: the Telegram side of account linking (private chats only). */
export function linkComposer(deps: LinkComposerDeps): Composer<Context> {
  const { authenticator, links, audit } = deps;
  const composer = new Composer<Context>();
  const tries = createCodeTries();
  const chat = composer.chatType('private');

  async function redeem(ctx: Context, code: string) {
    const from = ctx.from;
    if (!from) return;
    const telegramUserId = String(from.id);
    if (!CODE_SHAPE.test(code)) {
      await ctx.reply(replies.codeInvalid);
      return;
    }
    const allowed = tries.take(telegramUserId);
    if (!allowed.ok) {
      // One audit row for the whole refused burst of a window: a guesser must not fill the log instead.
      if (!allowed.entry.refusalAudited) {
        allowed.entry.refusalAudited = true;
        await audit.record({
          event: 'channel.link_refused',
          channel: 'telegram',
          details: { channelType: 'telegram', channelUserId: telegramUserId, reason: 'too_many_attempts' },
        });
      }
      await ctx.reply(replies.tooManyAttempts(Math.ceil((allowed.entry.resetAt - Date.now()) / 60_000)));
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
    tries.clear(telegramUserId);
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
