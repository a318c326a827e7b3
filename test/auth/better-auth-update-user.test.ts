import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

// Regression: Better Auth's POST /api/auth/update-user took any JSON and wrote it into the user row unchecked:
// {"name":null} and a 30,000-deep array answered 500, ["a","b"], {"a":1} and true were stored as text, a 60 KB name
// was taken while registration caps names at 100 characters. The mount now checks the body before Better Auth sees it.
describe("Better Auth's POST /api/auth/update-user", () => {
  let t: TestApp;
  let user: Awaited<ReturnType<typeof registerUser>>;
  beforeAll(async () => {
    t = await createTestApp();
    user = await registerUser(t.app, { name: 'Before' });
  });
  afterAll(() => t?.close());

  const update = (payload: string, contentType = 'application/json') =>
    t.app.inject({
      method: 'POST',
      url: '/api/auth/update-user',
      headers: { authorization: `Bearer ${user.token}`, origin: t.config.server.base_url, 'content-type': contentType },
      payload,
    });
  const stored = async () =>
    (
      await t.db.query<{ name: string; image: string | null; email_verified: boolean }>(
        'SELECT name, image, email_verified FROM users WHERE id = $1',
        [user.userId],
      )
    ).rows[0];

  it('refuses a name that is not a string of at most 100 characters, naming the field, and stores nothing', async () => {
    const deep = `{"name":${'['.repeat(30_000)}${']'.repeat(30_000)}}`;
    for (const body of [
      '{"name":null}',
      deep,
      '{"name":["a","b"]}',
      '{"name":{"a":1}}',
      '{"name":true}',
      '{"name":42}',
      JSON.stringify({ name: 'x'.repeat(60_000) }),
      JSON.stringify({ name: 'x'.repeat(101) }),
    ]) {
      const res = await update(body);
      expect([body.slice(0, 30), res.statusCode]).toEqual([body.slice(0, 30), 400]);
      expect(res.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'name' });
    }
    expect(await stored()).toMatchObject({ name: 'Before', image: null });
  });

  it('takes a name as registration does (100 characters, trimmed) and an http(s) image URL or null', async () => {
    const name = `  ${'é'.repeat(96)}  `; // 100 characters
    expect((await update(JSON.stringify({ name }))).statusCode).toBe(200);
    expect((await stored())?.name).toBe(name.trim());
    const image = 'https://cdn.example.com/avatars/1.png';
    expect((await update(JSON.stringify({ name: 'Ann', image }))).statusCode).toBe(200);
    expect(await stored()).toMatchObject({ name: 'Ann', image });
    expect((await update('{"image":null}')).statusCode).toBe(200);
    expect(await stored()).toMatchObject({ name: 'Ann', image: null });
  });

  it('refuses an image that is not an http(s) URL of at most 2048 characters', async () => {
    for (const image of [
      'javascript:alert(1)',
      'data:image/png;base64,AAAA',
      'not a url',
      '',
      42,
      ['https://a.example/'],
      {
        url: 'https://a.example/',
      },
      `https://a.example/${'x'.repeat(2048)}`,
    ]) {
      const res = await update(JSON.stringify({ image }));
      expect([image, res.statusCode]).toEqual([image, 400]);
      expect(res.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'image' });
    }
  });

  it('refuses every other field Better Auth would write, and bodies that are not a JSON object', async () => {
    for (const field of ['emailVerified', 'email', 'twoFactorEnabled', 'isAnonymous', 'role', 'id', 'createdAt']) {
      const res = await update(JSON.stringify({ name: 'Ann', [field]: true }));
      expect([field, res.statusCode]).toEqual([field, 400]);
      expect(res.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field });
    }
    expect((await stored())?.email_verified).toBe(false);
    for (const body of ['[]', '"name"', 'null']) {
      const res = await update(body);
      expect(res.statusCode).toBe(400);
      expect(res.json().error.code).toBe('VALIDATION_FAILED');
    }
    expect((await update('{"name":')).json().error.code).toBe('MALFORMED_JSON');
    expect((await update('\uFEFF{"emailVerified":true}')).json().error.code).toBe('MALFORMED_JSON');
    const form = await update('name=Ann', 'application/x-www-form-urlencoded');
    expect(form.statusCode).toBe(415);
    expect(form.json().error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
  });
});

// Regression: POST /api/auth/sign-up/email wrote name and image into the new user row unchecked (a 60 KB name,
// `javascript:` as an image) while update-user and /auth/register refuse them. Both go through the same checks now.
describe("Better Auth's POST /api/auth/sign-up/email: update-user's name and image rules", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  let n = 0;
  /** Signs up a new address with `fields` (as JSON, or as a form); the answer and the user row it left, if any. */
  const signUp = async (fields: Record<string, unknown>, form = false) => {
    const email = `sign-up-${++n}@example.com`;
    const body = { email, password: 'SecurePassword123!', ...fields };
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-up/email',
      headers: {
        origin: t.config.server.base_url,
        'content-type': form ? 'application/x-www-form-urlencoded' : 'application/json',
      },
      payload: form ? new URLSearchParams(body as Record<string, string>).toString() : JSON.stringify(body),
    });
    const { rows } = await t.db.query<{ name: string; image: string | null }>(
      'SELECT name, image FROM users WHERE email = $1',
      [email],
    );
    return { res, row: rows[0] };
  };

  it('refuses a name over 100 characters and an image that is not an http(s) URL, naming the field', async () => {
    for (const form of [false, true]) {
      for (const [field, fields] of [
        ['name', { name: 'x'.repeat(60_000) }],
        ['name', { name: 'x'.repeat(101) }],
        ['image', { name: 'Ann', image: 'javascript:alert(document.cookie)' }],
        ['image', { name: 'Ann', image: `data:image/png;base64,${'A'.repeat(40_000)}` }],
        ['image', { name: 'Ann', image: `https://a.example/${'x'.repeat(2048)}` }],
      ] as const) {
        const { res, row } = await signUp(fields, form);
        expect([form, field, res.statusCode]).toEqual([form, field, 400]);
        expect(res.json().error).toMatchObject({ code: 'VALIDATION_FAILED', field });
        expect(row).toBeUndefined();
      }
    }
  });

  it('takes a name of 100 characters and an http(s) image URL, or none', async () => {
    const name = 'é'.repeat(100);
    const image = 'https://cdn.example.com/avatars/1.png';
    for (const form of [false, true]) {
      const withImage = await signUp({ name, image }, form);
      expect(withImage.res.statusCode).toBe(200);
      expect(withImage.row).toEqual({ name, image });
      const without = await signUp({ name: 'Ann' }, form);
      expect(without.res.statusCode).toBe(200);
      expect(without.row).toEqual({ name: 'Ann', image: null });
    }
  });
});
