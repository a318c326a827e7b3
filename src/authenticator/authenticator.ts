import type { IpPolicy, IpRefusal } from '../access/ip-policy.js';
import { AppError } from '../errors/index.js';
import type { LicenseResolver } from '../licenses/index.js';
import type { ActiveSession, LastSeen, SessionStore } from './session.store.js';
import type { SessionCache } from './session-cache.js';
import type { TokenCodec } from './tokens.js';
import type { AuthContext, Channel } from './types.js';

/** A session's last use is written at most once a minute: the sessions list that shows it needs no finer grain. */
const TOUCH_INTERVAL_SECONDS = 60;

/**
 * Most sessions whose last use a process remembers (see createLastSeen): about 100 bytes each, so 10 MB at most. Only
 * sessions used through this process within the idle timeout need one.
 */
const MAX_LAST_SEEN = 100_000;

/**
 * A value now, or later. The bearer check on a cached session is synchronous all the way (no promise per layer: with
 * Better Auth's AsyncLocalStorage active, every promise also pays the async-hooks bookkeeping); only a database read
 * or write makes it a promise.
 */
export type Maybe<T> = T | Promise<T>;
const isPromise = <T>(value: Maybe<T>): value is Promise<T> => value instanceof Promise;

export interface HeadersLike {
  authorization?: string | string[] | undefined;
  cookie?: string | string[] | undefined;
  [name: string]: string | string[] | undefined;
}

/** What a due session check does to extend the session (and what the answer must carry for it). */
type Renewal = (session: ActiveSession, context: AuthContext) => Promise<void>;
const noRenewal: Renewal = async () => {};

export interface AuthenticatorDeps {
  tokens: TokenCodec;
  sessions: SessionStore;
  licenses: LicenseResolver;
  /** Better Auth's cookie session behind these headers, or null. */
  cookieSession(headers: HeadersLike): Promise<string | null>;
  /**
   * Has Better Auth extend the cookie session behind these headers (when due, by the same rule as ours) and returns
   * the Set-Cookie values of its refreshed cookie.
   */
  refreshCookieSession?(headers: HeadersLike): Promise<string[]>;
  /** Session lifetime and the age after which use extends it, in seconds; idleTimeout 0: no idle limit. */
  session: { expiresIn: number; updateAge: number; idleTimeout?: number };
  /** Validated sessions kept in memory; emptied by session-end events (see session-cache.ts). None: always query. */
  cache?: SessionCache;
  /** IP restrictions (global lists and each user's own allow list); absent: none. */
  ipPolicy?: IpPolicy;
  /** Told about each refusal by IP address (the audit log); awaited before the refusal is thrown. */
  onIpRefused?(event: IpRefusedEvent): Promise<void>;
}

export interface IpRefusedEvent {
  userId: string | null;
  sessionId: string | null;
  channel: Channel;
  ip: string;
  reason: IpRefusal;
}

/** Where a request comes from: the client address as the channel saw it (Fastify's request.ip honours trust_proxy). */
export interface RequestLike {
  headers: HeadersLike;
  ip?: string | undefined;
}

export interface Authenticator {
  /**
   * A bearer token -> its context, or null when the token is not valid, or its session is gone or expired (or its user
   * disabled). With `ip`, the IP restrictions apply: a valid credential from a refused address throws
   * AppError('IP_NOT_ALLOWED') (403), audited as 'ip.refused'. The same holds for the methods below.
   */
  authenticateToken(token: string, channel?: Channel, ip?: string): Promise<AuthContext | null>;
  /**
   * An HTTP request's bearer token or Better Auth cookie. A cached session answers synchronously (no promise); a
   * database read, a renewal or a cookie makes it a promise. Throws (or rejects) IP_NOT_ALLOWED.
   */
  authenticateRequest(request: RequestLike): Maybe<AuthContext | null>;
  /** A WebSocket upgrade request carrying `Authorization: Bearer`. */
  authenticateWebSocket(request: RequestLike): Promise<AuthContext | null>;
  /** A Telegram user, through their row in user_channel_links. */
  authenticateTelegram(telegramUserId: string | number): Promise<AuthContext | null>;
  /** A session named by a credential checked elsewhere (Better Auth's cookie on its own routes), by id. */
  authenticateSession(sessionId: string, channel: Channel, ip?: string): Promise<AuthContext | null>;
  /**
   * Records a use of a session authenticated earlier by a channel that holds it open without presenting the credential
   * again (a chat message on a socket): it counts for auth.session.idle_timeout as a request does, and is written as
   * one (throttled the same way). Does nothing without an idle timeout.
   */
  sessionUsed(sessionId: string, channel: Channel): void;
  /**
   * When a session held open goes idle unless used again (Date.now() ms); null without an idle timeout. Counted from
   * this process's last use of it; once that is past, from its row read again (uses through other processes reach only
   * the row), so a promise then, of null if the session is gone.
   */
  idleAt(sessionId: string): Maybe<number | null>;
  /** A fresh token for an existing session (after sign-in). */
  issueToken(userId: string, sessionId: string, expiresAt: Date): string;
}

