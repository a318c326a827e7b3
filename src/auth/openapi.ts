import { openAPI } from 'better-auth/plugins/open-api';
import type { BetterAuthInstance } from './better-auth.js';
import { servesBetterAuthRoute } from './mount.plugin.js';

/** The parts of an OpenAPI 3.1 document this module hands out. */
export interface BetterAuthOpenApi {
  paths: Record<string, Record<string, unknown>>;
  components: { schemas?: Record<string, unknown> };
}

/**
 * Better Auth's own OpenAPI document of the /api/auth/* routes the gateway serves, generated from the running instance
 * (so it follows the plugins that are configured). Calls the openAPI plugin's generator directly instead of adding the plugin
 * to the betterAuth({...}) call: that keeps its generate-schema route and its CDN-loaded reference page (which a strict
 * CSP would break) off the public surface. Paths are relative to Better Auth's basePath (/api/auth).
 */
export async function betterAuthOpenApi(auth: BetterAuthInstance): Promise<BetterAuthOpenApi> {
  const endpoint = openAPI({ disableDefaultReference: true }).endpoints.generateOpenAPISchema as unknown as (ctx: {
    context: unknown;
  }) => Promise<BetterAuthOpenApi>;
  const doc = await endpoint({ context: await auth.$context });
  // Only the routes the mount serves: the others answer 404 (mount.plugin.ts).
  for (const path of Object.keys(doc.paths)) {
    if (!servesBetterAuthRoute(path.replace(/\{[^}]*\}/g, 'x'))) delete doc.paths[path];
  }
  for (const item of Object.values(doc.paths)) {
    for (const operation of Object.values(item)) sanitizeMediaTypes(operation);
  }
  return doc;
}

const MEDIA_TYPE_KEYS = new Set(['schema', 'example', 'examples', 'encoding']);

/**
 * Better Auth's generator puts some schema keywords (e.g. `required` of the anonymous plugin's error responses) on the
 * media type object itself, which OpenAPI 3.1 forbids; drop them so the merged document stays valid.
 */
function sanitizeMediaTypes(operation: unknown): void {
  const responses = (operation as { responses?: Record<string, { content?: Record<string, Record<string, unknown>> }> })
    ?.responses;
  const bodies = [
    ...Object.values(responses ?? {}).map((r) => r?.content),
    (operation as { requestBody?: { content?: Record<string, Record<string, unknown>> } })?.requestBody?.content,
  ];
  for (const content of bodies) {
    for (const media of Object.values(content ?? {})) {
      for (const key of Object.keys(media)) if (!MEDIA_TYPE_KEYS.has(key)) delete media[key];
    }
  }
}
