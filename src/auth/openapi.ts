import { openAPI } from 'better-auth/plugins/open-api';
import type { BetterAuthInstance } from './better-auth.js';

/** The parts of an OpenAPI 3.1 document this module hands out. */
export interface BetterAuthOpenApi {
  paths: Record<string, Record<string, unknown>>;
  components: { schemas?: Record<string, unknown> };
}

/**
 * Better Auth's own OpenAPI document of its /api/auth/* routes, generated from the running instance (so it lists the
 * routes of every plugin that is configured). Calls the openAPI plugin's generator directly instead of adding the plugin
 * to the betterAuth({...}) call: that keeps its generate-schema route and its CDN-loaded reference page (which a strict
 * CSP would break) off the public surface. Paths are relative to Better Auth's basePath (/api/auth).
 */
export async function betterAuthOpenApi(auth: BetterAuthInstance): Promise<BetterAuthOpenApi> {
  const endpoint = openAPI({ disableDefaultReference: true }).endpoints.generateOpenAPISchema as unknown as (ctx: {
    context: unknown;
  }) => Promise<BetterAuthOpenApi>;
  return endpoint({ context: await auth.$context });
}
