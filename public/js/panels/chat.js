// Chat over WebSocket: connects to /ws/chat with this tab's token (first message {"type":"auth"}: browsers cannot
// send an Authorization header on a WebSocket) and shows the messages both ways.
import { describe, isAbsent } from '../api.js';
import { busy, field, h, messageArea } from '../dom.js';
import { getToken, setToken } from '../session.js';

export const ROUTES = { chat: '/ws/chat' };
const FEATURE = 'Chat over WebSocket';

export default {
  id: 'chat',
  title: 'Chat (WebSocket)',
  mount(root) {
    const message = messageArea();
    const connect = h('button', { type: 'button', id: 'chat-connect' }, 'Connect');
    const disconnect = h(
      'button',
      { type: 'button', class: 'secondary', id: 'chat-disconnect', disabled: true },
      'Disconnect',
    );
    const text = field('Message', { name: 'chat-text', autocomplete: 'off', required: true, maxLength: 4000 });
    const send = h('button', { type: 'submit' }, 'Send');
    const form = h('form', { id: 'chat-form', class: 'inline', hidden: true }, text.row, send);
    const log = h('ol', { id: 'chat-log', class: 'chat-log', 'aria-live': 'polite', 'aria-label': 'Messages' });
    const signedOut = h('p', { class: 'muted' }, 'Sign in to chat.');
    const toolbar = h('div', { class: 'actions' }, connect, disconnect);
    root.append(signedOut, message.el, toolbar, form, log);

    let socket = null;
    let counter = 0;

    function line(direction, payload) {
      const label = direction === 'out' ? 'sent' : direction === 'in' ? 'received' : 'event';
      log.append(
        h(
          'li',
          { class: `chat-${direction}` },
          h('span', { class: 'visually-hidden' }, `${label}: `),
          h(
            'span',
            { class: 'dir', 'aria-hidden': 'true' },
            direction === 'out' ? '→' : direction === 'in' ? '←' : '•',
          ),
          ' ',
          payload,
        ),
      );
      log.scrollTop = log.scrollHeight;
    }

    function setConnected(open) {
      connect.disabled = open;
      disconnect.disabled = !open;
      form.hidden = !open;
    }

    connect.addEventListener('click', () => {
      const token = getToken();
      if (!token) return message.show('error', 'Sign in first.');
      const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${ROUTES.chat}`;
      message.show('info', 'Connecting…');
      connect.disabled = true;
      let opened = false;
      let refusal = null;
      const replies = new Map();
      const ws = new WebSocket(url);
      socket = ws;
      ws.addEventListener('open', () => {
        opened = true;
        ws.send(JSON.stringify({ type: 'auth', token }));
        line('event', 'connected; authenticating…');
      });
      ws.addEventListener('message', (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return line('in', String(event.data));
        }
        if (data.type === 'auth_ok') {
          if (typeof data.token === 'string') setToken(data.token); // a renewed token for the same session
          setConnected(true);
          message.show('ok', 'Connected and authenticated.');
          line('event', `authenticated${data.license ? ` (${data.license} license)` : ''}`);
          text.input.focus();
        } else if (data.type === 'auth_error' || data.type === 'error') {
          const what = data.type === 'auth_error' ? 'Authentication failed' : 'The gateway answered with an error';
          refusal = `${data.message ?? what} (${data.code ?? data.type}${data.retryAfter ? `; retry in ${data.retryAfter} s` : ''}).`;
          message.show('error', refusal);
          line('event', refusal);
        } else if (data.type === 'reply' || data.type === 'message') {
          // A reply may come in chunks with the id of the message it answers: one line per reply.
          const open = data.id !== undefined ? replies.get(data.id) : undefined;
          if (open) open.append(String(data.text ?? ''));
          else {
            const body = h('span', { class: 'text' }, String(data.text ?? ''));
            line('in', body);
            if (data.id !== undefined) replies.set(data.id, body);
          }
        } else if (data.type === 'reply_end') {
          replies.delete(data.id);
        } else if (data.type !== 'pong') {
          line('in', JSON.stringify(data));
        }
      });
      ws.addEventListener('close', async (event) => {
        if (socket === ws) socket = null;
        setConnected(false);
        if (!opened) return explainFailure();
        line('event', `closed (${event.code}${event.reason ? `: ${event.reason}` : ''})`);
        const why = `The connection closed: ${event.reason || `code ${event.code}`}.`;
        if (event.code !== 1000) message.show('error', refusal ? `${refusal} ${why}` : why);
        else message.show('info', 'Disconnected.');
      });
    });

    /** A WebSocket that never opened says nothing about why: ask the route over HTTP. */
    async function explainFailure() {
      let result = { status: 0 };
      try {
        const response = await fetch(ROUTES.chat, { headers: { accept: 'application/json' } });
        const body = (response.headers.get('content-type') ?? '').includes('json') ? await response.json() : null;
        result = { status: response.status, error: body?.error ?? null };
      } catch {
        // unreachable gateway: the generic message below
      }
      if (isAbsent(result)) message.show('info', describe(result, FEATURE));
      else message.show('error', 'Could not open the WebSocket connection.');
    }

    disconnect.addEventListener('click', () => socket?.close(1000, 'closed by the user'));

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      await busy(form, async () => {
        const value = text.input.value;
        if (!socket || socket.readyState !== WebSocket.OPEN || !value) return;
        const id = `m${++counter}`;
        socket.send(JSON.stringify({ type: 'message', id, text: value }));
        line('out', value);
        text.input.value = '';
      });
      text.input.focus();
    });

    return {
      onSession(isIn) {
        signedOut.hidden = isIn;
        toolbar.hidden = !isIn;
        if (!isIn) {
          socket?.close(1000, 'signed out');
          log.replaceChildren();
          message.clear();
        }
      },
    };
  },
};