/** Better Auth's session cookie, with the `__Secure-` prefix it takes over HTTPS. */
const SESSION_COOKIE = /(?:^|;)\s*(?:__Secure-)?better-auth\.session_token=/;

/** Whether a Cookie header carries a session cookie (other cookies, such as the device cookie, are no credential). */
export function hasSessionCookie(header: string | string[] | undefined): boolean {
  const value = Array.isArray(header) ? header.join(';') : header;
  return value !== undefined && SESSION_COOKIE.test(value);
}

/** Returns the bearer token of an Authorization header; null when the header is absent or not a bearer. */
export function bearerToken(header: string | string[] | undefined): string | null {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return null;
  const match = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(value);
  return match?.[1] ?? null;
}

/**
 * A session's last use in this process, and the latest use of it known written (read from its row, or written by
 * sessionUsed): a socket's uses are recorded by session id, with no session object to carry lastUsedAt.
 */
interface Seen extends LastSeen {
  written: number;
}

/**
 * This process's last use of each session, kept apart from the session objects. A cached entry lives at most
 * session_cache.ttl (with the cache off, one request), and a session read again from the database brings back only
 * the throttled last_used_at: without this, the uses not yet written were lost at each read, and a session in use was
 * refused up to a write interval early by the very process that saw the use.
 *
 * Every copy of a session read here shares one record (`ActiveSession.lastSeen`), so a use still costs one field write
 * and a cache hit no map operation; the map is read only when a session is read from the database. Bounded: a record
 * older than the idle timeout says nothing the row does not and is dropped when the map grows; past `max`, the records
 * read longest ago go (their sessions then count from the row's last use, at most a write interval early).
 */
export function createLastSeen(idleMs: number, max = MAX_LAST_SEEN) {
  const bySession = new Map<string, Seen>();
  const minSweep = Math.min(max, 1024);
  /** Size at which the next new record first sweeps: twice what the last sweep kept, so sweeps cost O(1) a record. */
  let sweepAt = minSweep;

  function sweep(now: number) {
    for (const [id, seen] of bySession) if (now - seen.ms > idleMs) bySession.delete(id);
    const keep = Math.floor(max * 0.75);
    for (const id of bySession.keys()) {
      if (bySession.size <= keep) break;
      bySession.delete(id);
    }
    sweepAt = Math.max(minSweep, Math.min(max, bySession.size * 2));
  }

  return {
    /** Gives a session just read from the database its record, counting from the row's last use when that is later. */
    attach(session: ActiveSession, now: number): ActiveSession {
      let seen = bySession.get(session.id);
      if (seen) {
        bySession.delete(session.id); // set again below: the map's order is the order of the last reads
      } else {
        if (bySession.size >= sweepAt) sweep(now);
        seen = { ms: 0, written: 0 };
      }
      bySession.set(session.id, seen);
      seen.ms = Math.max(seen.ms, session.lastUsedAt.getTime());
      seen.written = Math.max(seen.written, session.lastUsedAt.getTime());
      session.lastSeen = seen;
      return session;
    },
    /** The record of a session, if this process still keeps one. */
    get(sessionId: string): Seen | undefined {
      return bySession.get(sessionId);
    },
    /** Records a use of a session held open (see sessionUsed): its record, made anew if it was dropped meanwhile. */
    use(sessionId: string, now: number): Seen {
      let seen = bySession.get(sessionId);
      if (!seen) {
        if (bySession.size >= sweepAt) sweep(now);
        seen = { ms: 0, written: 0 };
        bySession.set(sessionId, seen);
      }
      seen.ms = now;
      return seen;
    },
    /** The session is gone (revoked, expired, its user disabled). */
    forget(sessionId: string): void {
      bySession.delete(sessionId);
    },
    get size() {
      return bySession.size;
    },
  };
}

/**
 * The one place that turns a credential into an AuthContext. Every channel (REST, WebSocket, Telegram) calls this,
 * so revocation, expiry and licenses mean the same everywhere.
 */
