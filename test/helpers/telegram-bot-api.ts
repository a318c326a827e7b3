/**
 * A local stand-in for the Telegram Bot API, spoken over real HTTP.
 *
 * It implements enough of https://core.telegram.org/bots/api that the real grammY
 * client works against it: `new Bot(token, { client: { apiRoot: standIn.url } })`.
 *
 * - `POST|GET <url>/bot<token>/<method>` with a JSON body, an
 *   application/x-www-form-urlencoded body, or query-string parameters. `<url>/<via>/bot<token>/<method>`
 *   too: each call records its `via`, so several clients on one stand-in can be told apart.
 * - Answers `{"ok":true,"result":...}` or `{"ok":false,"error_code":...,"description":...}`
 *   with the HTTP status equal to `error_code`, as the real server does.
 * - Long polling (`getUpdates`) with `offset` confirmation, `limit`, `timeout` (capped by
 *   `maxLongPollMs`) and `allowed_updates`; a second concurrent `getUpdates` terminates the held
 *   one with 409, and `getUpdates` while a webhook is set answers 409, both as the real API does.
 * - Webhook mode: `pushUpdate` POSTs to the webhook URL with `X-Telegram-Bot-Api-Secret-Token`
 *   and reports the HTTP status; a JSON body with a `method` field in the webhook's response (a
 *   grammY "webhook reply") is executed like a normal API call.
 */
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BotCommand, Message, Update, UserFromGetMe } from 'grammy/types';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/** An update as given to `pushUpdate`: `update_id` is assigned when missing. */
export type UpdateInput = Omit<Update, 'update_id'> & { update_id?: number };

/** A recorded `sendMessage` call: the (normalised) request parameters plus what the server assigned. */
export interface SentMessage {
  chat_id: number | string;
  text: string;
  message_id: number;
  date: number;
  parse_mode?: string;
  reply_markup?: unknown;
  /** The Message object returned to the caller. */
  message: Message;
  /** Any further parameters as sent (entities, link_preview_options, reply_parameters, ...). */
  [param: string]: unknown;
}

/** Every API call the stand-in answered (including failing ones), in order. */
export interface ApiCall {
  /** Method name as sent in the URL. */
  method: string;
  params: Record<string, unknown>;
  /** Whether the token in the URL was the right one. */
  authorized: boolean;
  /**
   * The path segment before `/bot<token>` when the caller's apiRoot has one (`<url>/<via>`): gives several clients
   * (gateway processes) one stand-in and still tells their calls apart. Undefined for plain `<url>` callers.
   */
  via?: string;
}

export interface WebhookState {
  url: string;
  secret_token?: string;
  max_connections?: number;
  allowed_updates?: string[];
  ip_address?: string;
  /** Unix time of the last failed delivery, as in getWebhookInfo. */
  last_error_date?: number;
  last_error_message?: string;
}

export interface SendTextInput {
  fromId: number;
  text: string;
  username?: string;
  firstName?: string;
  lastName?: string;
  languageCode?: string;
}

export interface PushOptions {
  /**
   * Webhook mode only: the value of `X-Telegram-Bot-Api-Secret-Token` for this delivery instead of
   * the configured `secret_token`; `null` omits the header.
   */
  secretToken?: string | null;
}

export type ConflictPolicy = 'terminate-previous' | 'reject-new';

export interface TelegramBotApiOptions {
  /** The bot token, e.g. `123456789:AAE-test-token`. The numeric part before ':' becomes the bot id. */
  token: string;
  /** Username returned by getMe (default `test_gateway_bot`). */
  botUsername?: string;
  /** first_name returned by getMe (default `Test Gateway Bot`). */
  botFirstName?: string;
  /**
   * Methods that are answered with `true` without further checks. Defaults to
   * {@link DEFAULT_ALLOWED_METHODS}; pass `[...DEFAULT_ALLOWED_METHODS, 'x']` to extend it.
   */
  allowedMethods?: Iterable<string>;
  /** Upper bound on how long a getUpdates request is held, whatever its `timeout` (default 2000 ms). */
  maxLongPollMs?: number;
  /** Timeout of one webhook delivery (default 5000 ms); a timed-out delivery reports status 0. */
  webhookTimeoutMs?: number;
  /**
   * What happens when a getUpdates arrives while another one is held. The real API answers the
   * *held* request with 409 and serves the new one (`terminate-previous`, the default);
   * `reject-new` answers the newcomer with 409 instead.
   */
  conflictPolicy?: ConflictPolicy;
  /** update_id of the first pushed update (default 100000001). */
  firstUpdateId?: number;
}

