import { describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/index.js';
import { createLicenseResolver } from '../../src/licenses/index.js';

const licenses: Config['licenses'] = {
  default_type: 'free',
  types: {
    free: { features: { chat: true }, resource_limits: { max_ws_connections: 2 } },
    pro: { features: { chat: true, passkeys: true }, resource_limits: { max_ws_connections: 10 } },
  },
};

describe('license resolver', () => {
  it("a row's own features and limits override its type's defaults; no row is the default type", () => {
    const resolve = createLicenseResolver(licenses);
    expect(resolve(null)).toEqual({
      type: 'free',
      features: { chat: true },
      resourceLimits: { max_ws_connections: 2 },
    });
    const pro = resolve({ license_type: 'pro', features: { chat: false }, resource_limits: null });
    expect(pro).toEqual({
      type: 'pro',
      features: { chat: false, passkeys: true },
      resourceLimits: { max_ws_connections: 10 },
    });
  });
});
