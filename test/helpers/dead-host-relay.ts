import { createConnection, createServer, type Socket } from 'node:net';

/**
 * A TCP relay to `target` (host:port of a URL) whose client side can "lose its machine": once `dead`, nothing goes
 * through either way and nothing the client does (closing included) reaches the server, whose sockets stay open, as
 * when the client's machine loses power or its network path goes away for good. (tcp-relay.ts passes a close on.)
 */
export interface DeadHostRelay {
  /** `url` with its host and port replaced by the relay's. */
  via(url: string): string;
  dead: boolean;
  close(): Promise<void>;
}

export async function startDeadHostRelay(target: string): Promise<DeadHostRelay> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  const state = { dead: false };
  const server = createServer((inbound) => {
    sockets.add(inbound);
    inbound.on('error', () => {});
    if (state.dead) return; // a new connection from a dead machine: nothing reaches the server
    const outbound = createConnection(Number(port || 5432), hostname);
    sockets.add(outbound);
    outbound.on('error', () => {});
    for (const [from, to] of [
      [inbound, outbound],
      [outbound, inbound],
    ] as const) {
      from.on('data', (chunk) => {
        if (!state.dead) to.write(chunk);
      });
      from.on('close', () => {
        sockets.delete(from);
        if (!state.dead) to.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const relayPort = (server.address() as { port: number }).port;
  return {
    via(url) {
      const relayed = new URL(url);
      relayed.hostname = '127.0.0.1';
      relayed.port = String(relayPort);
      return relayed.toString();
    },
    get dead() {
      return state.dead;
    },
    set dead(value: boolean) {
      state.dead = value;
    },
    /** Closes every socket, the server's included: frees whatever backend is still orphaned. */
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
