import { type Static, Type as T } from '@sinclair/typebox';

/** Schemas of the account routes (/auth/sessions, /auth/devices, /auth/ip-allowlist). */

export const Id = T.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:-]+$' });
export const IdParams = T.Object({ id: Id });
export type IdParams = Static<typeof IdParams>;

const DateTime = T.String({ format: 'date-time' });
const NullableDateTime = T.Union([DateTime, T.Null()]);

export const SessionItem = T.Object({
  id: T.String(),
  createdAt: DateTime,
  lastUsedAt: NullableDateTime,
  expiresAt: DateTime,
  ip: T.Union([T.String(), T.Null()]),
  device: T.Object({
    id: T.Union([T.String(), T.Null()], { description: 'null: signed in without a device key' }),
    name: T.String({ description: 'From the user agent unless renamed, e.g. "Chrome 120 on macOS"' }),
  }),
  channel: T.Union([T.String(), T.Null()], {
    description: 'Channel of the last recorded use (rest, websocket); null before the first use',
  }),
  current: T.Boolean({ description: 'The session of this request' }),
});

export const SessionsResponse = T.Object({ success: T.Literal(true), sessions: T.Array(SessionItem) });

export const RevokedResponse = T.Object({ success: T.Literal(true), revoked: T.Integer({ minimum: 0 }) });

export const DeviceItem = T.Object({
  id: T.String(),
  name: T.String(),
  trusted: T.Boolean(),
  trustedUntil: NullableDateTime,
  createdAt: DateTime,
  lastSeenAt: DateTime,
  current: T.Boolean({ description: "The device of this request's session" }),
  sessions: T.Array(T.String(), { description: 'Active session ids on this device' }),
});

export const DevicesResponse = T.Object({ success: T.Literal(true), devices: T.Array(DeviceItem) });
export const DeviceResponse = T.Object({ success: T.Literal(true), device: DeviceItem });

export const DeviceUpdateBody = T.Object(
  {
    name: T.Optional(T.String({ minLength: 1, maxLength: 100 })),
    trusted: T.Optional(T.Boolean({ description: 'true: trusted for auth.trusted_device_days; false: not trusted' })),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type DeviceUpdateBody = Static<typeof DeviceUpdateBody>;

export const Cidrs = T.Array(T.String({ minLength: 2, maxLength: 64 }), {
  maxItems: 100,
  description: 'CIDRs or addresses, IPv4 or IPv6; empty: no restriction',
  examples: [['203.0.113.0/24', '2001:db8::/32']],
});

export const IpAllowlistBody = T.Object({ cidrs: Cidrs }, { additionalProperties: false });
export type IpAllowlistBody = Static<typeof IpAllowlistBody>;
export const IpAllowlistResponse = T.Object({ success: T.Literal(true), cidrs: T.Array(T.String()) });
