import { createConnection, createServer, type Socket } from 'node:net';

/**
 * A TCP relay to `target` (host:port of a URL) that can go silent: bytes are then dropped both ways while every
 * socket stays open. A dead network path, or a failover behind a virtual IP, looks like this: no FIN, no RST.
 */
export interface TcpRelay {
  /** `url` with its host and port replaced by the relay's. */
  via(url: string): string;
  silent: boolean;
  close(): Promise<void>;
}

export async function startTcpRelay(target: string): Promise<TcpRelay> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  const state = { silent: false };
  const server = createServer((inbound) => {
    const outbound = createConnection(Number(port || 5432), hostname);
    for (const [from, to] of [
      [inbound, outbound],
      [outbound, inbound],
    ] as const) {
      sockets.add(from);
      from.on('data', (chunk) => {
        if (!state.silent) to.write(chunk);
      });
      from.on('error', () => {});
      from.on('close', () => {
        sockets.delete(from);
        to.destroy();
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
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
