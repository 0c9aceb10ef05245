/** One message seen on the wire, as the dashboard's watch keeps it. */
export interface SeenMessage {
  at: string;
  exchange: string;
  routingKey: string;
  messageId?: string;
  conversationId?: string;
  causationId?: string;
  /** An RPC's: its reply carries it back. */
  correlationId?: string;
  /** An RPC's: the queue its reply goes to (through the default exchange, which no binding can copy). */
  replyTo?: string;
  /** `command/resize`, from the envelope. */
  what: string;
  /** The sender's fingerprint name, from the envelope. */
  from: string;
  /** The components bound where it went (by their bindings). */
  to: string[];
}

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * A conversation as a sequence diagram: a lifeline per participant, an arrow per message and receiver, in order, and a
 * dashed one back for an RPC's reply.
 */
export function sequenceSvg(messages: readonly SeenMessage[]): string {
  const participants: string[] = [];
  const add = (p: string) => participants.includes(p) || participants.push(p);
  for (const m of messages) {
    add(m.from);
    for (const t of m.to.length > 0 ? m.to : ['(nobody)']) add(t);
  }
  const colW = 190;
  const rowH = 38;
  const top = 50;
  // An RPC's reply goes through the default exchange straight to the caller's queue, which no binding can copy: it is
  // drawn, dashed, from each component that took the call back to the caller, right after the call.
  const arrows = messages.flatMap((m) => {
    const calls = (m.to.length > 0 ? m.to : ['(nobody)']).map((to) => ({ m, from: m.from, to, reply: false }));
    const replies = m.replyTo ? m.to.map((to) => ({ m, from: to, to: m.from, reply: true })) : [];
    return [...calls, ...replies];
  });
  const width = Math.max(1, participants.length) * colW + 40;
  const height = top + arrows.length * rowH + 40;
  const x = (p: string) => 20 + participants.indexOf(p) * colW + colW / 2;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      'font-family="Helvetica, Arial, sans-serif" font-size="12">',
    '<defs><marker id="seq-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" ' +
      'orient="auto"><path d="M 0 0 L 10 5 L 0 10 z" fill="#1f2937"/></marker></defs>',
  ];
  for (const p of participants) {
    parts.push(
      `<rect x="${x(p) - 80}" y="8" width="160" height="26" rx="4" fill="#bbf7d0" stroke="#374151"/><text ` +
        `x="${x(p)}" y="25" text-anchor="middle">${xml(p)}</text>`,
    );
    parts.push(`<line x1="${x(p)}" y1="34" x2="${x(p)}" y2="${height - 10}" stroke="#9ca3af" stroke-dasharray="4 3"/>`);
  }
  arrows.forEach(({ m, from, to, reply }, i) => {
    const y = top + i * rowH + rowH / 2;
    const x1 = x(from);
    const x2 = x(to);
    const self = x1 === x2;
    const kind = reply ? 'message reply' : 'message';
    const dash = reply ? ' stroke-dasharray="5 3"' : '';
    parts.push(
      self
        ? `<path class="${kind}" d="M ${x1} ${y - 8} h 40 v 16 h -40" fill="none" stroke="#1f2937"${dash} ` +
            'marker-end="url(#seq-arrow)"/>'
        : `<line class="${kind}" x1="${x1}" y1="${y}" x2="${x2}" y2="${y}" stroke="#1f2937"${dash} ` +
            'marker-end="url(#seq-arrow)"/>',
    );
    const where = reply
      ? `<tspan fill="#6b7280">(to its reply-to queue)</tspan>`
      : `<tspan fill="#6b7280">(${xml(m.exchange)}/${xml(m.routingKey)})</tspan>`;
    const what = reply ? `reply to ${xml(m.what)}` : xml(m.what);
    const title = reply
      ? '<title>replies go through the default exchange straight to the caller, where no binding copies them: ' +
        'drawn for the call</title>'
      : '';
    parts.push(
      `<text x="${(x1 + x2) / 2 + (self ? 45 : 0)}" y="${y - 6}" text-anchor="middle">${title}${what} ${where}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}
