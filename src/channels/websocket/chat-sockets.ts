import type { WebSocket } from 'ws';
import type { AuthContext, Authenticator, SessionEvents } from '../../authenticator/index.js';
import { AppError } from '../../errors/index.js';
import type { License, LicenseEvents } from '../../licenses/index.js';
import { clientKey } from '../../ratelimit/client-key.js';
import { type ChatService, ChatUpstreamError } from '../chat/chat-service.js';
import type { UsageLimits } from '../chat/usage-limits.js';
import {
  CloseCode,
  MAX_ID_LENGTH,
  MAX_TOKEN_LENGTH,
  parseFrame,
  type ServerFrame,
  type WsErrorCode,
} from './protocol.js';

export interface ChatSocketsDeps {
  /** Checks the auth frame; after that, the uses of a socket's session and whether it went idle. */
  authenticator: Pick<Authenticator, 'authenticateToken' | 'sessionUsed' | 'idleAt'>;
  /** Session ends from every process, and whether they are being received (lost while the listener is down). */
  sessionEvents: Pick<SessionEvents, 'onSessionEnded' | 'onListening' | 'listening' | 'onUserChanged'>;
  /** License changes from any process: open sockets take the new license (and close if it drops chat). */
  licenseEvents?: Pick<LicenseEvents, 'onLicenseChanged'>;
  /**
   * A session as the database has it now: its expiry and its user's license; null when it is gone, expired or its user
   * disabled. Read at expiry, and for every socket after the session events were lost for a while.
   */
  sessionState(
    sessionId: string,
  ): Promise<{ expiresAt: Date; license: License; refusesAddress(ip: string | undefined): boolean } | null>;
  /**
   * After a change to a user's row (their IP allow list among what may change): which client addresses the user's
   * restrictions now refuse, read once for the sessions of their open sockets; null when none of them is left.
   */
  addressRefusal?(userId: string, sessionIds: string[]): Promise<((ip: string | undefined) => boolean) | null>;
  limits: UsageLimits;
  chat: ChatService;
  /** Seconds. */
  authTimeout: number;
  /** Seconds. */
  heartbeatInterval: number;
  /**
   * Sockets allowed to wait for their auth frame at once; more are closed with 1013 (each costs memory until then). One
   * client address (an IPv6 /64) may hold at most MAX_WAITING_PER_CLIENT of them.
   */
  maxUnauthenticated: number;
  log: { warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
}

/**
 * One open socket. Kept small on purpose (thousands are held idle): the context, a few flags, one timer, the release
 * of the connection slot, and abort controllers only while replies are streaming.
 */
interface Conn {
  socket: WebSocket;
  auth: AuthContext | null;
  pending: boolean;
  /**
   * Counted in `unauthenticated` (accepted without a bearer header and not yet through the auth frame): the client's
   * key (clientKey) it is also counted under in `waitingByClient`. Null when not counted.
   */
  waiting: string | null;
  alive: boolean;
  /**
   * The auth timeout before authentication; after it, the check at the session's expiry or at the moment it would go
   * idle (auth.session.idle_timeout), whichever comes first; the close deadline once we closed it.
   */
  timer: NodeJS.Timeout | null;
  release: (() => void) | null;
  inflight: Set<AbortController> | null;
  /** The client address (request.ip, honouring trust_proxy): IP restrictions apply to the auth frame too. */
  ip: string | undefined;
}

/**
 * How long a session end, a license change or a change to a user's row is remembered for sockets whose authentication
 * was under way when it arrived. An authentication reads the session, then maybe extends it: two statements of at most
 * statement_timeout (10 s by default) each, plus the client's margin.
 */
const RECENT_MS = 60_000;

/**
 * When an authentication began, as far as session events go: whether they were being received, and how many times
 * they had been lost before. An authentication that began while they were lost, or saw them lost meanwhile, may have
 * read a session whose end was never announced: its socket is checked against the database once admitted.
 */
export interface AuthStamp {
  listening: boolean;
  losses: number;
  /** Date.now(): a change to the user's row announced since then may not be in what the authentication read. */
  at: number;
}

// setTimeout keeps delays in a signed 32-bit integer; a longer one fires at once.
const MAX_DELAY_MS = 2_147_483_647;

/**
 * Bytes a socket may have queued for its peer before it is dropped. Every frame gets an answer (a pong, an error), so
 * a peer that sends but never reads would grow the queue without end: an empty 6-byte frame earns a 43-byte error.
 * 1 MiB is far more than a reading client leaves unread (a reply streams in chunks of what the upstream sends); the
 * kernel's socket buffers hold a few MB more before anything queues here at all.
 */
const MAX_BUFFERED_BYTES = 1024 * 1024;

/**
 * How long a socket we closed may take to answer our close frame before it is dropped (ws waits 30 s). Until then
 * its frames are ignored, but it still holds its file descriptor and buffers; a peer that reads answers in a round
 * trip.
 */
const CLOSE_GRACE_MS = 2_000;

/**
 * Sockets one client address (clientKey: an IPv6 /64 counts as one) may have waiting for their auth frame at once, so
 * that one client cannot take every place of websocket.max_unauthenticated and keep browsers out. A browser sends its
 * auth frame in its first round trip: an address rarely has more than a few waiting, even behind a shared NAT; past
 * this it is refused with 1013 as at the global cap, and retries.
 */
const MAX_WAITING_PER_CLIENT = 10;

/**
 * A check after a change to a user's row that could not read the row (statement timeout, failover) is retried, or the
 * change would never reach the user's sockets: first after 5 s, as the other checks here, then twice as long each time
 * up to a minute, so a database that stays away is not asked once per user every few seconds.
 */
const USER_RETRY_MS = 5_000;
const USER_RETRY_MAX_MS = 60_000;

/** The chat endpoint's state machine, independent of Fastify: hand it each upgraded socket. */
export function createChatSockets(deps: ChatSocketsDeps) {
  const { authenticator, limits, chat, log } = deps;
  const all = new Set<Conn>();
  let unauthenticated = 0;
  const waitingByClient = new Map<string, number>();
  const bySession = new Map<string, Set<Conn>>();
  // Set by close(): an upgrade whose bearer check was still under way then is handed over afterwards, and must not
  // open a socket that nothing would close (the server waited on it until server.shutdown_timeout, then exited 1).
  let closing = false;

  const stopWaiting = (conn: Conn) => {
    if (conn.waiting === null) return;
    unauthenticated--;
    const left = (waitingByClient.get(conn.waiting) ?? 1) - 1;
    if (left > 0) waitingByClient.set(conn.waiting, left);
    else waitingByClient.delete(conn.waiting);
    conn.waiting = null;
  };

  // A peer that does not read is not waited for: it is dropped rather than buffered for.
  const send = (conn: Conn, frame: ServerFrame) => {
    const { socket } = conn;
    if (socket.readyState !== socket.OPEN) return;
    if (socket.bufferedAmount > MAX_BUFFERED_BYTES) {
      log.debug({ userId: conn.auth?.userId, buffered: socket.bufferedAmount }, 'websocket peer not reading; dropped');
      socket.terminate();
      return;
    }
    socket.send(JSON.stringify(frame));
  };

  /** Sends our close frame; a peer that has not answered it within CLOSE_GRACE_MS is dropped. */
  const closeSocket = (socket: WebSocket, close: number, reason: string, conn?: Conn) => {
    if (socket.readyState !== socket.OPEN) return;
    socket.close(close, reason);
    const deadline = setTimeout(() => socket.terminate(), CLOSE_GRACE_MS);
    deadline.unref();
    if (!conn) return;
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = deadline;
  };

  const refuse = (conn: Conn, code: WsErrorCode, close: number) => {
    send(conn, { type: 'auth_error', code });
    closeSocket(conn.socket, close, code, conn);
  };

  // The socket no longer speaks for this session: a reply under way stops and its upstream request is aborted.
  const end = (conn: Conn, code: WsErrorCode, close: number) => {
    send(conn, { type: 'error', code });
    closeSocket(conn.socket, close, code, conn);
    for (const abort of conn.inflight ?? []) abort.abort();
  };

  /** Records `key` as seen now in a map kept in arrival order, forgetting what is older than RECENT_MS. */
  const remember = (recent: Map<string, number>, key: string) => {
    const now = Date.now();
    for (const [old, at] of recent) {
      if (now - at <= RECENT_MS) break;
      recent.delete(old);
    }
    recent.delete(key);
    recent.set(key, now);
  };

  // Ends of sessions with no socket yet: a socket whose authentication read the session before its end arrived must
  // not be admitted after it (nothing would close it until the session's expiry).
  const recentEnds = new Map<string, number>();
  const endedRecently = (sessionId: string) => {
    const at = recentEnds.get(sessionId);
    return at !== undefined && Date.now() - at <= RECENT_MS;
  };
  const unsubscribe = deps.sessionEvents.onSessionEnded(({ sessionId }) => {
    remember(recentEnds, sessionId);
    const conns = bySession.get(sessionId);
    if (!conns) return;
    for (const conn of conns) end(conn, 'SESSION_REVOKED', CloseCode.SESSION_ENDED);
  });

  // While the session events are lost (the LISTEN connection is down), ends and license changes made in other
  // processes are never announced here: once they are back, every open socket is checked against the database.
  let losses = 0;
  const stamp = (): AuthStamp => ({ listening: deps.sessionEvents.listening, losses, at: Date.now() });
  const unsubscribeListening = deps.sessionEvents.onListening((up) => {
    if (!up) {
      losses++;
      return;
    }
    void recheck([...all]);
  });

  // A change of license is rare (an admin, the CLI, a billing job): walking the open sockets is cheaper than an index
  // every socket would pay for. Later messages are limited by the new license; a license without chat ends the socket.
  // A socket still being authenticated when the change arrives may have read the old license: changes of the last
  // RECENT_MS are kept and applied when it is admitted.
  const recentLicenses = new Map<string, { license: License; at: number }>();
  const unsubscribeLicenses = deps.licenseEvents?.onLicenseChanged(({ userId, license }) => {
    const now = Date.now();
    for (const [id, change] of recentLicenses) if (now - change.at > RECENT_MS) recentLicenses.delete(id);
    recentLicenses.set(userId, { license, at: now });
    for (const conn of all) {
      if (conn.auth?.userId !== userId) continue;
      conn.auth = { ...conn.auth, license };
      if (license.features.chat === false) end(conn, 'FORBIDDEN', CloseCode.FORBIDDEN);
    }
  });

  /** Arms the socket's timer for its session's expiry, or for the moment it goes idle (`idleAt`) when that is sooner. */
  const schedule = (conn: Conn, idleAt: number | null) => {
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = null;
    const expiresAt = conn.auth?.expiresAt;
    if (!expiresAt) return;
    // Idle only once past idleAt (a use at that very ms still counts): look 1 ms later.
    const at = idleAt === null ? expiresAt.getTime() : Math.min(expiresAt.getTime(), idleAt + 1);
    const delay = Math.max(0, Math.min(at - Date.now(), MAX_DELAY_MS));
    conn.timer = setTimeout(() => onTimer(conn), delay);
  };

  function onTimer(conn: Conn) {
    conn.timer = null;
    const auth = conn.auth;
    if (!auth?.sessionId || !auth.expiresAt || conn.socket.readyState !== conn.socket.OPEN) return;
    if (auth.expiresAt.getTime() <= Date.now()) void checkExpiry(conn);
    else checkIdle(conn, auth.sessionId);
  }

  /**
   * A session unused for longer than auth.session.idle_timeout is refused everywhere else: its socket ends with 4409
   * SESSION_EXPIRED, as at expiry. Its chat messages are uses (sessionUsed); the Authenticator answers from this
   * process's last use at once, and reads the row (uses through other processes) only before calling it idle.
   */
  function checkIdle(conn: Conn, sessionId: string) {
    const settle = (idleAt: number | null) => {
      if (idleAt !== null && idleAt < Date.now()) end(conn, 'SESSION_EXPIRED', CloseCode.SESSION_ENDED);
      else schedule(conn, idleAt);
    };
    const idleAt = authenticator.idleAt(sessionId);
    if (!(idleAt instanceof Promise)) {
      settle(idleAt);
      return;
    }
    idleAt.then(
      (at) => {
        // Ended meanwhile: its timer is now the close deadline, not to be replaced.
        if (conn.socket.readyState === conn.socket.OPEN) settle(at);
      },
      (err: Error) => {
        if (conn.socket.readyState !== conn.socket.OPEN) return;
        log.warn({ err: { message: err.message } }, 'session idle check failed; retrying');
        conn.timer = setTimeout(() => onTimer(conn), 5_000);
      },
    );
  }

  // The session may have been extended by use on another channel since this socket authenticated: look before closing.
  async function checkExpiry(conn: Conn) {
    conn.timer = null;
    const sessionId = conn.auth?.sessionId;
    if (!sessionId || conn.socket.readyState !== conn.socket.OPEN) return;
    let state: Awaited<ReturnType<ChatSocketsDeps['sessionState']>>;
    try {
      state = await deps.sessionState(sessionId);
    } catch (err) {
      // Ended meanwhile: its timer is now the close deadline, not to be replaced.
      if (conn.socket.readyState !== conn.socket.OPEN) return;
      log.warn({ err: { message: (err as Error).message } }, 'session expiry check failed; retrying');
      conn.timer = setTimeout(() => void checkExpiry(conn), 5_000);
      return;
    }
    if (conn.socket.readyState !== conn.socket.OPEN || !conn.auth) return;
    if (!state || state.expiresAt.getTime() <= Date.now()) {
      end(conn, 'SESSION_EXPIRED', CloseCode.SESSION_ENDED);
      return;
    }
    conn.auth = { ...conn.auth, expiresAt: state.expiresAt };
    checkIdle(conn, sessionId);
  }

  /**
   * Checks sockets against the database: a session that ended closes its sockets (4409, as its end event would have),
   * a changed license is applied (as its change event would have been). Retried while the database cannot answer,
   * unless the events are lost again meanwhile (their return checks every socket anyway).
   */
  async function recheck(conns: Conn[]) {
    const at = losses;
    const bySessionId = new Map<string, Conn[]>();
    for (const conn of conns) {
      const sessionId = conn.auth?.sessionId;
      if (!sessionId || conn.socket.readyState !== conn.socket.OPEN) continue;
      const list = bySessionId.get(sessionId);
      if (list) list.push(conn);
      else bySessionId.set(sessionId, [conn]);
    }
    let states: Array<Awaited<ReturnType<ChatSocketsDeps['sessionState']>>>;
    try {
      states = await Promise.all([...bySessionId.keys()].map((id) => deps.sessionState(id)));
    } catch (err) {
      log.warn({ err: { message: (err as Error).message } }, 'socket session check failed; retrying');
      setTimeout(() => {
        if (losses === at) void recheck(conns);
      }, 5_000).unref();
      return;
    }
    let i = 0;
    for (const list of bySessionId.values()) {
      const state = states[i++];
      for (const conn of list) {
        if (!conn.auth || conn.socket.readyState !== conn.socket.OPEN) continue;
        if (!state || state.expiresAt.getTime() <= Date.now()) {
          end(conn, 'SESSION_REVOKED', CloseCode.SESSION_ENDED);
          continue;
        }
        conn.auth = { ...conn.auth, license: state.license };
        if (state.license.features.chat === false) end(conn, 'FORBIDDEN', CloseCode.FORBIDDEN);
        // An IP allow list narrowed meanwhile, which no user-change event announced either.
        else if (state.refusesAddress(conn.ip)) end(conn, 'IP_NOT_ALLOWED', CloseCode.FORBIDDEN);
      }
    }
  }

  /**
   * Checks authenticated sockets of one user against their row as it is now, as their upgrade was checked: one read
   * for all of their sessions. A socket from an address the IP allow list now refuses ends with 4403 IP_NOT_ALLOWED,
   * as REST from there is refused. When none of the sessions reads as active, the user was disabled (or the sessions
   * ended): the sockets end with 4409 SESSION_REVOKED, since a disabled user's session rows remain and no end event
   * would close them.
   */
  function checkUser(userId: string, conns: Conn[], attempt = 0) {
    const sessionIds = new Set<string>();
    for (const conn of conns) if (conn.auth?.sessionId) sessionIds.add(conn.auth.sessionId);
    if (sessionIds.size === 0 || !deps.addressRefusal) return;
    deps.addressRefusal(userId, [...sessionIds]).then(
      (refused) => {
        for (const conn of conns) {
          if (conn.socket.readyState !== conn.socket.OPEN) continue;
          if (!refused) end(conn, 'SESSION_REVOKED', CloseCode.SESSION_ENDED);
          else if (refused(conn.ip)) end(conn, 'IP_NOT_ALLOWED', CloseCode.FORBIDDEN);
        }
      },
      (err: Error) => {
        log.warn({ err: { message: err.message }, userId }, 'websocket check after a user change failed; retrying');
        retryUser(userId, attempt);
      },
    );
  }

  const socketsOf = (userId: string) =>
    [...all].filter((conn) => conn.auth?.userId === userId && conn.socket.readyState === conn.socket.OPEN);

  /**
   * Users whose check failed, each with the timer of its retry: one read for all of the user's sockets then open, until
   * a read succeeds or none is left. Holds only users with sockets (or whose last one closed within the delay).
   */
  const userRetries = new Map<string, NodeJS.Timeout>();
  function retryUser(userId: string, attempt: number) {
    // A retry already pending checks every socket of the user, this one's too.
    if (closing || userRetries.has(userId)) return;
    const delay = Math.min(USER_RETRY_MS * 2 ** attempt, USER_RETRY_MAX_MS);
    const timer = setTimeout(() => {
      userRetries.delete(userId);
      const conns = socketsOf(userId);
      if (conns.length > 0) checkUser(userId, conns, attempt + 1);
    }, delay);
    timer.unref();
    userRetries.set(userId, timer);
  }

  // A change to a user's row (their IP allow list, their disabled flag among what may change) applies to their open
  // sockets at once; a socket still being authenticated is checked when admitted (changes are kept for RECENT_MS, in
  // arrival order). None is read for a user without sockets. (Like a license change, walking the sockets is cheaper
  // than an index every socket would pay for.)
  const recentUserChanges = new Map<string, number>();
  const unsubscribeUsers = deps.sessionEvents.onUserChanged((userId) => {
    remember(recentUserChanges, userId);
    const conns = socketsOf(userId);
    if (conns.length > 0) checkUser(userId, conns);
  });

  /** Authenticated: take a connection slot, index by session, answer auth_ok. False when refused. */
  function admit(conn: Conn, authenticated: AuthContext, began: AuthStamp): boolean {
    if (authenticated.sessionId && endedRecently(authenticated.sessionId)) {
      refuse(conn, 'SESSION_REVOKED', CloseCode.SESSION_ENDED);
      return false;
    }
    const changed = recentLicenses.get(authenticated.userId);
    const auth =
      changed && Date.now() - changed.at <= RECENT_MS ? { ...authenticated, license: changed.license } : authenticated;
    if (auth.license.features.chat === false) {
      refuse(conn, 'FORBIDDEN', CloseCode.FORBIDDEN);
      return false;
    }
    const release = limits.openConnection(auth.userId, auth.license);
    if (!release) {
      refuse(conn, 'CONNECTION_LIMIT', CloseCode.LIMIT);
      return false;
    }
    const { renewedToken, ...context } = auth;
    conn.auth = context;
    conn.release = release;
    if (context.sessionId) {
      let set = bySession.get(context.sessionId);
      if (!set) {
        set = new Set();
        bySession.set(context.sessionId, set);
      }
      set.add(conn);
    }
    if (context.sessionId) checkIdle(conn, context.sessionId);
    else schedule(conn, null);
    send(conn, {
      type: 'auth_ok',
      userId: context.userId,
      license: context.license.type,
      expiresAt: context.expiresAt?.toISOString() ?? null,
      ...(renewedToken ? { token: renewedToken } : {}),
    });
    // Events lost since the authentication began (or not received when it did): what it read may be stale. While they
    // are still lost, their return checks this socket with all the others.
    if (deps.sessionEvents.listening && (!began.listening || began.losses !== losses)) void recheck([conn]);
    // The user's row changed while the authentication was under way: it may have read the old one.
    const userChanged = recentUserChanges.get(context.userId);
    if (userChanged !== undefined && userChanged >= began.at) checkUser(context.userId, [conn]);
    return true;
  }

  async function authenticateByFrame(conn: Conn, token: string) {
    conn.pending = true;
    const began = stamp();
    let auth: AuthContext | null;
    try {
      auth = await authenticator.authenticateToken(token, 'websocket', conn.ip);
    } catch (err) {
      if (err instanceof AppError && err.code === 'IP_NOT_ALLOWED') {
        refuse(conn, 'IP_NOT_ALLOWED', CloseCode.FORBIDDEN);
        return;
      }
      log.warn({ err: { message: (err as Error).message } }, 'websocket authentication failed with an error');
      refuse(conn, 'INTERNAL_ERROR', CloseCode.INTERNAL_ERROR);
      return;
    } finally {
      conn.pending = false;
    }
    if (conn.socket.readyState !== conn.socket.OPEN) return;
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = null;
    stopWaiting(conn);
    if (!auth) {
      refuse(conn, 'INVALID_TOKEN', CloseCode.AUTH_FAILED);
      return;
    }
    admit(conn, auth, began);
  }

  async function converse(conn: Conn, auth: AuthContext, id: string, text: string) {
    const verdict = limits.takeMessage(auth.userId, auth.license);
    if (!verdict.ok) {
      send(conn, { type: 'error', code: 'RATE_LIMITED', id, retryAfter: verdict.retryAfter });
      return;
    }
    const abort = new AbortController();
    conn.inflight ??= new Set();
    conn.inflight.add(abort);
    try {
      for await (const chunk of chat.reply(auth, { id, text }, abort.signal)) {
        if (abort.signal.aborted) return;
        send(conn, { type: 'reply', id, text: chunk });
      }
      send(conn, { type: 'reply_end', id });
    } catch (err) {
      if (abort.signal.aborted) return;
      if (!(err instanceof ChatUpstreamError)) log.warn({ err }, 'chat service failed');
      else log.warn({ err: { message: err.message } }, 'chat upstream failed');
      send(conn, { type: 'error', code: 'CHAT_UNAVAILABLE', id });
    } finally {
      conn.inflight?.delete(abort);
      if (conn.inflight?.size === 0) conn.inflight = null;
    }
  }

  function onMessage(conn: Conn, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) {
    // ws still delivers frames while our close frame awaits its answer: a socket we ended (its session revoked, its
    // license or address refused) or refused must not go on authenticating or conversing meanwhile.
    if (conn.socket.readyState !== conn.socket.OPEN) return;
    const frame = isBinary ? 'BINARY_NOT_SUPPORTED' : parseFrame(data.toString());
    const auth = conn.auth;

    if (!auth) {
      if (conn.pending) {
        send(conn, { type: 'error', code: 'AUTH_PENDING' });
        return;
      }
      if (typeof frame === 'object' && frame.type === 'auth') {
        const token = frame.token;
        if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
          refuse(conn, 'INVALID_TOKEN', CloseCode.AUTH_FAILED);
          return;
        }
        void authenticateByFrame(conn, token);
        return;
      }
      refuse(conn, 'AUTH_REQUIRED', CloseCode.AUTH_FAILED);
      return;
    }

    if (typeof frame === 'string') {
      send(conn, { type: 'error', code: frame });
      return;
    }
    switch (frame.type) {
      case 'ping':
        send(conn, { type: 'pong' });
        return;
      case 'auth':
        send(conn, { type: 'error', code: 'ALREADY_AUTHENTICATED' });
        return;
      case 'message': {
        const { id, text } = frame;
        if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) {
          send(conn, { type: 'error', code: 'INVALID_MESSAGE' });
          return;
        }
        if (typeof text !== 'string' || text.trim().length === 0) {
          send(conn, { type: 'error', code: 'INVALID_MESSAGE', id });
          return;
        }
        // A chat message is a use of the session, as a request is (auth.session.idle_timeout); a ping is not.
        if (auth.sessionId) authenticator.sessionUsed(auth.sessionId, 'websocket');
        void converse(conn, auth, id, text);
        return;
      }
      default:
        send(conn, { type: 'error', code: 'UNKNOWN_TYPE' });
    }
  }

  function onClose(conn: Conn) {
    all.delete(conn);
    stopWaiting(conn);
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = null;
    conn.release?.();
    conn.release = null;
    for (const abort of conn.inflight ?? []) abort.abort();
    conn.inflight = null;
    const sessionId = conn.auth?.sessionId;
    if (sessionId) {
      const set = bySession.get(sessionId);
      set?.delete(conn);
      if (set?.size === 0) bySession.delete(sessionId);
    }
  }

  // One timer for every socket: a socket that did not answer the last ping is dead (RFC 6455 ping/pong).
  const heartbeat = setInterval(() => {
    for (const conn of all) {
      if (!conn.alive) {
        log.debug({ userId: conn.auth?.userId }, 'websocket missed a heartbeat; dropped');
        conn.socket.terminate();
        continue;
      }
      conn.alive = false;
      conn.socket.ping();
    }
  }, deps.heartbeatInterval * 1000);
  heartbeat.unref();

  return {
    /** Where session events stand now: taken before authenticating an upgrade request, handed to accept() with it. */
    stamp,

    /**
     * Takes over an upgraded socket; `auth` when the upgrade request carried a valid bearer token, with the stamp()
     * taken before that authentication began.
     */
    accept(socket: WebSocket, auth: AuthContext | null, ip?: string, began: AuthStamp = stamp()) {
      if (closing) {
        closeSocket(socket, CloseCode.GOING_AWAY, 'SERVER_SHUTDOWN');
        return;
      }
      // Callers without an address (none in the gateway: request.ip is always set) share one bucket.
      const client = auth ? null : clientKey(ip ?? '');
      if (
        client !== null &&
        (unauthenticated >= deps.maxUnauthenticated || (waitingByClient.get(client) ?? 0) >= MAX_WAITING_PER_CLIENT)
      ) {
        closeSocket(socket, CloseCode.TRY_AGAIN_LATER, 'SERVER_BUSY');
        return;
      }
      const conn: Conn = {
        socket,
        auth: null,
        pending: false,
        waiting: client,
        alive: true,
        timer: null,
        release: null,
        inflight: null,
        ip,
      };
      if (client !== null) {
        unauthenticated++;
        waitingByClient.set(client, (waitingByClient.get(client) ?? 0) + 1);
      }
      all.add(conn);
      socket.on('message', (data, isBinary) => onMessage(conn, data, isBinary));
      socket.on('pong', () => {
        conn.alive = true;
      });
      socket.on('close', () => onClose(conn));
      if (auth) {
        admit(conn, auth, began);
        return;
      }
      conn.timer = setTimeout(() => {
        conn.timer = null;
        if (!conn.auth && !conn.pending) refuse(conn, 'AUTH_TIMEOUT', CloseCode.AUTH_TIMEOUT);
      }, deps.authTimeout * 1000);
    },

    /** Open sockets (authenticated or not). */
    get size() {
      return all.size;
    },

    /** Sockets still waiting for their auth frame. */
    get unauthenticated() {
      return unauthenticated;
    },

    /**
     * Closes every socket with 1001 and stops the timers (server shutdown). A socket handed to accept() afterwards is
     * closed with 1001 at once; one authenticating by its auth frame was closed here, and is never admitted.
     */
    close() {
      if (closing) return;
      closing = true;
      clearInterval(heartbeat);
      unsubscribe();
      unsubscribeListening();
      unsubscribeLicenses?.();
      unsubscribeUsers();
      for (const timer of userRetries.values()) clearTimeout(timer);
      userRetries.clear();
      for (const conn of all) closeSocket(conn.socket, CloseCode.GOING_AWAY, 'SERVER_SHUTDOWN', conn);
    },
  };
}

export type ChatSockets = ReturnType<typeof createChatSockets>;
