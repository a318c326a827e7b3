import { createConnection, createServer, type Socket } from 'node:net';

/**
 * A TCP relay to `target` (host:port of a URL) that can go silent or lose its client's machine.
 * - `silent`: bytes are dropped both ways while every socket stays open, and a close still passes on. A dead network
 *   path, or a failover behind a virtual IP, looks like this: no FIN, no RST.
 * - `dead`: as silent, and nothing the client does (closing included) reaches the server, whose sockets stay open, nor
 *   does a new connection: the client's machine lost power, or its network path went away for good.
 */
export interface TcpRelay {
  /** `url` with its host and port replaced by the relay's. */
  via(url: string): string;
  silent: boolean;
  dead: boolean;
  /** Closes every socket, the server side's included: frees whatever backend is still orphaned. */
  close(): Promise<void>;
}

export async function startTcpRelay(target: string): Promise<TcpRelay> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  const state = { silent: false, dead: false };
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
        if (!state.silent && !state.dead) to.write(chunk);
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
    get silent() {
      return state.silent;
    },
    set silent(value: boolean) {
      state.silent = value;
    },
    get dead() {
      return state.dead;
    },
    set dead(value: boolean) {
      state.dead = value;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
