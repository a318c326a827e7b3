import { type Static, Type as T } from '@sinclair/typebox';

export const ChannelType = T.String({ pattern: '^[a-z][a-z0-9_]{0,31}$', examples: ['telegram'] });

export const LinkCodeResponse = T.Object({
  success: T.Literal(true),
  code: T.String({ description: 'One-time code: send /link <code> to the bot, or open deepLink' }),
  expiresAt: T.String({ format: 'date-time' }),
  deepLink: T.Union([T.String(), T.Null()], { description: 'https://t.me/<bot>?start=<code>; null if unknown' }),
});

export const ChannelsResponse = T.Object({
  success: T.Literal(true),
  channels: T.Array(
    T.Object({ channelType: T.String(), channelUserId: T.String(), createdAt: T.String({ format: 'date-time' }) }),
  ),
});

export const UnlinkParams = T.Object({ channelType: ChannelType });
export const UnlinkQuery = T.Object({ channelUserId: T.Optional(T.String({ minLength: 1, maxLength: 64 })) });
export const UnlinkResponse = T.Object({ success: T.Literal(true), removed: T.Integer() });

/**
 * Login Widget data as the widget hands it over. Unknown fields are kept (not stripped), because the signature
 * covers every field Telegram sent.
 */
export const WidgetBody = T.Object(
  {
    id: T.Union([T.Integer({ minimum: 1 }), T.String({ pattern: '^[1-9][0-9]{0,19}$' })]),
    auth_date: T.Union([T.Integer({ minimum: 0 }), T.String({ pattern: '^[0-9]{1,12}$' })]),
    hash: T.String({ minLength: 64, maxLength: 64, pattern: '^[0-9a-fA-F]{64}$' }),
    first_name: T.Optional(T.String({ maxLength: 256 })),
    last_name: T.Optional(T.String({ maxLength: 256 })),
    username: T.Optional(T.String({ maxLength: 64 })),
    photo_url: T.Optional(T.String({ maxLength: 1024 })),
  },
  { additionalProperties: T.Union([T.String({ maxLength: 1024 }), T.Number()]), maxProperties: 16 },
);
export type WidgetBody = Static<typeof WidgetBody>;

export const WidgetResponse = T.Object({
  success: T.Literal(true),
  userId: T.String(),
  linked: T.Boolean({ description: 'True when this call linked the Telegram account (it was not linked before)' }),
  token: T.Optional(T.String({ description: 'Set when the call signed in (no session was sent)' })),
});

export const WebhookBody = T.Object(
  { update_id: T.Integer({ minimum: 0 }) },
  { additionalProperties: true, description: 'A Telegram Update' },
);
