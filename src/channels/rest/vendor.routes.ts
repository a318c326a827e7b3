import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Type as T } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../../errors/index.js';

/**
 * Browser code the gateway's pages (and any same-origin web app) load: @simplewebauthn/browser's ES module build,
 * at the version the server side was tested with. Files are read once at start from an allow-list built from the
 * package directory, so no request path ever reaches the file system.
 *
 *   import { startRegistration, startAuthentication } from '/vendor/simplewebauthn-browser.js';
 */
export async function vendorRoutes(app: FastifyInstance): Promise<void> {
  const entry = fileURLToPath(import.meta.resolve('@simplewebauthn/browser'));
  const root = dirname(entry);
  const files = new Map<string, Buffer>();
  const walk = (dir: string) => {
    for (const item of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, item.name);
      if (item.isDirectory()) walk(path);
      else if (item.name.endsWith('.js')) files.set(relative(root, path).split(sep).join('/'), readFileSync(path));
    }
  };
  walk(root);
  const main = relative(root, entry).split(sep).join('/');

  const js = (body: Buffer | string) => ({ body, type: 'text/javascript; charset=utf-8' });
  const cache = 'public, max-age=3600';

  app.get(
    '/vendor/simplewebauthn-browser.js',
    { schema: { summary: '@simplewebauthn/browser (ES module)', tags: ['vendor'] } },
    async (_request, reply) => {
      const { body, type } = js(`export * from './simplewebauthn-browser/${main}';\n`);
      return reply.type(type).header('cache-control', cache).send(body);
    },
  );

  app.get<{ Params: { '*': string } }>(
    '/vendor/simplewebauthn-browser/*',
    {
      schema: {
        summary: 'Modules of @simplewebauthn/browser, imported by /vendor/simplewebauthn-browser.js',
        tags: ['vendor'],
        params: T.Object({ '*': T.String({ maxLength: 200 }) }),
      },
    },
    async (request, reply) => {
      const file = files.get(request.params['*']);
      if (!file) throw new AppError('NOT_FOUND', 'No such file.');
      const { body, type } = js(file);
      return reply.type(type).header('cache-control', cache).send(body);
    },
  );
}
