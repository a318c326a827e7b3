import { AppError } from '../errors/index.js';

/** The body types Better Auth's routes accept (better-call's allowedMediaTypes for its sign-in and 2FA routes). */
const JSON_TYPE = 'application/json';
const FORM_TYPE = 'application/x-www-form-urlencoded';

/**
 * A field of a raw body bound for Better Auth's mount, read exactly as better-call will read it, for the gateway's
 * checks that run first (the lockout's account, a 2FA code's one use): a check that read another value than the one
 * Better Auth acts on would count a decoy. better-call reads bodies with the Fetch body methods: as JSON whenever the
 * type merely starts with application/json, a form's repeated field by its last value. So the bytes are read here with
 * the same methods, and what could still be read two ways is refused first: a media type (before `;`, trimmed, any
 * case) other than exactly one of the two (415; Better Auth refuses those too) and a form that repeats the field
 * (400 VALIDATION_FAILED). Duplicate JSON keys need no refusal: both sides use JSON.parse (the last one wins).
 * Null when the field is absent or not a string (Better Auth then refuses the body itself).
 */
export async function betterAuthBodyField(
  contentType: string | undefined,
  body: Buffer,
  field: string,
): Promise<string | null> {
  const type = (contentType ?? '').split(';', 1)[0]?.trim().toLowerCase();
  if (type !== JSON_TYPE && type !== FORM_TYPE) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Send ${JSON_TYPE} or ${FORM_TYPE}.`);
  }
  // Parameters change neither reading (a form is UTF-8 whatever its charset says), so the bare type is enough.
  const read = new Response(new Uint8Array(body), { headers: { 'content-type': type } });
  let value: unknown;
  if (type === JSON_TYPE) {
    value = ((await read.json().catch(() => null)) as Record<string, unknown> | null)?.[field];
  } else {
    const values = (await read.formData().catch(() => null))?.getAll(field) ?? [];
    if (values.length > 1) throw new AppError('VALIDATION_FAILED', `${field} must be sent once`, { field });
    value = values[0];
  }
  return typeof value === 'string' ? value : null;
}
