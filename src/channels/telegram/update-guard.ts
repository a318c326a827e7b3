import type { Context, MiddlewareFn } from 'grammy';

interface Entity {
  offset: unknown;
  length: unknown;
}

/** Whether every entity lies inside its text (UTF-16 offsets, as Telegram counts them). */
function entitiesFit(text: unknown, entities: unknown): boolean {
  if (entities === undefined) return true;
  if (typeof text !== 'string' || !Array.isArray(entities)) return false;
  return entities.every((e: Entity) => {
    const { offset, length } = e ?? {};
    return (
      Number.isInteger(offset) &&
      Number.isInteger(length) &&
      (offset as number) >= 0 &&
      (length as number) > 0 &&
      (offset as number) + (length as number) <= text.length
    );
  });
}

/**
 * The bot's first middleware: drops a message whose entities do not fit its text or caption. Telegram never sends
 * one, but a forged or corrupted update would otherwise reach grammY's command matching, which reads the entity's
 * span out of the text without checking it (a TypeError on a message with entities and no text). Dropped updates
 * are logged without their contents and acknowledged, as Telegram would only resend the same bytes.
 */
export function updateGuard(log: { warn(obj: object, msg: string): void }): MiddlewareFn<Context> {
  return async (ctx, next) => {
    const msg = ctx.msg as Record<string, unknown> | undefined;
    if (msg && !(entitiesFit(msg.text, msg.entities) && entitiesFit(msg.caption, msg.caption_entities))) {
      log.warn({ updateId: ctx.update.update_id }, 'telegram update ignored: entities outside their text');
      return;
    }
    await next();
  };
}