export interface TelegramBotApi {
  /** `http://127.0.0.1:<port>`; no trailing slash, as grammY requires for `apiRoot`. */
  readonly url: string;
  /** Same as `url`. */
  readonly apiRoot: string;
  readonly token: string;
  /** The user returned by getMe. */
  readonly botInfo: UserFromGetMe;
  /** Every successful sendMessage, oldest first (the live array). */
  readonly sentMessages: SentMessage[];
  /** Every request answered, oldest first (the live array). */
  readonly calls: ApiCall[];
  /** The current webhook, or null when none is set. */
  readonly webhook: WebhookState | null;
  /** How many getUpdates requests arrived (with the right token). */
  readonly getUpdatesCalls: number;
  /** Updates queued for getUpdates and not yet confirmed by an offset. */
  readonly pendingUpdates: readonly Update[];
  /** Commands for the default scope and language, as set by setMyCommands. */
  readonly commands: readonly BotCommand[];
  /** Whether a getUpdates request is currently being held. */
  readonly isPolling: boolean;
  /**
   * Resolves with the first sent message (already recorded or arriving later) matching the
   * predicate; rejects after timeoutMs.
   */
  waitForMessage(predicate?: (message: SentMessage) => boolean, timeoutMs?: number): Promise<SentMessage>;
  /** Resolves once a getUpdates request is held (a long-polling bot is waiting); rejects after timeoutMs. */
  waitForPolling(timeoutMs?: number): Promise<void>;
  /**
   * Queues the update for getUpdates (resolves to undefined) or, when a webhook is set, POSTs it to
   * the webhook and resolves to the HTTP status of that delivery (0 when the connection failed or
   * timed out). Updates of a type excluded by `allowed_updates` are dropped (undefined).
   */
  pushUpdate(update: UpdateInput, options?: PushOptions): Promise<number | undefined>;
  /** Builds a private-chat text `message` update from the user and pushes it. */
  sendText(input: SendTextInput, options?: PushOptions): Promise<{ update: Update; status: number | undefined }>;
  /** Ends held getUpdates requests (with an empty result), aborts webhook deliveries, closes the server. */
  close(): Promise<void>;
}

/** Methods answered with `true` by default. */
export const DEFAULT_ALLOWED_METHODS: readonly string[] = [
  'answerCallbackQuery',
  'sendChatAction',
  'deleteMessage',
  'deleteMessages',
  'setMyDescription',
  'setMyShortDescription',
  'setMyName',
  'setChatMenuButton',
  'setMyDefaultAdministratorRights',
  'setMessageReaction',
  'logOut',
  'close',
];

/** Update types delivered when `allowed_updates` is empty or was never given. */
const OPT_IN_UPDATE_TYPES = new Set(['chat_member', 'message_reaction', 'message_reaction_count']);

const TERMINATED_BY_OTHER =
  'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running';
const WEBHOOK_ACTIVE =
  "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
const MAX_BODY_BYTES = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

type Params = Record<string, unknown>;

type ApiReply =
  | { ok: true; result: unknown }
  | { ok: false; error_code: number; description: string; parameters?: Record<string, unknown> };

class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly description: string,
  ) {
    super(description);
  }
}

const badRequest = (description: string): ApiError => new ApiError(400, `Bad Request: ${description}`);

interface HeldPoll {
  res: ServerResponse;
  limit: number;
  timer: NodeJS.Timeout;
}

interface MessageWaiter {
  predicate: (message: SentMessage) => boolean;
  resolve: (message: SentMessage) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

interface KnownUser {
  id: number;
  first_name: string;
  last_name?: string;
  username?: string;
  language_code?: string;
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function asInt(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return Math.trunc(value);
  if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) return Number(value.trim());
  return undefined;
}

function asString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  return undefined;
}

function asBool(value: unknown): boolean {
  return value === true || value === 'true' || value === '1' || value === 1;
}

/** Form-encoded and query parameters carry JSON for structured values; JSON bodies carry them as-is. */
function asJson(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const trimmed = value.trim();
  if (!trimmed.startsWith('{') && !trimmed.startsWith('[')) return value;
  try {
    return JSON.parse(trimmed) as unknown;
  } catch {
    throw badRequest("can't parse JSON encoded parameter");
  }
}

