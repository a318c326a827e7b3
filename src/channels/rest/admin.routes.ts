import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type IpPolicy, invalidCidr } from '../../access/ip-policy.js';
import type { RecentAuth } from '../../account/index.js';
import type { AccountsStore, AdminStore, UserSummary } from '../../accounts/accounts.store.js';
import type { AuditLog } from '../../audit/index.js';
import type { Authenticator } from '../../authenticator/index.js';
import type { Config } from '../../config/index.js';
import type { Queryable } from '../../db/index.js';
import { AppError } from '../../errors/index.js';
import { render } from '../../http/errors.plugin.js';
import type { LicenseResolver } from '../../licenses/index.js';
import {
  AdminIpAllowlistBody,
  LicenseBody,
  LicenseResponse,
  OkResponse,
  RoleBody,
  UserDetailResponse,
  UserIdParams,
  UserListQuery,
  UserListResponse,
} from './admin.schemas.js';
import { ErrorResponse } from './auth.schemas.js';
import { requireAdmin } from './require-admin.js';
import { authOf } from './require-auth.js';
import { requireRecentAuth } from './require-recent-auth.js';
import { IpAllowlistResponse, RevokedResponse } from './sessions.schemas.js';

export interface AdminRoutesDeps {
  config: Config;
  db: Queryable;
  authenticator: Authenticator;
  admin: AdminStore;
  accounts: AccountsStore;
  licenses: LicenseResolver;
  audit: AuditLog;
  ipPolicy: IpPolicy;
  /** Changes need a recent sign-in (or X-2FA-Code): a stolen old admin token must not make admins or delete users. */
  recentAuth: RecentAuth;
  /** Drops the user's cached sessions in this process: a license or allow-list change applies to the next request. */
  forgetUser?(userId: string): void;
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));

/**
 * The admin API: users, their licenses, sessions and access. Every call requires role 'admin'; every action and every
 * refusal once the caller is known is audited (a request refused before its token is read, while parsing, is not).
 */
