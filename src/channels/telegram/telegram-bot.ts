import { createHash, timingSafeEqual } from 'node:crypto';
import { autoRetry } from '@grammyjs/auto-retry';
import { Bot, type Transformer } from 'grammy';
import type { Update } from 'grammy/types';
import type { AuditLog } from '../../audit/index.js';
import type { Authenticator } from '../../authenticator/index.js';
import type { AdvisoryLock, Database } from '../../db/index.js';
import { AppError } from '../../errors/index.js';
import type { ChatService } from '../chat/chat-service.js';
import type { UsageLimits } from '../chat/usage-limits.js';
import type { ChannelLinks } from '../links/channel-links.store.js';
import { chatComposer } from './chat.composer.js';
import { linkComposer } from './link.composer.js';
import { updateGuard } from './update-guard.js';

/** How long a request waits for the bot's first getMe before answering without a deep link. */
const USERNAME_WAIT_MS = 3000;
/**
 * How long a webhook update waits for it (or telegram.api_timeout, if shorter) before answering 503: Telegram delivers
 * the update again later, and a connection held for a minute per update helps nobody during a Bot API outage.
 */
const WEBHOOK_WAIT_MS = 10_000;
/**
 * On close, how long the last getUpdates (grammY's confirmation of the offset) may take: a silent Bot API would hold it
 * for telegram.api_timeout (60 s), past server.shutdown_timeout (10 s by default).
 */
const STOP_CONFIRM_MS = 2000;
/**
 * How long stop() waits for the replies in progress when its caller gives no deadline: what the app gives them with
 * the default server.shutdown_timeout (half of it, see telegram.plugin.ts).
 */
const STOP_REPLIES_MS = 5000;
/**
 * Telegram's flood control (429 with retry_after, past about one message a second in a chat) is waited out and the
 * call sent again, up to this many times: a 16-part reply meets it a few times. A longer wait than FLOOD_MAX_WAIT_S
 * (or telegram.api_timeout, if shorter) is not waited for: the call fails as before instead of holding the update.
 */
const FLOOD_RETRIES = 3;
const FLOOD_MAX_WAIT_S = 10;
/** The Bot API methods whose failures mean this process cannot poll (grammY retries both of them for ever). */
const POLLING_METHODS = new Set(['getUpdates', 'deleteWebhook']);

