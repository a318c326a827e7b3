import { type Static, Type as T } from '@sinclair/typebox';
import { LicenseOverrides } from '../../licenses/index.js';
import { License } from './auth.schemas.js';
import { Cidrs } from './sessions.schemas.js';

/** Schemas of the admin API (/admin/*). */

const DateTime = T.String({ format: 'date-time' });
const NullableDateTime = T.Union([DateTime, T.Null()]);

export const UserIdParams = T.Object({ id: T.String({ minLength: 1, maxLength: 128 }) });
export type UserIdParams = Static<typeof UserIdParams>;

export const UserListQuery = T.Object({
  q: T.Optional(T.String({ maxLength: 254, description: 'Matches email, name or id (case-insensitive substring)' })),
  // Strings: the app validates without type coercion (coerceTypes: false), and a query string is text.
  limit: T.Optional(T.String({ pattern: '^(?:[1-9]|[1-9][0-9]|100)$', description: '1-100, default 20' })),
  offset: T.Optional(T.String({ pattern: '^[0-9]{1,7}$', description: 'default 0' })),
});
export type UserListQuery = Static<typeof UserListQuery>;

export const AdminUser = T.Object({
  id: T.String(),
  email: T.String(),
  name: T.String(),
  role: T.String({ examples: ['user', 'admin'] }),
  emailVerified: T.Boolean(),
  disabled: T.Boolean(),
  disabledAt: NullableDateTime,
  createdAt: DateTime,
  licenseType: T.String({ description: 'The license type in force (the default type without a license row)' }),
});

export const UserListResponse = T.Object({
  success: T.Literal(true),
  users: T.Array(AdminUser),
  total: T.Integer(),
  limit: T.Integer(),
  offset: T.Integer(),
});

export const UserDetailResponse = T.Object({
  success: T.Literal(true),
  user: AdminUser,
  license: License,
  ipAllowlist: T.Array(T.String()),
  sessions: T.Array(
    T.Object({
      id: T.String(),
      createdAt: DateTime,
      lastUsedAt: NullableDateTime,
      expiresAt: DateTime,
      ip: T.Union([T.String(), T.Null()]),
      deviceName: T.String(),
      channel: T.Union([T.String(), T.Null()]),
    }),
  ),
  passkeys: T.Array(
    T.Object({ id: T.String(), name: T.Union([T.String(), T.Null()]), deviceType: T.String(), createdAt: DateTime }),
  ),
  channelLinks: T.Array(T.Object({ channel: T.String(), channelUserId: T.String(), createdAt: DateTime })),
});

export const LicenseBody = T.Object(
  {
    type: T.String({ minLength: 1, maxLength: 64, description: 'A key of licenses.types in config' }),
    features: T.Optional(LicenseOverrides),
    resourceLimits: T.Optional(LicenseOverrides),
  },
  { additionalProperties: false },
);
export type LicenseBody = Static<typeof LicenseBody>;

export const LicenseResponse = T.Object({ success: T.Literal(true), license: License });
export const OkResponse = T.Object({ success: T.Literal(true) });
export const RoleBody = T.Object(
  { role: T.Union([T.Literal('admin'), T.Literal('user')]) },
  { additionalProperties: false },
);
export type RoleBody = Static<typeof RoleBody>;
export const AdminIpAllowlistBody = T.Object({ cidrs: Cidrs }, { additionalProperties: false });
export type AdminIpAllowlistBody = Static<typeof AdminIpAllowlistBody>;