export async function adminRoutes(app: FastifyInstance, deps: AdminRoutesDeps): Promise<void> {
  const { admin, accounts, audit, config } = deps;
  // Before validation: a caller who is not an administrator learns nothing about the routes' input, and an
  // administrator's invalid input is known to come from them (and audited below).
  const preValidation = requireAdmin(deps);
  const common = { preValidation, schema: { tags: ['admin'], security: [{ bearer: [] }] } } as const;
  const change = { preValidation: [...preValidation, requireRecentAuth(deps.recentAuth)], schema: common.schema };
  const adminEmails = new Set(config.admin.emails.map((e) => e.trim().toLowerCase()));
  /** Requests whose outcome is already in the audit log: the refusal hook does not write a second, contradicting row. */
  const recorded = new WeakSet<FastifyRequest>();
  /**
   * Requests requireAdmin let through. An ADMIN_REQUIRED after that comes from the change itself, which checks the
   * role again (the caller was demoted meanwhile): unlike requireAdmin's, it is not in the audit log yet.
   */
  const admitted = new WeakSet<FastifyRequest>();
  app.addHook('preHandler', async (request) => {
    admitted.add(request);
  });

  const view = (u: UserSummary) => ({
    id: u.id,
    email: u.email,
    name: u.name,
    role: u.role,
    emailVerified: u.emailVerified,
    disabled: u.disabledAt !== null,
    disabledAt: u.disabledAt?.toISOString() ?? null,
    createdAt: u.createdAt.toISOString(),
    licenseType: u.licenseType ?? config.licenses.default_type,
  });

  const record = async (request: FastifyRequest, action: string, target: string, details: object = {}) => {
    recorded.add(request);
    const auth = authOf(request);
    const ua = request.headers['user-agent'];
    await audit.record({
      event: 'admin.action',
      userId: auth.userId,
      sessionId: auth.sessionId,
      channel: 'rest',
      ip: request.ip,
      userAgent: typeof ua === 'string' ? ua : null,
      details: { action, target, ...details },
    });
  };

  // Every refusal of an administrator's request is audited too (their own account, an unknown user, invalid input, a
  // demotion that landed while the request was under way). Callers who are not administrators when the request
  // arrives never get here: requireAdmin refuses and audits them.
  app.addHook('onError', async (request, _reply, error) => {
    const refusedByRequireAdmin =
      error instanceof AppError && error.code === 'ADMIN_REQUIRED' && !admitted.has(request);
    if (!request.auth || recorded.has(request) || refusedByRequireAdmin) return;
    const code = render(error).body.error.code; // the code the caller is answered with
    const target = (request.params as { id?: unknown } | undefined)?.id;
    await record(
      request,
      `${request.method} ${request.routeOptions.url ?? ''}`,
      typeof target === 'string' ? target : '',
      {
        outcome: 'refused',
        reason: code,
      },
    );
  });

  const existing = async (id: string) => {
    const user = await admin.getUser(id);
    if (!user) throw new AppError('USER_NOT_FOUND');
    return user;
  };

  const notSelf = (request: FastifyRequest, id: string, what: string) => {
    if (authOf(request).userId === id) {
      throw new AppError('BAD_REQUEST', `An administrator cannot ${what} their own account through the admin API.`);
    }
  };

  app.get<{ Querystring: UserListQuery }>(
    '/admin/users',
    {
      ...common,
      schema: {
        ...common.schema,
        summary: 'List and search users, newest first',
        querystring: UserListQuery,
        response: { 200: UserListResponse, ...errors(400, 401, 403, 503) },
      },
    },
    async (request) => {
      const limit = Number(request.query.limit ?? 20);
      const offset = Number(request.query.offset ?? 0);
      const { users, total } = await admin.listUsers({ query: request.query.q || undefined, limit, offset });
      return { success: true as const, users: users.map(view), total, limit, offset };
    },
  );

  app.get<{ Params: UserIdParams }>(
    '/admin/users/:id',
    {
      ...common,
      schema: {
        ...common.schema,
        summary: 'One user with sessions, passkeys, channel links and license',
        params: UserIdParams,
        response: { 200: UserDetailResponse, ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const user = await existing(request.params.id);
      const [row, sessions, passkeys, links, ipAllowlist] = await Promise.all([
        admin.licenseRow(user.id),
        accounts.listSessions(user.id),
        admin.passkeys(user.id),
        admin.channelLinks(user.id),
        accounts.getIpAllowlist(user.id),
      ]);
      return {
        success: true as const,
        user: view(user),
        license: deps.licenses(row),
        ipAllowlist,
        sessions: sessions.map((s) => ({
          id: s.id,
          createdAt: s.createdAt.toISOString(),
          lastUsedAt: s.lastUsedAt?.toISOString() ?? null,
          expiresAt: s.expiresAt.toISOString(),
          ip: s.ip,
          deviceName: s.deviceName,
          channel: s.channel,
        })),
        passkeys: passkeys.map((p) => ({ ...p, createdAt: p.createdAt.toISOString() })),
        channelLinks: links.map((l) => ({ ...l, createdAt: l.createdAt.toISOString() })),
      };
    },
  );

  app.put<{ Params: UserIdParams; Body: LicenseBody }>(
    '/admin/users/:id/license',
    {
      ...change,
      schema: {
        ...common.schema,
        summary: "Set a user's license type, features and resource limits (applies to their next request)",
        params: UserIdParams,
        body: LicenseBody,
        response: { 200: LicenseResponse, ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const { type, features, resourceLimits } = request.body;
      if (!Object.hasOwn(config.licenses.types, type)) {
        throw new AppError(
          'VALIDATION_FAILED',
          `type must be one of: ${Object.keys(config.licenses.types).join(', ')}`,
          { field: 'type' },
        );
      }
      const actor = authOf(request).userId;
      if (!(await admin.setLicense(request.params.id, { type, features, resourceLimits }, actor))) {
        throw new AppError('USER_NOT_FOUND');
      }
      deps.forgetUser?.(request.params.id);
      await record(request, 'license.set', request.params.id, { type });
      return { success: true as const, license: deps.licenses(await admin.licenseRow(request.params.id)) };
    },
  );

  app.post<{ Params: UserIdParams }>(
    '/admin/users/:id/revoke-sessions',
    {
      ...change,
      schema: {
        ...common.schema,
        summary: "End all of a user's sessions on every channel",
        params: UserIdParams,
        response: { 200: RevokedResponse, ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      await existing(request.params.id);
      const revoked = await admin.revokeAllSessions(request.params.id, authOf(request).userId);
      await record(request, 'sessions.revoke', request.params.id, { revoked });
      return { success: true as const, revoked };
    },
  );

  for (const [path, disabled] of [
    ['disable', true],
    ['enable', false],
  ] as const) {
    app.post<{ Params: UserIdParams }>(
      `/admin/users/:id/${path}`,
      {
        ...change,
        schema: {
          ...common.schema,
          summary: disabled
            ? 'Disable a user: no sign-in on any channel, and their sessions end'
            : 'Re-enable a disabled user',
          params: UserIdParams,
          response: { 200: OkResponse, ...errors(400, 401, 403, 404, 409, 503) },
        },
      },
      async (request) => {
        if (disabled) notSelf(request, request.params.id, 'disable');
        if (!(await admin.setDisabled(request.params.id, disabled, authOf(request).userId))) {
          throw new AppError('USER_NOT_FOUND');
        }
        deps.forgetUser?.(request.params.id);
        await record(request, disabled ? 'user.disable' : 'user.enable', request.params.id);
        return { success: true as const };
      },
    );
  }

  app.put<{ Params: UserIdParams; Body: RoleBody }>(
    '/admin/users/:id/role',
    {
      ...change,
      schema: {
        ...common.schema,
        summary: 'Make a user an administrator, or take the role away',
        params: UserIdParams,
        body: RoleBody,
        response: { 200: OkResponse, ...errors(400, 401, 403, 404, 409, 503) },
      },
    },
    async (request) => {
      if (request.body.role !== 'admin') {
        notSelf(request, request.params.id, 'demote');
        // The sign-in guard would grant the role again at their next sign-in: the demotion would not last.
        if (adminEmails.has((await existing(request.params.id)).email.toLowerCase())) {
          throw new AppError('ADMIN_BY_CONFIG');
        }
      }
      if (!(await admin.setRole(request.params.id, request.body.role, authOf(request).userId))) {
        throw new AppError('USER_NOT_FOUND');
      }
      await record(request, 'role.set', request.params.id, { role: request.body.role });
      return { success: true as const };
    },
  );

  app.put<{ Params: UserIdParams; Body: AdminIpAllowlistBody }>(
    '/admin/users/:id/ip-allowlist',
    {
      ...change,
      schema: {
        ...common.schema,
        summary: "Replace a user's IP allow list (empty: no per-user restriction)",
        params: UserIdParams,
        body: AdminIpAllowlistBody,
        response: { 200: IpAllowlistResponse, ...errors(400, 401, 403, 404, 409, 503) },
      },
    },
    async (request) => {
      const cidrs = [...new Set(request.body.cidrs.map((c) => c.trim()))];
      const bad = invalidCidr(cidrs);
      if (bad !== null) {
        throw new AppError('VALIDATION_FAILED', `cidrs: "${bad.slice(0, 64)}" is not a CIDR or IP address`, {
          field: 'cidrs',
        });
      }
      const actor = authOf(request).userId;
      if (actor === request.params.id && cidrs.length > 0 && deps.ipPolicy.refuse(request.ip, cidrs) === 'user_allow') {
        throw new AppError('IP_ALLOWLIST_LOCKOUT');
      }
      if (!(await admin.setIpAllowlist(request.params.id, cidrs, actor))) throw new AppError('USER_NOT_FOUND');
      deps.forgetUser?.(request.params.id);
      await record(request, 'ip_allowlist.set', request.params.id, { entries: cidrs.length });
      return { success: true as const, cidrs };
    },
  );

  app.delete<{ Params: UserIdParams }>(
    '/admin/users/:id',
    {
      ...change,
      schema: {
        ...common.schema,
        summary: 'Delete a user and everything of theirs; their sessions end on every channel',
        params: UserIdParams,
        response: { 200: OkResponse, ...errors(400, 401, 403, 404, 409, 503) },
      },
    },
    async (request) => {
      notSelf(request, request.params.id, 'delete');
      const user = await existing(request.params.id);
      // Recorded once done (a refused deletion, LAST_ADMIN, is recorded as refused): the target id is in details.
      if (!(await admin.deleteUser(user.id, authOf(request).userId))) throw new AppError('USER_NOT_FOUND');
      await record(request, 'user.delete', user.id, { email: user.email });
      return { success: true as const };
    },
  );
}
