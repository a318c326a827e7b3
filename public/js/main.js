// The console: one section per panel. Each panel is a self-contained module (./panels/*.js) that calls its own routes
// and shows the API's errors in words; a panel whose routes this gateway does not have says so.
import { call, describe } from './api.js';
import { h, replace } from './dom.js';
import account from './panels/account.js';
import audit from './panels/audit.js';
import chat from './panels/chat.js';
import passkeys from './panels/passkeys.js';
import sessions from './panels/sessions.js';
import telegram from './panels/telegram.js';
import twoFactor from './panels/two-factor.js';
import { isSignedIn, onSessionChange } from './session.js';

const PANELS = [account, passkeys, sessions, twoFactor, telegram, audit, chat];

const who = document.getElementById('who');
const nav = document.getElementById('panel-nav');
const container = document.getElementById('panels');

const mounted = [];
for (const panel of PANELS) {
  const headingId = `${panel.id}-heading`;
  const section = h('section', { class: 'panel', id: panel.id, 'aria-labelledby': headingId });
  section.append(h('h2', { id: headingId }, panel.title));
  const body = h('div', { class: 'panel-body' });
  section.append(body);
  container.append(section);
  nav.append(h('li', {}, h('a', { href: `#${panel.id}` }, panel.title)));
  try {
    mounted.push({ panel, instance: panel.mount(body) });
  } catch (err) {
    replace(body, h('p', { class: 'message error', role: 'alert' }, `This panel failed to start: ${err.message}`));
  }
}

async function refreshWho(signedIn) {
  if (!signedIn) {
    who.textContent = 'Not signed in.';
    return;
  }
  const result = await call('GET', '/auth/session');
  if (result.ok) {
    const { user, license } = result.data;
    who.textContent = `Signed in as ${user.email}${license?.type ? ` (${license.type} license)` : ''}.`;
  } else {
    who.textContent = describe(result);
  }
}

function sessionChanged(signedIn) {
  refreshWho(signedIn);
  for (const { instance } of mounted) instance?.onSession?.(signedIn);
}

onSessionChange(sessionChanged);
sessionChanged(isSignedIn());
document.documentElement.dataset.ready = 'true';
