import type { FastifyInstance } from 'fastify';
import type { Update } from 'grammy/types';
import { AppError } from '../../errors/index.js';
import { WebhookBody } from '../links/channels.schemas.js';
import { ErrorResponse } from '../rest/auth.schemas.js';
import type { Telegram } from './telegram-bot.js';

export const WEBHOOK_PATH = '/telegram/webhook';

/**
 * The bot's lifecycle in the app: polling starts once the app is ready (leader election inside createTelegram);
 * webhook mode mounts POST /telegram/webhook, which refuses a wrong X-Telegram-Bot-Api-Secret-Token with 401 before
 * reading the update. The bot stops when the app closes, and waits for the replies in progress until half of
 * server.shutdown_timeout has passed since the close began.
 */
export async function telegramPlugin(
  app: FastifyInstance,
  opts: { telegram: Telegram; webhookUrl: string; registerWebhook: boolean },
): Promise<void> {
  const { telegram } = opts;

  if (telegram.mode === 'webhook') {
    app.post<{ Body: Update }>(
      WEBHOOK_PATH,
      {
        // Updates are Telegram's (names, texts): the bot stores only ids and link codes, so a NUL in them is no reason
        // to refuse the update (a non-2xx answer makes Telegram retry it).
        config: { allowNul: true },
        schema: {
          summary: 'Telegram webhook (called by Telegram with the configured secret token)',
          tags: ['channels'],
          body: WebhookBody,
          response: {
            200: { type: 'object', properties: { ok: { type: 'boolean' } } },
            401: ErrorResponse,
            503: ErrorResponse,
          },
        },
        async onRequest(request) {
          if (!telegram.webhookSecretMatches(request.headers['x-telegram-bot-api-secret-token'])) {
            throw new AppError('TELEGRAM_WEBHOOK_SECRET_INVALID');
          }
        },
      },
      async (request) => {
        await telegram.handleWebhookUpdate(request.body);
        return { ok: true };
      },
    );
    if (opts.registerWebhook) {
      app.addHook('onListen', async () => {
        await telegram.setWebhook(opts.webhookUrl).catch((err: Error) => {
          app.log.error({ err: { message: err.message } }, 'telegram setWebhook failed; updates will not arrive');
        });
      });
    } else {
      app.log.warn(
        { url: opts.webhookUrl },
        'telegram webhook not registered automatically (not HTTPS and telegram.webhook_url unset); call setWebhook yourself',
      );
    }
  }

  app.addHook('onReady', async () => telegram.start());
  // The replies in progress get the first half of server.shutdown_timeout, counted from the start of the close, as the
  // app's after-answer work does (app.ts): the other half is for the rest of the close.
  let deadline: number | undefined;
  app.addHook('preClose', (done) => {
    deadline = Date.now() + (app.config.server.shutdown_timeout * 1000) / 2;
    telegram.closing(deadline);
    done();
  });
  app.addHook('onClose', async () => telegram.stop({ deadline }));
}