function asStringArray(value: unknown, name: string): string[] | undefined {
  const parsed = asJson(value);
  if (parsed === undefined || parsed === null || parsed === '') return undefined;
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) {
    throw badRequest(`can't parse ${name} JSON array`);
  }
  return parsed;
}

function normaliseChatId(value: unknown): number | string | undefined {
  const int = asInt(value);
  if (int !== undefined) return int;
  const str = asString(value);
  return str === undefined || str === '' ? undefined : str;
}

function updateType(update: Update | UpdateInput): string | undefined {
  return Object.keys(update).find((key) => key !== 'update_id');
}

function botIdFromToken(token: string): number {
  const head = token.split(':', 1)[0] ?? '';
  return /^\d{1,15}$/.test(head) ? Number(head) : 7000000001;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    size += buf.length;
    if (size > MAX_BODY_BYTES) throw new ApiError(413, 'Request Entity Too Large');
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

async function readParams(req: IncomingMessage, url: URL): Promise<Params> {
  const params: Params = Object.fromEntries(url.searchParams);
  const body = await readBody(req);
  const contentType = (req.headers['content-type'] ?? '').split(';', 1)[0]?.trim().toLowerCase() ?? '';
  if (body.length === 0) return params;
  if (contentType === 'application/json') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw badRequest("can't parse JSON object");
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw badRequest('JSON object expected');
    }
    return { ...params, ...(parsed as Params) };
  }
  if (contentType === 'application/x-www-form-urlencoded' || contentType === '') {
    return { ...params, ...Object.fromEntries(new URLSearchParams(body.toString('utf8'))) };
  }
  if (contentType === 'multipart/form-data') {
    throw badRequest('multipart/form-data is not supported by the test stand-in');
  }
  throw badRequest(`unsupported Content-Type ${contentType}`);
}