/** Whether `work` settled within `ms`; rejects if it failed in that time (a later failure is ignored). */
async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([work.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

export interface TelegramDeps {
  token: string;
  apiRoot: string;
  mode: 'polling' | 'webhook';
  webhookSecret: string;
  /** Seconds between a standby process's attempts to take over polling. */
  standbyRetry: number;
  /** Seconds any Bot API call may take: a silent Bot API fails the call instead of holding it for grammY's 500 s. */
  apiTimeout: number;
  baseUrl: string;
  db: Pick<Database, 'tryAdvisoryLock'>;
  authenticator: Pick<Authenticator, 'authenticateTelegram'>;
  links: ChannelLinks;
  chat: ChatService;
  limits: UsageLimits;
  audit: AuditLog;
  log: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
}

/** grammY's own AbortSignal type (a shim's) in its API calls. */
type ApiSignal = Parameters<Transformer>[3];

/** The updates the bot acts on: everything else is never fetched. */
const ALLOWED_UPDATES = ['message'] as const;

/**
 * The advisory lock key of "polling this bot": derived from the bot id (the token's public part), so two gateways with
 * different bots on one database do not block each other. 48 bits: a safe JavaScript integer, a valid bigint key.
 */
export function pollingLockKey(token: string): number {
  const botId = token.split(':')[0] ?? '';
  return createHash('sha256').update(`telegram-polling:${botId}`).digest().readUIntBE(0, 6);
}

/**
 * The gateway's Telegram bot: grammY with the link and chat composers, and its lifecycle. In polling mode only the
 * process holding the PostgreSQL advisory lock polls; the others retry every standbyRetry seconds. In webhook mode
 * the plugin hands each verified update to handleWebhookUpdate.
 */
export function createTelegram(deps: TelegramDeps) {
  const { log } = deps;
  const bot = new Bot(deps.token, {
    client: { timeoutSeconds: deps.apiTimeout, ...(deps.apiRoot ? { apiRoot: deps.apiRoot } : {}) },
  });
  // getUpdates holds its request open for this long when no update comes: it must end well within the call timeout.
  const longPollSeconds = Math.min(30, Math.floor(deps.apiTimeout / 2));
  const inflight = new Set<Promise<void>>();
  // grammY's init (getMe) retries for as long as the Bot API cannot be reached; closing() and stop() end that.
  const lifetime = new AbortController();
  // Aborted when the shutdown stops waiting for the replies in progress (its deadline): a reply still being produced,
  // or waiting out flood control, is given up then, not later.
  const cutoff = new AbortController();
  let cutoffTimer: NodeJS.Timeout | undefined;
  const cutOff = () => {
    if (cutoff.signal.aborted) return;
    if (inflight.size > 0) {
      log.warn(
        { dropped: inflight.size },
        'telegram: shutdown deadline reached; dropping the chat replies in progress',
      );
    }
    cutoff.abort();
  };
  const floodRetry = autoRetry({
    maxRetryAttempts: FLOOD_RETRIES,
    maxDelaySeconds: Math.min(FLOOD_MAX_WAIT_S, deps.apiTimeout),
    // Only 429s: the plugin would retry network errors for ever, uncounted (getUpdates failures must reach the
    // polling watchdog below), and 5xx with a backoff from 3 s that doubles: a reply could be sent twice.
    rethrowHttpErrors: true,
    rethrowInternalServerErrors: true,
  });
  const floodControl: Transformer = (prev, method, payload, signal) =>
    floodRetry((m, p) => prev(m, p, signal), method, payload, signal ?? (cutoff.signal as ApiSignal));
  bot.api.config.use(floodControl);
  /**
   * The polling watchdog: while this process leads, getUpdates (or the deleteWebhook before it) failing without a
   * break for telegram.api_timeout seconds means this process cannot reach the Bot API, where grammY would go on
   * retrying every 3 s for ever, holding the lock. It stops polling, and lead() gives the lock up for a standby that
   * may reach Telegram. One failure, however slow a batch was before it, is not enough: the streak is timed from the
   * start of its first failed call.
   */
  let failingSince: number | null = null;
  let unreachable = false;
  const pollingWatchdog: Transformer = async (prev, method, payload, signal) => {
    if (!POLLING_METHODS.has(method)) return prev(method, payload, signal);
    const startedAt = Date.now();
    try {
      const res = await prev(method, payload, signal);
      if (res.ok) failingSince = null;
      else pollingFailed(startedAt, signal);
      return res;
    } catch (err) {
      pollingFailed(startedAt, signal);
      throw err;
    }
  };
  const pollingFailed = (startedAt: number, signal: ApiSignal) => {
    // Our own stop() aborting the long poll, or its last confirming call: not the Bot API's failure.
    if (signal?.aborted || !bot.isRunning()) return;
    failingSince ??= startedAt;
    if (Date.now() - failingSince < deps.apiTimeout * 1000) return;
    unreachable = true;
    log.warn(
      { failingForMs: Date.now() - failingSince },
      'telegram Bot API unreachable while polling; giving the polling lock up for another process',
    );
    void bot.stop().catch(() => {});
  };
  bot.api.config.use(pollingWatchdog);
  bot.catch((err) =>
    log.error({ err: { message: err.message }, updateId: err.ctx.update.update_id }, 'telegram update failed'),
  );
  // Polling stopped (the lock was lost, or the gateway is closing) while a fetched batch is being handled: stop()
  // confirmed it only up to the update in progress, so the rest is left unhandled for whichever process polls next,
  // which would otherwise answer it a second time.
  bot.use(async (_ctx, next) => {
    if (deps.mode === 'polling' && !bot.isRunning()) return;
    await next();
  });
  bot.use(updateGuard(log));
  bot.use(
    linkComposer({ authenticator: deps.authenticator, links: deps.links, audit: deps.audit, baseUrl: deps.baseUrl }),
  );
  bot.use(
    chatComposer({
      authenticator: deps.authenticator,
      chat: deps.chat,
      limits: deps.limits,
      baseUrl: deps.baseUrl,
      log,
      inflight,
      cutoff: cutoff.signal,
    }),
  );

  let initializing: Promise<void> | null = null;
  const init = (): Promise<void> => {
    initializing ??= bot.init(lifetime.signal as Parameters<typeof bot.init>[0]).catch((err) => {
      initializing = null;
      throw err;
    });
    return initializing;
  };
  /**
   * Whether the bot knows who it is (getMe) within `waitMs`: false when the Bot API has not answered by then (the
   * attempt goes on in the background, and a later call finds it done). Rejects when getMe failed for good.
   */
  const initialized = async (waitMs: number): Promise<boolean> => {
    if (lifetime.signal.aborted) return bot.isInited();
    const attempt = init().then(() => true);
    attempt.catch(() => {}); // a failure after the wait ended is reported by the next call, not left unhandled
    let timer: NodeJS.Timeout | undefined;
    let closing: (() => void) | undefined;
    const waited = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), waitMs);
      // The gateway is shutting down: nothing waits for the Bot API any more.
      closing = () => resolve(false);
      lifetime.signal.addEventListener('abort', closing, { once: true });
    });
    try {
      return await Promise.race([attempt, waited]);
    } finally {
      clearTimeout(timer);
      if (closing) lifetime.signal.removeEventListener('abort', closing);
    }
  };

  let stopped = false;
  let lock: AdvisoryLock | null = null;
  let polling: Promise<void> | null = null;
  let retry: NodeJS.Timeout | null = null;

  /**
   * `rounds` standby intervals from now, lead() is tried again. A process that gave the lock up because it cannot reach
   * the Bot API sits out two, so that every standby (trying once an interval) gets its chance at the lock first.
   */
  const scheduleRetry = (rounds = 1) => {
    if (stopped) return;
    retry = setTimeout(() => void lead(), rounds * deps.standbyRetry * 1000);
    retry.unref();
  };

  /** Try to become the one polling process; on failure, or when leadership is lost, try again later. */
  async function lead(): Promise<void> {
    retry = null;
    if (stopped || polling) return;
    // Lost while init() still runs (grammY may retry getMe for minutes), stop() finds no polling to stop: this keeps
    // the start that follows from polling without the lock.
    const held = { lost: false };
    try {
      lock = await deps.db.tryAdvisoryLock(pollingLockKey(deps.token), () => {
        held.lost = true;
        log.warn({}, 'telegram polling lock lost (database connection); stopping polling');
        void bot.stop().catch(() => {});
      });
    } catch (err) {
      log.warn({ err: { message: (err as Error).message } }, 'telegram polling lock unavailable; retrying');
      scheduleRetry();
      return;
    }
    if (!lock) {
      scheduleRetry();
      return;
    }
    if (stopped) {
      await lock.release();
      lock = null;
      return;
    }
    const taken = lock;
    unreachable = false;
    polling = (async () => {
      try {
        // getMe gets one telegram.api_timeout under the lock; it goes on in the background while a standby tries.
        if (!(await initialized(deps.apiTimeout * 1000))) {
          if (stopped || held.lost) return;
          unreachable = true;
          log.warn(
            { waitedMs: deps.apiTimeout * 1000 },
            'telegram getMe did not answer; giving the polling lock up for another process',
          );
          return;
        }
        if (stopped || held.lost) return;
        failingSince = null;
        await bot.start({
          allowed_updates: [...ALLOWED_UPDATES],
          timeout: longPollSeconds,
          onStart: (me) => log.info({ bot: me.username }, 'telegram bot polling (this process holds the lock)'),
        });
      } catch (err) {
        // Unless the gateway is closing, which aborts a getMe still being retried.
        if (!lifetime.signal.aborted) {
          log.warn({ err: { message: (err as Error).message } }, 'telegram polling stopped with an error; retrying');
        }
      } finally {
        await taken.release();
        if (lock === taken) lock = null;
        polling = null;
        scheduleRetry(unreachable ? 2 : 1);
      }
    })();
  }

  return {
    bot,
    mode: deps.mode,
    /** Whether this process is the one polling right now. */
    get isPolling() {
      return bot.isRunning();
    },

    /**
     * The bot's @username (from getMe), for t.me deep links; null when the Bot API cannot be reached, or does not
     * answer within USERNAME_WAIT_MS (grammY waits up to 500 s: a request must not). getMe goes on in the background,
     * and the next call has the answer.
     */
    async username(): Promise<string | null> {
      try {
        if (await initialized(USERNAME_WAIT_MS)) return bot.botInfo.username;
        log.warn({ waitedMs: USERNAME_WAIT_MS }, 'telegram getMe did not answer in time; no deep link');
        return null;
      } catch (err) {
        log.warn({ err: { message: (err as Error).message } }, 'telegram getMe failed');
        return null;
      }
    },

    /** Starts polling (leader election) or, in webhook mode, nothing: updates arrive through the route. */
    start(): void {
      if (deps.mode === 'polling') void lead();
    },

    /** Registers the webhook with Telegram, with the secret token it must echo back. */
    async setWebhook(url: string): Promise<void> {
      await bot.api.setWebhook(url, { secret_token: deps.webhookSecret, allowed_updates: [...ALLOWED_UPDATES] });
      log.info({ url }, 'telegram webhook registered');
    },

    /** Constant-time check of X-Telegram-Bot-Api-Secret-Token. */
    webhookSecretMatches(given: string | string[] | undefined): boolean {
      if (typeof given !== 'string') return false;
      const a = createHash('sha256').update(given).digest();
      const b = createHash('sha256').update(deps.webhookSecret).digest();
      return timingSafeEqual(a, b);
    },

    /**
     * Handles one webhook update. Refused with TELEGRAM_UNAVAILABLE (503, and Telegram delivers it again later) while
     * the bot cannot learn who it is from the Bot API (getMe, within WEBHOOK_WAIT_MS): its handlers need that.
     */
    async handleWebhookUpdate(update: Update): Promise<void> {
      const ready = await initialized(Math.min(deps.apiTimeout * 1000, WEBHOOK_WAIT_MS)).catch((err: Error) => {
        log.warn({ err: { message: err.message } }, 'telegram getMe failed');
        return false;
      });
      if (!ready) throw new AppError('TELEGRAM_UNAVAILABLE');
      try {
        await bot.handleUpdate(update);
      } catch (err) {
        // A failing update is logged and acknowledged: a retry by Telegram would fail the same way.
        log.error({ err: { message: (err as Error).message }, updateId: update.update_id }, 'telegram update failed');
      }
    },

    /**
     * The gateway is closing (before in-flight requests are drained): waiting for getMe gives up now, so a webhook
     * update held by a silent Bot API answers at once instead of holding the shutdown for telegram.api_timeout. A
     * reply waiting out flood control (a webhook update's too) may go on until `deadline` (epoch ms), stop()'s.
     */
    closing(deadline: number): void {
      lifetime.abort();
      clearTimeout(cutoffTimer);
      cutoffTimer = setTimeout(cutOff, Math.max(0, deadline - Date.now()));
      cutoffTimer.unref();
    },

    /**
     * Stops polling (the offset confirmation within STOP_CONFIRM_MS), waits for the updates and chat replies in
     * progress until `deadline` (epoch ms; STOP_REPLIES_MS from now if not given), gives up the replies still going
     * then, and gives the polling lock up. Never throws: a Bot API that is down or silent is no reason to leave the
     * rest of the app, the database included, unclosed.
     */
    async stop({ deadline = Date.now() + STOP_REPLIES_MS }: { deadline?: number } = {}): Promise<void> {
      stopped = true;
      lifetime.abort();
      if (retry) clearTimeout(retry);
      if (bot.isRunning()) {
        // grammY confirms the offset with one more getUpdates, which waits up to api_timeout and throws when the Bot
        // API cannot be reached. Unconfirmed, the updates handled last come again to whichever process polls next.
        try {
          if (!(await settlesWithin(bot.stop(), STOP_CONFIRM_MS))) {
            log.warn({ waitedMs: STOP_CONFIRM_MS }, 'telegram: the Bot API did not confirm the last updates in time');
          }
        } catch (err) {
          const { message } = err as Error;
          log.warn({ err: { message } }, 'telegram: stopping polling could not confirm the last updates');
        }
      }
      // The update being handled may start a reply meanwhile: waited for too.
      let settled = true;
      while (settled && (polling || inflight.size > 0)) {
        const left = Math.max(0, deadline - Date.now());
        settled = await settlesWithin(Promise.allSettled([polling, ...inflight]), left);
      }
      if (!settled && inflight.size === 0) {
        log.warn({}, 'telegram: shutdown deadline reached while an update was being handled');
      }
      clearTimeout(cutoffTimer);
      cutOff();
      await lock?.release();
      lock = null;
    },
  };
}

export type Telegram = ReturnType<typeof createTelegram>;
