import type { AuthContext } from '../../authenticator/index.js';

export interface ChatMessage {
  /** The client's id for this message; every reply chunk carries it back. */
  id: string;
  text: string;
}

/**
 * The seam where the AI backend plugs in. Every channel (WebSocket, Telegram) hands each message, with who sent it
 * and under which license, to the one ChatService; the reply is a stream of text chunks.
 */
export interface ChatService {
  readonly name: string;
  reply(auth: AuthContext, message: ChatMessage, signal: AbortSignal): AsyncIterable<string>;
}

/** Answers every message with its own text. The default when no upstream is configured. */
export class EchoChatService implements ChatService {
  readonly name = 'echo';
  async *reply(_auth: AuthContext, message: ChatMessage): AsyncIterable<string> {
    yield message.text;
  }
}

/** Printable ASCII but '%': an address of these is sent as it is, any other percent-encoded (identityHeaders). */
const PLAIN = /^[\x20-\x24\x26-\x7e]*$/;

/** Raised by the HTTP chat service when the upstream fails; the channels turn it into CHAT_UNAVAILABLE. */
export class ChatUpstreamError extends Error {
  override name = 'ChatUpstreamError';
}

/**
 * Headers that tell the upstream who is asking. The upstream must trust only the gateway (network policy).
 * Header values are bytes, and fetch refuses any character above U+00FF: an address with one (an internationalised
 * address from a provider), or with a '%', is sent percent-encoded as UTF-8, any other as it is, so that
 * decodeURIComponent always gives the address back; and the features JSON escapes non-ASCII characters as \uXXXX
 * (any JSON parser reads it unchanged).
 */
export function identityHeaders(auth: AuthContext): Record<string, string> {
  return {
    'x-gateway-user-id': auth.userId,
    'x-gateway-user-email': PLAIN.test(auth.email) ? auth.email : encodeURIComponent(auth.email),
    'x-gateway-channel': auth.channel,
    'x-gateway-license': auth.license.type,
    'x-gateway-license-features': JSON.stringify(auth.license.features).replace(
      /[\u0080-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    ),
    ...(auth.sessionId ? { 'x-gateway-session-id': auth.sessionId } : {}),
  };
}

/**
 * Forwards each message to `url` as `POST {id, text}` JSON with the identity headers above, and streams the response
 * body back as it arrives (any text content type: plain text, or the raw bytes of whatever the upstream streams).
 */
export function createHttpChatService(options: { url: string; timeoutSeconds: number }): ChatService {
  return {
    name: 'http',
    async *reply(auth, message, signal) {
      const timeout = AbortSignal.timeout(options.timeoutSeconds * 1000);
      let response: Response;
      try {
        response = await fetch(options.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'text/plain, */*', ...identityHeaders(auth) },
          body: JSON.stringify({ id: message.id, text: message.text }),
          signal: AbortSignal.any([signal, timeout]),
          // A redirect is an upstream failure, not followed: it would re-send the message and the identity headers
          // wherever the upstream points (an internal address) and stream that answer to the user.
          redirect: 'manual',
        });
      } catch (err) {
        throw new ChatUpstreamError('chat upstream unreachable', { cause: err });
      }
      if (!response.ok || !response.body) {
        await response.body?.cancel().catch(() => {});
        throw new ChatUpstreamError(`chat upstream answered ${response.status}`);
      }
      const decoder = new TextDecoder();
      try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          const text = decoder.decode(chunk, { stream: true });
          if (text) yield text;
        }
      } catch (err) {
        if (signal.aborted) return;
        throw new ChatUpstreamError('chat upstream stream broke', { cause: err });
      }
      const rest = decoder.decode();
      if (rest) yield rest;
    },
  };
}