function writeReply(res: ServerResponse, reply: ApiReply): void {
  if (res.writableEnded || res.destroyed) return;
  const body = JSON.stringify(reply);
  res.writeHead(reply.ok ? 200 : reply.error_code, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

function errorReply(error: unknown): ApiReply {
  if (error instanceof ApiError) return { ok: false, error_code: error.code, description: error.description };
  const message = error instanceof Error ? error.message : String(error);
  return { ok: false, error_code: 500, description: `Internal Server Error: ${message}` };
}

// ---------------------------------------------------------------------------------------------
// The stand-in
// ---------------------------------------------------------------------------------------------

export async function createTelegramBotApi(options: TelegramBotApiOptions): Promise<TelegramBotApi> {
  const token = options.token;
  const maxLongPollMs = options.maxLongPollMs ?? 2000;
  const webhookTimeoutMs = options.webhookTimeoutMs ?? 5000;
  const conflictPolicy: ConflictPolicy = options.conflictPolicy ?? 'terminate-previous';
  const allowedMethods = new Set([...(options.allowedMethods ?? DEFAULT_ALLOWED_METHODS)].map((m) => m.toLowerCase()));

  const botInfo: UserFromGetMe = {
    id: botIdFromToken(token),
    is_bot: true,
    first_name: options.botFirstName ?? 'Test Gateway Bot',
    username: options.botUsername ?? 'test_gateway_bot',
    can_join_groups: true,
    can_read_all_group_messages: false,
    supports_inline_queries: false,
    can_connect_to_business: false,
    has_main_web_app: false,
    has_topics_enabled: false,
    allows_users_to_create_topics: false,
    can_manage_bots: false,
    supports_join_request_queries: false,
  };

  const sentMessages: SentMessage[] = [];
  const calls: ApiCall[] = [];
  const queue: Update[] = [];
  const knownUsers = new Map<number, KnownUser>();
  const lastMessageId = new Map<string, number>();
  const commandSets = new Map<string, BotCommand[]>();
  const waiters = new Set<MessageWaiter>();
  const pollWaiters = new Set<() => void>();
  const deliveries = new Set<ReturnType<typeof httpRequest>>();

  let nextUpdateId = options.firstUpdateId ?? 100000001;
  let allowedUpdates: string[] = [];
  let webhook: WebhookState | null = null;
  let held: HeldPoll | null = null;
  let getUpdatesCalls = 0;
  let closed = false;
  let deliveryChain: Promise<unknown> = Promise.resolve();

  // --- helpers ------------------------------------------------------------------------------

  const nextMessageId = (chatId: number | string): number => {
    const key = String(chatId);
    const id = (lastMessageId.get(key) ?? 0) + 1;
    lastMessageId.set(key, id);
    return id;
  };

  const isAllowedType = (type: string | undefined): boolean => {
    if (type === undefined) return false;
    if (allowedUpdates.length === 0) return !OPT_IN_UPDATE_TYPES.has(type);
    return allowedUpdates.includes(type);
  };

  const chatFor = (chatId: number | string): Message['chat'] => {
    if (typeof chatId === 'string') {
      const username = chatId.replace(/^@/, '');
      return { id: -1001000000001, type: 'channel', title: username, username };
    }
    if (chatId > 0) {
      const user = knownUsers.get(chatId);
      return {
        id: chatId,
        type: 'private',
        first_name: user?.first_name ?? 'Test',
        ...(user?.last_name ? { last_name: user.last_name } : {}),
        ...(user?.username ? { username: user.username } : {}),
      };
    }
    return String(chatId).startsWith('-100')
      ? { id: chatId, type: 'supergroup', title: 'Test supergroup' }
      : { id: chatId, type: 'group', title: 'Test group' };
  };

  const confirm = (offset: number | undefined): void => {
    if (offset === undefined || offset === 0) return;
    if (offset > 0) {
      while (queue.length > 0 && (queue[0]?.update_id ?? 0) < offset) queue.shift();
      return;
    }
    // Negative offset: only the last |offset| updates are kept, all earlier ones are forgotten.
    if (queue.length > -offset) queue.splice(0, queue.length + offset);
  };

  const releaseHeld = (result: Update[]): ServerResponse | undefined => {
    const poll = held;
    if (poll === null) return undefined;
    held = null;
    clearTimeout(poll.timer);
    writeReply(poll.res, { ok: true, result });
    return poll.res;
  };

  const notifyMessage = (message: SentMessage): void => {
    for (const waiter of waiters) {
      let matches = false;
      try {
        matches = waiter.predicate(message);
      } catch (error) {
        waiters.delete(waiter);
        clearTimeout(waiter.timer);
        waiter.reject(error instanceof Error ? error : new Error(String(error)));
        continue;
      }
      if (matches) {
        waiters.delete(waiter);
        clearTimeout(waiter.timer);
        waiter.resolve(message);
      }
    }
  };

  // --- methods ------------------------------------------------------------------------------

  const sendMessage = (params: Params): Message => {
    const chatId = normaliseChatId(params.chat_id);
    if (chatId === undefined) throw badRequest('chat_id is empty');
    const text = asString(params.text);
    if (text === undefined || text.trim() === '') throw badRequest('message text is empty');
    if (text.length > 4096) throw badRequest('message is too long');
    const normalised: Params = {};
    for (const [key, value] of Object.entries(params)) {
      normalised[key] = ['reply_markup', 'entities', 'link_preview_options', 'reply_parameters'].includes(key)
        ? asJson(value)
        : value;
    }
    const entities = normalised.entities;
    const replyMarkup = normalised.reply_markup as { inline_keyboard?: unknown } | undefined;
    const message = {
      message_id: nextMessageId(chatId),
      from: {
        id: botInfo.id,
        is_bot: true,
        first_name: botInfo.first_name,
        username: botInfo.username,
      },
      chat: chatFor(chatId),
      date: nowSeconds(),
      text,
      ...(Array.isArray(entities) && entities.length > 0 ? { entities } : {}),
      ...(replyMarkup?.inline_keyboard ? { reply_markup: replyMarkup } : {}),
    } as Message;
    const recorded: SentMessage = {
      ...normalised,
      chat_id: chatId,
      text,
      message_id: message.message_id,
      date: message.date,
      message,
    };
    sentMessages.push(recorded);
    notifyMessage(recorded);
    return message;
  };

  const commandKey = (params: Params): string => {
    const scope = asJson(params.scope) as { type?: string } | undefined;
    return `${JSON.stringify(scope ?? { type: 'default' })}|${asString(params.language_code) ?? ''}`;
  };

  const setWebhook = (params: Params): true => {
    const url = asString(params.url) ?? '';
    if (url === '') {
      webhook = null;
      if (asBool(params.drop_pending_updates)) queue.length = 0;
      return true;
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw badRequest('invalid webhook URL specified');
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw badRequest('bad webhook: unsupported URL protocol');
    }
    const secret = asString(params.secret_token);
    if (secret !== undefined && !/^[A-Za-z0-9_-]{1,256}$/.test(secret)) {
      throw badRequest('secret token contains unallowed characters');
    }
    const allowed = asStringArray(params.allowed_updates, 'allowed_updates');
    if (allowed !== undefined) allowedUpdates = allowed;
    const maxConnections = asInt(params.max_connections);
    webhook = {
      url,
      ...(secret !== undefined ? { secret_token: secret } : {}),
      ...(maxConnections !== undefined ? { max_connections: maxConnections } : {}),
      ...(allowed !== undefined ? { allowed_updates: allowed } : {}),
      ip_address: '127.0.0.1',
    };
    // A long poll that is still held ends now, as it would on the real server.
    if (held !== null) releaseHeld([]);
    if (asBool(params.drop_pending_updates)) {
      queue.length = 0;
    } else {
      // Pending updates go to the new webhook in the background, in order.
      const pending = queue.splice(0, queue.length);
      for (const update of pending) enqueueDelivery(update, {});
    }
    return true;
  };

  const getWebhookInfo = (): Record<string, unknown> => ({
    url: webhook?.url ?? '',
    has_custom_certificate: false,
    pending_update_count: webhook ? 0 : queue.length,
    ...(webhook?.ip_address ? { ip_address: webhook.ip_address } : {}),
    ...(webhook?.last_error_date ? { last_error_date: webhook.last_error_date } : {}),
    ...(webhook?.last_error_message ? { last_error_message: webhook.last_error_message } : {}),
    ...(webhook?.max_connections !== undefined ? { max_connections: webhook.max_connections } : {}),
    ...(webhook?.allowed_updates ? { allowed_updates: webhook.allowed_updates } : {}),
  });

  /** Every method except getUpdates, which needs the response object to hold it. */
  const callMethod = (method: string, params: Params): unknown => {
    switch (method) {
      case 'getme':
        return botInfo;
      case 'sendmessage':
        return sendMessage(params);
      case 'setwebhook':
        return setWebhook(params);
      case 'deletewebhook':
        webhook = null;
        if (asBool(params.drop_pending_updates)) queue.length = 0;
        return true;
      case 'getwebhookinfo':
        return getWebhookInfo();
      case 'setmycommands': {
        const commands = asJson(params.commands);
        if (!Array.isArray(commands)) throw badRequest("can't parse commands JSON object");
        for (const command of commands as Array<Partial<BotCommand>>) {
          if (typeof command?.command !== 'string' || !/^[a-z0-9_]{1,32}$/.test(command.command)) {
            throw badRequest('BOT_COMMAND_INVALID');
          }
          if (typeof command.description !== 'string' || command.description.length === 0) {
            throw badRequest('command description is empty');
          }
        }
        commandSets.set(commandKey(params), commands as BotCommand[]);
        return true;
      }
      case 'getmycommands':
        return commandSets.get(commandKey(params)) ?? [];
      case 'deletemycommands':
        commandSets.delete(commandKey(params));
        return true;
      default:
        if (allowedMethods.has(method)) return true;
        throw new ApiError(404, 'Not Found: method not found');
    }
  };

  const handleGetUpdates = (params: Params, res: ServerResponse): void => {
    getUpdatesCalls += 1;
    if (webhook !== null) throw new ApiError(409, WEBHOOK_ACTIVE);
    const offset = asInt(params.offset);
    const limit = Math.min(100, Math.max(1, asInt(params.limit) ?? 100));
    const timeoutSeconds = Math.max(0, asInt(params.timeout) ?? 0);
    const allowed = asStringArray(params.allowed_updates, 'allowed_updates');
    if (allowed !== undefined) allowedUpdates = allowed;

    if (held !== null) {
      if (conflictPolicy === 'reject-new') throw new ApiError(409, TERMINATED_BY_OTHER);
      const previous = held;
      held = null;
      clearTimeout(previous.timer);
      writeReply(previous.res, { ok: false, error_code: 409, description: TERMINATED_BY_OTHER });
    }

    confirm(offset);
    if (queue.length > 0 || timeoutSeconds === 0 || closed) {
      writeReply(res, { ok: true, result: queue.slice(0, limit) });
      return;
    }
    const poll: HeldPoll = {
      res,
      limit,
      timer: setTimeout(
        () => {
          if (held === poll) releaseHeld([]);
        },
        Math.min(timeoutSeconds * 1000, maxLongPollMs),
      ),
    };
    held = poll;
    // The client gave up (grammY's bot.stop() aborts the pending request): forget the poll.
    res.once('close', () => {
      if (held === poll) {
        held = null;
        clearTimeout(poll.timer);
      }
    });
    for (const resolve of pollWaiters) resolve();
    pollWaiters.clear();
  };

  // --- webhook delivery ---------------------------------------------------------------------

  /** A grammY "webhook reply": the method call travels in the body of the webhook's response. */
  const runWebhookReply = (text: string, fail: (message: string) => void): void => {
    const trimmed = text.trim();
    if (!trimmed.startsWith('{')) return;
    try {
      const payload = JSON.parse(trimmed) as Params;
      const method = asString(payload.method);
      if (method === undefined) return;
      const { method: _method, ...params } = payload;
      calls.push({ method, params, authorized: true });
      if (method.toLowerCase() !== 'getupdates') callMethod(method.toLowerCase(), params);
    } catch (error) {
      fail(`Webhook reply failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  };

  const deliver = (update: Update, pushOptions: PushOptions): Promise<number | undefined> => {
    const target = webhook;
    if (closed) return Promise.resolve(0);
    if (target === null) {
      // The webhook was removed while this update waited for its turn: keep it for getUpdates.
      queue.push(update);
      if (held !== null) releaseHeld(queue.slice(0, held.limit));
      return Promise.resolve(undefined);
    }
    const body = JSON.stringify(update);
    const headers: Record<string, string | number> = {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
    };
    const secret = pushOptions.secretToken === undefined ? target.secret_token : pushOptions.secretToken;
    if (secret !== undefined && secret !== null) headers['X-Telegram-Bot-Api-Secret-Token'] = secret;

    const fail = (message: string): void => {
      target.last_error_date = nowSeconds();
      target.last_error_message = message;
    };

    return new Promise<number>((resolve) => {
      let settled = false;
      const finish = (status: number): void => {
        if (settled) return;
        settled = true;
        resolve(status);
      };
      let responded = false;
      const req = httpRequest(target.url, { method: 'POST', headers, agent: false }, (res) => {
        responded = true;
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        // The webhook server hung up in the middle of its answer: report what it said so far.
        res.on('close', () => finish(status));
        res.on('end', () => {
          deliveries.delete(req);
          if (status < 200 || status > 299) {
            fail(`Wrong response from the webhook: ${status} ${res.statusMessage ?? ''}`.trim());
          } else {
            runWebhookReply(Buffer.concat(chunks).toString('utf8'), fail);
          }
          finish(status);
        });
      });
      deliveries.add(req);
      req.setTimeout(webhookTimeoutMs, () => {
        fail('Read timeout expired');
        req.destroy();
      });
      req.on('error', (error) => {
        deliveries.delete(req);
        if (!settled && !responded) fail(`Connection failed: ${error.message}`);
        if (!responded) finish(0);
      });
      req.on('close', () => {
        deliveries.delete(req);
        if (!responded) finish(0);
      });
      req.end(body);
    });
  };

  function enqueueDelivery(update: Update, pushOptions: PushOptions): Promise<number | undefined> {
    const result = deliveryChain.then(() => deliver(update, pushOptions));
    deliveryChain = result.catch(() => undefined);
    return result;
  }

  // --- HTTP server --------------------------------------------------------------------------

  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const match = /^(?:\/([A-Za-z0-9_-]+))?\/bot([^/]+)\/([A-Za-z0-9_]+)\/?$/.exec(url.pathname);
      if (!match) {
        req.resume();
        writeReply(res, { ok: false, error_code: 404, description: 'Not Found' });
        return;
      }
      const [, via, urlToken = '', method = ''] = match;
      let params: Params = {};
      try {
        params = await readParams(req, url);
      } catch (error) {
        writeReply(res, errorReply(error));
        return;
      }
      const authorized = decodeURIComponent(urlToken) === token;
      calls.push({ method, params, authorized, ...(via === undefined ? {} : { via }) });
      if (!authorized) {
        writeReply(res, { ok: false, error_code: 401, description: 'Unauthorized' });
        return;
      }
      try {
        const name = method.toLowerCase();
        if (name === 'getupdates') {
          handleGetUpdates(params, res);
          return;
        }
        writeReply(res, { ok: true, result: callMethod(name, params) });
      } catch (error) {
        writeReply(res, errorReply(error));
      }
    })();
  });
  server.keepAliveTimeout = 1000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;

  // --- test-side API --------------------------------------------------------------------------

  const pushUpdate = async (input: UpdateInput, pushOptions: PushOptions = {}): Promise<number | undefined> => {
    if (closed) throw new Error('Telegram Bot API stand-in is closed');
    let update_id = input.update_id;
    if (update_id === undefined) {
      update_id = nextUpdateId;
      nextUpdateId += 1;
    } else {
      nextUpdateId = Math.max(nextUpdateId, update_id + 1);
    }
    const update = { ...input, update_id } as Update;
    if (!isAllowedType(updateType(update))) return undefined;
    if (webhook !== null) return enqueueDelivery(update, pushOptions);
    queue.push(update);
    if (held !== null) releaseHeld(queue.slice(0, held.limit));
    return undefined;
  };

  const sendText = async (
    input: SendTextInput,
    pushOptions: PushOptions = {},
  ): Promise<{ update: Update; status: number | undefined }> => {
    const user: KnownUser = {
      id: input.fromId,
      first_name: input.firstName ?? knownUsers.get(input.fromId)?.first_name ?? 'Test',
      ...(input.lastName ? { last_name: input.lastName } : {}),
      ...(input.username ? { username: input.username } : {}),
      ...(input.languageCode ? { language_code: input.languageCode } : {}),
    };
    knownUsers.set(input.fromId, user);
    const entities: NonNullable<Message['entities']> = [];
    if (input.text.startsWith('/')) {
      const command = /^\/\S*/.exec(input.text)?.[0] ?? '/';
      if (command.length > 1) entities.push({ type: 'bot_command', offset: 0, length: command.length });
    }
    const { language_code: _language, ...chatUser } = user;
    const message = {
      message_id: nextMessageId(input.fromId),
      from: { ...user, is_bot: false },
      chat: { ...chatUser, type: 'private' },
      date: nowSeconds(),
      text: input.text,
      ...(entities.length > 0 ? { entities } : {}),
    } as Message & Update.NonChannel;
    const update_id = nextUpdateId;
    const status = await pushUpdate({ update_id, message }, pushOptions);
    return { update: { update_id, message }, status };
  };

  const waitForMessage = (
    predicate: (message: SentMessage) => boolean = () => true,
    timeoutMs = 2000,
  ): Promise<SentMessage> => {
    const existing = sentMessages.find(predicate);
    if (existing) return Promise.resolve(existing);
    if (closed) return Promise.reject(new Error('Telegram Bot API stand-in is closed'));
    return new Promise<SentMessage>((resolve, reject) => {
      const waiter: MessageWaiter = {
        predicate,
        resolve,
        reject,
        timer: setTimeout(() => {
          waiters.delete(waiter);
          const seen = sentMessages.map((m) => `${m.chat_id}: ${JSON.stringify(m.text)}`).join('; ') || 'none';
          reject(new Error(`No matching sendMessage within ${timeoutMs} ms (sent so far: ${seen})`));
        }, timeoutMs),
      };
      waiters.add(waiter);
    });
  };

  const waitForPolling = (timeoutMs = 2000): Promise<void> => {
    if (held !== null) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onPoll = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        pollWaiters.delete(onPoll);
        reject(new Error(`No getUpdates request was held within ${timeoutMs} ms`));
      }, timeoutMs);
      pollWaiters.add(onPoll);
    });
  };

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    const lastPoll = releaseHeld([]);
    for (const waiter of waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error('Telegram Bot API stand-in closed'));
    }
    waiters.clear();
    for (const req of deliveries) req.destroy();
    deliveries.clear();
    if (lastPoll !== undefined && !lastPoll.writableFinished) {
      // Let the empty answer to the held getUpdates reach the client before sockets are cut.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 250);
        lastPoll.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        lastPoll.once('finish', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  };

  return {
    url: baseUrl,
    apiRoot: baseUrl,
    token,
    botInfo,
    sentMessages,
    calls,
    get webhook() {
      return webhook;
    },
    get getUpdatesCalls() {
      return getUpdatesCalls;
    },
    get pendingUpdates() {
      return queue;
    },
    get commands() {
      return commandSets.get(commandKey({})) ?? [];
    },
    get isPolling() {
      return held !== null;
    },
    waitForMessage,
    waitForPolling,
    pushUpdate,
    sendText,
    close,
  };
}
