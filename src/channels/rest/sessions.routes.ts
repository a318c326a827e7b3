import type { FastifyInstance } from 'fastify';
import { type IpPolicy, invalidCidr } from '../../access/ip-policy.js';
import type { RecentAuth } from '../../account/index.js';
import type { AccountsStore } from '../../accounts/accounts.store.js';
import type { DeviceStore } from '../../accounts/devices.js';
import { type AuditLog, restOrigin } from '../../audit/index.js';
import type { Authenticator } from '../../authenticator/index.js';
import { AppError } from '../../errors/index.js';
import { ErrorResponse } from './auth.schemas.js';
import { authOf, requireAuth } from './require-auth.js';
import { reauthCode } from './require-recent-auth.js';
import {
  DeviceResponse,
  DevicesResponse,
  DeviceUpdateBody,
  IdParams,
  IpAllowlistBody,
  IpAllowlistResponse,
  RevokedResponse,
  SessionsResponse,
} from './sessions.schemas.js';

export interface SessionsRoutesDeps {
  authenticator: Authenticator;
  accounts: AccountsStore;
  devices: DeviceStore;
  ipPolicy: IpPolicy;
  audit: AuditLog;
  trustedDeviceDays: number;
  /** Trusting a device takes a recent sign-in (or a current TOTP code): a trusted device skips two-factor prompts. */
  recentAuth: RecentAuth;
  /** Drops the user's cached sessions in this process, so a new allow list applies to the next request. */
  forgetUser?(userId: string): void;
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));
const secured = { security: [{ bearer: [] }] };

