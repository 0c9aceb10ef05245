/** The page's live feed: server-sent events, one `state` event per refresh to every open page. */
import type { IncomingMessage, ServerResponse } from 'node:http';

export class StateEvents {
  readonly #clients = new Set<ServerResponse>();

  /** Opens the feed on `res`, sends `first` at once, and keeps it until the page goes. */
  open(req: IncomingMessage, res: ServerResponse, first: unknown): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write(StateEvents.#event(first));
    this.#clients.add(res);
    req.on('close', () => this.#clients.delete(res));
  }

  broadcast(state: unknown): void {
    const event = StateEvents.#event(state);
    for (const c of this.#clients) c.write(event);
  }

  /** Ends every feed (the server can then close). */
  close(): void {
    for (const c of this.#clients) c.end();
    this.#clients.clear();
  }

  static #event(state: unknown): string {
    return `event: state\ndata: ${JSON.stringify(state)}\n\n`;
  }
}
