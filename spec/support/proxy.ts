/**
 * A TCP relay in front of the broker that can go silent, as a network does
 * when it starts dropping packets: nothing is closed or refused, bytes simply
 * stop arriving either way. New connections made while silent hang.
 */
import net from 'node:net';

export interface SilentNetwork {
  /** An amqp:// URL like `brokerUrl`, through the relay. */
  url: string;
  /** From now on nothing passes, on open connections or new ones. */
  silence(): void;
  /**
   * The network is back: connections made from now on work (those that went silent stay dead, as their TCP state
   * would).
   */
  restore(): void;
  /** Every connection through the relay is reset now (new ones are taken as usual). */
  reset(): void;
  close(): Promise<void>;
}

export async function silentNetwork(brokerUrl: string): Promise<SilentNetwork> {
  const target = new URL(brokerUrl);
  const sockets = new Set<net.Socket>();
  let silent = false;
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    if (silent) {
      client.pause();
      return;
    }
    const upstream = net.connect(Number(target.port || 5672), target.hostname);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    // Relayed by hand (not pipe) so that silence can drop bytes instead of queueing them.
    client.on('data', (b) => {
      if (!silent) upstream.write(b);
    });
    upstream.on('data', (b) => {
      if (!silent) client.write(b);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = new URL(brokerUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as net.AddressInfo).port);
  let frozen: net.Socket[] = [];
  return {
    url: url.toString(),
    silence() {
      silent = true;
      frozen = [...sockets];
    },
    restore() {
      silent = false;
      // Whatever went silent is gone for good; held new connections too.
      for (const s of [...frozen, ...sockets]) if (s.isPaused() || frozen.includes(s)) s.destroy();
      frozen = [];
    },
    reset() {
      for (const s of [...sockets]) s.destroy();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