/** The signed-in user's own sessions, devices and IP allow list. Another user's session or device is a 404. */
export async function sessionsRoutes(app: FastifyInstance, deps: SessionsRoutesDeps): Promise<void> {
  const { accounts, devices, audit } = deps;
  const preHandler = requireAuth(deps.authenticator);

  app.get(
    '/auth/sessions',
    {
      preHandler,
      schema: {
        summary: "The signed-in user's active sessions",
        tags: ['sessions'],
        ...secured,
        response: { 200: SessionsResponse, ...errors(401, 403, 503) },
      },
    },
    async (request) => {
      const auth = authOf(request);
      const sessions = await accounts.listSessions(auth.userId);
      return {
        success: true as const,
        sessions: sessions.map((s) => ({
          id: s.id,
          createdAt: s.createdAt.toISOString(),
          lastUsedAt: s.lastUsedAt?.toISOString() ?? null,
          expiresAt: s.expiresAt.toISOString(),
          ip: s.ip,
          device: { id: s.deviceId, name: s.deviceName },
          channel: s.channel,
          current: s.id === auth.sessionId,
        })),
      };
    },
  );

  app.delete<{ Params: IdParams }>(
    '/auth/sessions/:id',
    {
      preHandler,
      schema: {
        summary: 'Revoke one of your sessions: its tokens stop working at once and its sockets close',
        tags: ['sessions'],
        ...secured,
        params: IdParams,
        response: { 200: RevokedResponse, ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const auth = authOf(request);
      // Someone else's session and no session at all answer alike: nothing about other users leaks.
      if (!(await accounts.revokeSession(auth.userId, request.params.id))) throw new AppError('SESSION_NOT_FOUND');
      await audit.record({
        event: 'session.revoked',
        userId: auth.userId,
        sessionId: auth.sessionId,
        ...restOrigin(request),
        details: { revoked: request.params.id, by: 'user' },
      });
      return { success: true as const, revoked: 1 };
    },
  );

  app.post(
    '/auth/sessions/revoke-others',
    {
      preHandler,
      schema: {
        summary: 'Revoke every session but the current one',
        tags: ['sessions'],
        ...secured,
        response: { 200: RevokedResponse, ...errors(401, 403, 503) },
      },
    },
    async (request) => {
      const auth = authOf(request);
      const revoked = await accounts.revokeOtherSessions(auth.userId, auth.sessionId);
      await audit.record({
        event: 'session.revoked',
        userId: auth.userId,
        sessionId: auth.sessionId,
        ...restOrigin(request),
        details: { revoked, by: 'user', scope: 'others' },
      });
      return { success: true as const, revoked };
    },
  );

  const deviceView = async (userId: string, currentSessionId: string | null) => {
    const [list, sessions] = await Promise.all([devices.list(userId), accounts.listSessions(userId)]);
    const currentDevice = sessions.find((s) => s.id === currentSessionId)?.deviceId ?? null;
    const now = Date.now();
    return list.map((d) => ({
      id: d.id,
      name: d.name,
      trusted: d.trustedUntil !== null && d.trustedUntil.getTime() > now,
      trustedUntil: d.trustedUntil?.toISOString() ?? null,
      createdAt: d.createdAt.toISOString(),
      lastSeenAt: d.lastSeenAt.toISOString(),
      current: d.id === currentDevice,
      sessions: sessions.filter((s) => s.deviceId === d.id).map((s) => s.id),
    }));
  };

  app.get(
    '/auth/devices',
    {
      preHandler,
      schema: {
        summary: 'Your devices and the sessions on each',
        tags: ['devices'],
        ...secured,
        response: { 200: DevicesResponse, ...errors(401, 403, 503) },
      },
    },
    async (request) => {
      const auth = authOf(request);
      return { success: true as const, devices: await deviceView(auth.userId, auth.sessionId) };
    },
  );

  app.patch<{ Params: IdParams; Body: DeviceUpdateBody }>(
    '/auth/devices/:id',
    {
      preHandler,
      schema: {
        summary: 'Rename a device, or mark it trusted (skips the two-factor prompt for auth.trusted_device_days)',
        description:
          'Trusting a device (`trusted: true`) takes a recent sign-in (auth.recent_auth_window) or a current TOTP ' +
          'code in X-2FA-Code: otherwise 403 REAUTH_REQUIRED.',
        tags: ['devices'],
        ...secured,
        params: IdParams,
        body: DeviceUpdateBody,
        response: { 200: DeviceResponse, ...errors(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const auth = authOf(request);
      const { name, trusted } = request.body;
      // Unknown keys are stripped by the validator (removeAdditional), so "nothing to change" is checked here.
      if (name === undefined && trusted === undefined) {
        throw new AppError('VALIDATION_FAILED', 'Send name and/or trusted.', { field: 'name' });
      }
      // Whoever holds a session must not be able to turn the password alone into a way in: trust needs a fresh
      // sign-in (which, with 2FA on, took a code) or a code now. Renaming and withdrawing trust do not.
      if (trusted === true) await deps.recentAuth.assert(auth.userId, auth.sessionId, reauthCode(request));
      const updated = await devices.update(auth.userId, request.params.id, {
        name: name?.trim() || undefined,
        trustedDays: trusted === undefined ? undefined : trusted ? deps.trustedDeviceDays : null,
      });
      if (!updated) throw new AppError('DEVICE_NOT_FOUND');
      await audit.record({
        event: 'device.updated',
        userId: auth.userId,
        sessionId: auth.sessionId,
        ...restOrigin(request),
        details: { device: updated.id, ...(trusted === undefined ? {} : { trusted }), renamed: name !== undefined },
      });
      const device = (await deviceView(auth.userId, auth.sessionId)).find((d) => d.id === updated.id);
      if (!device) throw new AppError('DEVICE_NOT_FOUND'); // removed concurrently
      return { success: true as const, device };
    },
  );

  app.delete<{ Params: IdParams }>(
    '/auth/devices/:id',
    {
      preHandler,
      schema: {
        summary: 'Remove a device: its sessions are revoked',
        tags: ['devices'],
        ...secured,
        params: IdParams,
        response: { 200: RevokedResponse, ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const auth = authOf(request);
      const sessions = (await accounts.listSessions(auth.userId)).filter((s) => s.deviceId === request.params.id);
      if (!(await devices.remove(auth.userId, request.params.id))) throw new AppError('DEVICE_NOT_FOUND');
      await audit.record({
        event: 'device.removed',
        userId: auth.userId,
        sessionId: auth.sessionId,
        ...restOrigin(request),
        details: { device: request.params.id, revoked: sessions.length },
      });
      return { success: true as const, revoked: sessions.length };
    },
  );

  app.get(
    '/auth/ip-allowlist',
    {
      preHandler,
      schema: {
        summary: 'Your IP allow list (empty: no per-user restriction)',
        tags: ['ip restrictions'],
        ...secured,
        response: { 200: IpAllowlistResponse, ...errors(401, 403, 503) },
      },
    },
    async (request) => ({ success: true as const, cidrs: await accounts.getIpAllowlist(authOf(request).userId) }),
  );

  app.put<{ Body: IpAllowlistBody }>(
    '/auth/ip-allowlist',
    {
      preHandler,
      schema: {
        summary: 'Replace your IP allow list; it must include the address you are calling from',
        tags: ['ip restrictions'],
        ...secured,
        body: IpAllowlistBody,
        response: { 200: IpAllowlistResponse, ...errors(400, 401, 403, 409, 503) },
      },
    },
    async (request) => {
      const auth = authOf(request);
      const cidrs = [...new Set(request.body.cidrs.map((c) => c.trim()))];
      const bad = invalidCidr(cidrs);
      if (bad !== null) {
        throw new AppError('VALIDATION_FAILED', `cidrs: "${bad.slice(0, 64)}" is not a CIDR or IP address`, {
          field: 'cidrs',
        });
      }
      if (cidrs.length > 0 && deps.ipPolicy.refuse(request.ip, cidrs) === 'user_allow') {
        throw new AppError('IP_ALLOWLIST_LOCKOUT');
      }
      await accounts.setIpAllowlist(auth.userId, cidrs);
      deps.forgetUser?.(auth.userId);
      await audit.record({
        event: 'ip_allowlist.changed',
        userId: auth.userId,
        sessionId: auth.sessionId,
        ...restOrigin(request),
        details: { entries: cidrs.length, by: 'user' },
      });
      return { success: true as const, cidrs };
    },
  );
}