export function createAuthenticator(deps: AuthenticatorDeps): Authenticator {
  const { tokens, sessions, licenses, cache } = deps;
  const idleTimeout = deps.session.idleTimeout ?? 0;
  const idleMs = idleTimeout * 1000;
  /** This process's last uses, for the idle timeout (none without one). */
  const lastSeen = idleMs > 0 ? createLastSeen(idleMs) : null;
  const findActive = lastSeen
    ? (sessionId: string) =>
        sessions.findActive(sessionId).then((session) => {
          if (session) return lastSeen.attach(session, Date.now());
          lastSeen.forget(sessionId);
          return null;
        })
    : (sessionId: string) => sessions.findActive(sessionId);
  const activeSession = cache
    ? (sessionId: string) => cache.lookup(sessionId, findActive)
    : (sessionId: string) => findActive(sessionId);
  /**
   * A use is written at most once per interval per session: a minute, or a quarter of the idle timeout when shorter,
   * so a process that reads the session from the database sees another process's last use at most that much (plus
   * the store's write-behind delay, about a second) too old; its own uses it remembers (createLastSeen). A session is
   * refused as idle only on such a read (a cached one that looks idle is read again first: see withSession), so at
   * most that much early, and only for uses through other processes. Whole seconds: the store's UPDATE takes an int.
   */
  const touchInterval =
    idleTimeout > 0 ? Math.min(TOUCH_INTERVAL_SECONDS, Math.floor(idleTimeout / 4)) : TOUCH_INTERVAL_SECONDS;
  /** A session unused for longer than the idle timeout (as this process knows) is refused, as an expired one is. */
  const idle = (s: ActiveSession, now: number) =>
    idleMs > 0 && now - (s.lastSeen?.ms ?? s.lastUsedAt.getTime()) > idleMs;
  /**
   * Every use counts for the idle timeout here (lastSeen, shared with later reads of the session); the database write
   * is throttled separately (lastUsedAt), so a cached session does not trigger a write on every request.
   */
  const touch = (s: ActiveSession, channel: Channel, now: number): void => {
    if (s.lastSeen) s.lastSeen.ms = now;
    // The first use after sign-in records its channel; after that, one write per interval (written behind).
    if (s.lastChannel !== null && now - s.lastUsedAt.getTime() < touchInterval * 1000) return;
    s.lastUsedAt = new Date(now);
    s.lastChannel = channel;
    sessions.touch(s.id, touchInterval, channel);
  };

  /**
   * A use on an open socket, by session id: no session object carries its last written use, so the record does (a use
   * also written by a request in the same interval is one more entry in a batch the store's UPDATE skips).
   */
  const sessionUsed = (sessionId: string, channel: Channel): void => {
    if (!lastSeen) return;
    const now = Date.now();
    const seen = lastSeen.use(sessionId, now);
    if (now - seen.written < touchInterval * 1000) return;
    seen.written = now;
    sessions.touch(sessionId, touchInterval, channel);
  };

  function idleAt(sessionId: string): Maybe<number | null> {
    if (!lastSeen) return null;
    const seen = lastSeen.get(sessionId);
    if (seen && Date.now() - seen.ms <= idleMs) return seen.ms + idleMs;
    // Idle as this process knows it: read the row, as withSession does before refusing a cached session.
    cache?.forget(sessionId);
    return Promise.resolve(activeSession(sessionId)).then((s) => (s?.lastSeen ? s.lastSeen.ms + idleMs : null));
  }

  async function refuseIp(event: IpRefusedEvent): Promise<never> {
    await deps.onIpRefused?.(event);
    throw new AppError('IP_NOT_ALLOWED');
  }

  function fromSession(
    sessionId: string,
    userId: string | null,
    channel: Channel,
    ip: string | undefined,
    renewal: Renewal = renew,
  ): Maybe<AuthContext | null> {
    const found = activeSession(sessionId);
    return isPromise(found)
      ? found.then((session) => withSession(session, userId, channel, ip, renewal, false))
      : withSession(found, userId, channel, ip, renewal, true);
  }

  function withSession(
    session: ActiveSession | null,
    userId: string | null,
    channel: Channel,
    ip: string | undefined,
    renewal: Renewal,
    cached: boolean,
  ): Maybe<AuthContext | null> {
    const now = Date.now();
    if (!session || (userId !== null && session.userId !== userId)) return null;
    if (idle(session, now)) {
      if (!cached) return null;
      // A cached session knows only this process's uses; uses through other processes reach only the database (their
      // touches, once per write interval). It is refused only if the row says idle too, and a refused use is not
      // recorded, so it stays idle. (An idle session then costs a read per attempt, as an unknown one does.)
      cache?.forget(session.id);
      return Promise.resolve(activeSession(session.id)).then((fresh) =>
        withSession(fresh, userId, channel, ip, renewal, false),
      );
    }
    const refusal = deps.ipPolicy?.refuse(ip, session.ipAllowlist) ?? null;
    if (refusal && ip !== undefined) {
      return refuseIp({ userId: session.userId, sessionId: session.id, channel, ip, reason: refusal });
    }
    touch(session, channel, now);
    const { expiresIn, updateAge } = deps.session;
    const due = now >= session.expiresAt.getTime() - (expiresIn - updateAge) * 1000;
    const context = contextOf(session, channel);
    return due ? renewal(session, context).then(() => context) : context;
  }

  function contextOf(session: ActiveSession, channel: Channel): AuthContext {
    return {
      userId: session.userId,
      sessionId: session.id,
      email: session.email,
      name: session.name,
      license: licenses(session.license),
      channel,
      expiresAt: session.expiresAt,
    };
  }

  /**
   * A cookie session is extended by Better Auth, which then sets its cookie again with the new expiry: extending the
   * row here would leave the cookie at its old Max-Age (and Better Auth, finding the row fresh, would never refresh
   * it). The cached entry is dropped, so the next check reads the new expiry.
   */
  const renewCookie =
    (headers: HeadersLike): Renewal =>
    async (session, context) => {
      const cookies = (await deps.refreshCookieSession?.(headers)) ?? [];
      cache?.forget(session.id);
      if (cookies.length > 0) context.renewedCookies = cookies;
    };

  /** Sliding expiry, as Better Auth does for cookies: a session used once it is update_age old is extended. */
  async function renew(session: ActiveSession, context: AuthContext): Promise<void> {
    const { expiresIn, updateAge } = deps.session;
    const expiresAt = new Date(Date.now() + expiresIn * 1000);
    if (await sessions.extend(session.id, expiresAt, updateAge / 2)) {
      context.expiresAt = expiresAt;
      context.renewedToken = tokens.sign(session.userId, session.id, expiresAt);
      cache?.extended(session.id, expiresAt);
    } else {
      // Another request or process extended it (or it just ended): re-read it rather than retry on every use.
      cache?.forget(session.id);
    }
  }

  function checkToken(token: string, channel: Channel, ip: string | undefined): Maybe<AuthContext | null> {
    const claims = tokens.verify(token);
    if (!claims) return null;
    // The global lists need no database: refuse before the session lookup.
    const refusal = deps.ipPolicy?.refuseGlobally(ip) ?? null;
    if (refusal && ip !== undefined) {
      return refuseIp({ userId: claims.sub, sessionId: claims.sid, channel, ip, reason: refusal });
    }
    return fromSession(claims.sid, claims.sub, channel, ip);
  }

  return {
    authenticateToken: async (token, channel = 'rest', ip) => checkToken(token, channel, ip),

    authenticateRequest(request) {
      if (request.headers.authorization !== undefined) {
        const token = bearerToken(request.headers.authorization);
        return token ? checkToken(token, 'rest', request.ip) : null;
      }
      if (!hasSessionCookie(request.headers.cookie)) return null;
      return deps
        .cookieSession(request.headers)
        .then((sessionId) =>
          sessionId ? fromSession(sessionId, null, 'rest', request.ip, renewCookie(request.headers)) : null,
        );
    },

    async authenticateWebSocket(request) {
      const token = bearerToken(request.headers.authorization);
      return token ? checkToken(token, 'websocket', request.ip) : null;
    },

    async authenticateTelegram(telegramUserId) {
      const identity = await sessions.findByChannelLink('telegram', String(telegramUserId));
      if (!identity) return null;
      return {
        userId: identity.userId,
        sessionId: null,
        email: identity.email,
        name: identity.name,
        license: licenses(identity.license),
        channel: 'telegram',
        expiresAt: null,
      };
    },

    // Better Auth's own routes (the mount) refresh their cookie themselves, as they answer.
    authenticateSession: async (sessionId, channel, ip) => fromSession(sessionId, null, channel, ip, noRenewal),

    sessionUsed,
    idleAt,

    issueToken: (userId, sessionId, expiresAt) => tokens.sign(userId, sessionId, expiresAt),
  };
}
