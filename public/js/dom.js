// Tiny DOM helpers: elements are built with properties and text nodes only (no HTML strings, no inline styles), so
// nothing the API returns can become markup.

/**
 * h('button', { type: 'button', onclick: fn }, 'Text')
 * Attributes starting with "on" become listeners; `class`, `for`, `aria-*`, `data-*` become attributes.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = value;
    else if (name in el && !name.includes('-') && name !== 'list' && name !== 'form') el[name] = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

let ids = 0;
/** A labelled input: returns { row, input }. */
export function field(label, attrs = {}) {
  const id = attrs.id ?? `f${++ids}`;
  const input = h(attrs.multiline ? 'textarea' : 'input', { ...attrs, multiline: undefined, id });
  const row = h('div', { class: 'field' }, h('label', { for: id }, label), input);
  return { row, input };
}

/**
 * A message area for a panel: `show(kind, text)` with kind 'info' | 'ok' | 'error'. Errors are announced at once
 * (role=alert), the rest politely.
 */
export function messageArea() {
  const el = h('div', { class: 'message', role: 'status', 'aria-live': 'polite' });
  return {
    el,
    show(kind, text) {
      el.className = `message ${kind}`;
      el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
      el.textContent = text;
    },
    clear() {
      el.className = 'message';
      el.setAttribute('role', 'status');
      el.textContent = '';
    },
  };
}

/** Disables a form's controls while `work` runs, so a double click sends one request. */
export async function busy(form, work) {
  const controls = [...form.querySelectorAll('button, input, select, textarea')];
  const before = controls.map((c) => c.disabled);
  for (const c of controls) c.disabled = true;
  form.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    controls.forEach((c, i) => {
      c.disabled = before[i];
    });
    form.removeAttribute('aria-busy');
  }
}

/** A date from the API, in the person's locale; the raw value when it is not a date. */
export function when(value) {
  if (value === undefined || value === null || value === '') return '—';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString();
}
