// The signed-in state of this tab: the gateway token, kept in sessionStorage (see README "Console": it survives a
// reload, dies with the tab, and is never put in a URL).

const KEY = 'gateway.token';
const listeners = new Set();

export function getToken() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setToken(token) {
  const before = getToken();
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    // Storage disabled: the console still works until the page is reloaded.
  }
  // A renewed token for the same session is not a sign-in: listeners only hear about signed-in <-> signed-out.
  if (Boolean(before) !== Boolean(token)) for (const fn of listeners) fn(Boolean(token));
}

export function isSignedIn() {
  return Boolean(getToken());
}

/** Calls fn(signedIn) whenever the tab signs in or out. */
export function onSessionChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
