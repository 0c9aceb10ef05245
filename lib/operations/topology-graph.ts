import type { ProcessorDescription } from '../receive/description.js';

/** One box of the topology picture. */
export interface GraphNode {
  id: string;
  kind: 'exchange' | 'queue' | 'component' | 'handler' | 'errors';
  label: string;
  /** Whether the component answered the last ask (components only). */
  up?: boolean;
}

/** One arrow: a binding (labelled with its key), a consumer, a handler, or where failures go. */
export interface GraphEdge {
  from: string;
  to: string;
  label?: string;
  kind: 'binding' | 'consumes' | 'handles' | 'fails';
}

export interface TopologyGraph {
  nodes: GraphNode[];
  edges: GraphEdge[];
}

const COLUMNS: Array<GraphNode['kind']> = ['exchange', 'queue', 'component', 'handler'];

/** exchanges → queues → components → handlers, from what components say of themselves (`describe`). */
export function topologyGraph(descriptions: ReadonlyArray<ProcessorDescription & { up?: boolean }>): TopologyGraph {
  const nodes = new Map<string, GraphNode>();
  const edges = new Map<string, GraphEdge>();
  const node = (n: GraphNode) => nodes.get(n.id) ?? (nodes.set(n.id, n), n);
  const edge = (e: GraphEdge) => edges.set(`${e.from}>${e.to}>${e.label ?? ''}`, e);
  for (const d of descriptions) {
    const f = d.fingerprint;
    const component = node({
      id: `c:${f.name}@${f.host}:${f.pid}`,
      kind: 'component',
      label: `${f.name} (${f.pid}@${f.host})`,
      up: d.up ?? true,
    });
    for (const b of d.bindings) {
      const ex = node({ id: `e:${b.exchange}`, kind: 'exchange', label: b.exchange || '(default)' });
      const q = node({ id: `q:${b.queue}`, kind: 'queue', label: b.queue });
      edge({ from: ex.id, to: q.id, label: b.key, kind: 'binding' });
      edge({ from: q.id, to: component.id, kind: 'consumes' });
    }
    for (const h of d.handlers) {
      // The built-ins every processor has (quit, restart, describe, ping…) would drown the picture.
      if (h.type === 'command' && ['quit', 'restart', 'describe', 'ping', 'join_group', 'leave_group'].includes(h.name))
        continue;
      const hn = node({
        id: `h:${component.id}:${h.kind}:${h.type}/${h.name}`,
        kind: 'handler',
        label: `${h.kind === 'message' ? '' : `${h.kind} `}${h.type}/${h.name}`,
      });
      edge({ from: component.id, to: hn.id, kind: 'handles' });
    }
    if (d.errorQueue) {
      const eq = node({ id: `x:${d.errorQueue}`, kind: 'errors', label: `errors: ${d.errorQueue}` });
      edge({ from: component.id, to: eq.id, kind: 'fails' });
    }
  }
  return { nodes: [...nodes.values()], edges: [...edges.values()] };
}

function quoted(s: string): string {
  return s.replace(/"/g, '#quot;');
}

/** Mermaid `flowchart LR`, for Markdown that renders it (GitHub does). */
export function toMermaid(g: TopologyGraph): string {
  const ids = new Map(g.nodes.map((n, i) => [n.id, `n${i}`]));
  const shape = (n: GraphNode) => {
    const l = quoted(n.label);
    if (n.kind === 'exchange') return `{{"${l}"}}`;
    if (n.kind === 'queue' || n.kind === 'errors') return `[("${l}")]`;
    if (n.kind === 'component') return `(["${l}"])`;
    return `["${l}"]`;
  };
  const lines = ['flowchart LR', ...g.nodes.map((n) => `  ${ids.get(n.id)}${shape(n)}`)];
  for (const e of g.edges)
    lines.push(
      `  ${ids.get(e.from)} ${e.kind === 'fails' ? '-.->' : '-->'}${e.label ? `|"${quoted(e.label)}"|` : ''} ` +
        `${ids.get(e.to)}`,
    );
  return lines.join('\n');
}

/** Graphviz dot, for `dot -Tsvg`. */
export function toDot(g: TopologyGraph): string {
  const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
  const shape: Record<GraphNode['kind'], string> = {
    exchange: 'hexagon',
    queue: 'cylinder',
    errors: 'cylinder',
    component: 'box3d',
    handler: 'note',
  };
  const lines = ['digraph postage {', '  rankdir=LR;', '  node [fontname="Helvetica"];'];
  for (const n of g.nodes)
    lines.push(
      `  "${esc(n.id)}" [label="${esc(n.label)}", ` +
        `shape=${shape[n.kind]}${n.kind === 'errors' ? ', color=red' : ''}${n.up === false ? ', style=dashed' : ''}];`,
    );
  for (const e of g.edges)
    lines.push(
      `  "${esc(e.from)}" -> "${esc(e.to)}"${e.label ? ` [label="${esc(e.label)}"]` : ''}` +
        `${e.kind === 'fails' ? ' [style=dashed, color=red]' : ''};`,
    );
  lines.push('}');
  return lines.join('\n');
}

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * A picture drawn here, with no layout engine to install: one column per kind
 * (exchanges, queues, components, handlers; error queues beside the
 * handlers), boxes stacked in each, arrows as curves with their binding keys.
 */
export function toSvg(g: TopologyGraph): string {
  const boxW = 210;
  const boxH = 34;
  // Room between the columns for a binding key's label.
  const gapX = 160;
  const LINE = 13;
  const gapY = 14;
  const pad = 20;
  const column = (n: GraphNode) => (n.kind === 'errors' ? 3 : COLUMNS.indexOf(n.kind));
  const rows = [0, 0, 0, 0];
  const at = new Map<string, { x: number; y: number }>();
  for (const n of g.nodes) {
    const c = column(n);
    at.set(n.id, { x: pad + c * (boxW + gapX), y: pad + 24 + rows[c]++ * (boxH + gapY) });
  }
  const height = pad * 2 + 24 + Math.max(1, ...rows) * (boxH + gapY);
  const width = pad * 2 + 4 * boxW + 3 * gapX;
  const fill: Record<GraphNode['kind'], string> = {
    exchange: '#fde68a',
    queue: '#bfdbfe',
    errors: '#fecaca',
    component: '#bbf7d0',
    handler: '#f3f4f6',
  };
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      'font-family="Helvetica, Arial, sans-serif" font-size="12">',
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" ' +
      'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ...['exchanges', 'queues', 'components', 'handlers'].map(
      (t, i) => `<text x="${pad + i * (boxW + gapX)}" y="${pad + 8}" font-weight="bold" fill="#374151">${t}</text>`,
    ),
  ];
  // One arrow per pair of boxes: the keys of every binding between them stacked in one label (a GenericApplication is
  // bound with several), which used to be drawn one over the other at the same point.
  const pairs = new Map<string, { e: GraphEdge; labels: string[] }>();
  for (const e of g.edges) {
    const k = `${e.from}>${e.to}>${e.kind}`;
    const p = pairs.get(k) ?? pairs.set(k, { e, labels: [] }).get(k)!;
    if (e.label !== undefined) p.labels.push(e.label);
  }
  const labels: string[] = [];
  const blocks: Array<{ x: number; y: number; shown: string[]; all: string[] }> = [];
  for (const { e, labels: keys } of pairs.values()) {
    const a = at.get(e.from);
    const b = at.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + boxW;
    const y1 = a.y + boxH / 2;
    const x2 = b.x;
    const y2 = b.y + boxH / 2;
    const mid = (x1 + x2) / 2;
    const colour = e.kind === 'fails' ? '#dc2626' : '#555';
    const dash = e.kind === 'fails' ? ' stroke-dasharray="4 3"' : '';
    parts.push(
      `<path class="edge ${e.kind}" d="M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}" fill="none" ` +
        `stroke="${colour}"${dash} marker-end="url(#arrow)"/>`,
    );
    if (keys.length === 0) continue;
    // Beside the queue the arrow ends at (each queue has a row of its own); at most two keys, the rest counted; every
    // key is in the label's tooltip.
    const shown = keys.length > 2 ? [keys[0], `+${keys.length - 1} more`] : keys;
    blocks.push({ x: x2 - 10, y: y2 - 3 - ((shown.length - 1) * LINE) / 2, shown, all: keys });
  }
  // Labels that would overlap (arrows from two exchanges meeting at one queue) are moved down, below each other.
  blocks.sort((p, q) => p.x - q.x || p.y - q.y);
  let bottom = Number.NEGATIVE_INFINITY;
  let band = Number.NaN;
  for (const b of blocks) {
    if (b.x !== band) bottom = Number.NEGATIVE_INFINITY;
    band = b.x;
    b.y = Math.max(b.y, bottom + LINE);
    bottom = b.y + (b.shown.length - 1) * LINE;
    const lines = b.shown
      .map((l, i) => `<tspan x="${b.x}" y="${b.y + i * LINE}">${xml(l.length > 24 ? `${l.slice(0, 23)}…` : l)}</tspan>`)
      .join('');
    labels.push(
      '<text class="key" text-anchor="end" fill="#4b5563" stroke="#fff" stroke-width="3" paint-order="stroke">' +
        `<title>${xml(b.all.join('\n'))}</title>${lines}</text>`,
    );
  }
  for (const n of g.nodes) {
    const p = at.get(n.id)!;
    const label = n.label.length > 32 ? `${n.label.slice(0, 31)}…` : n.label;
    const down = n.up === false;
    parts.push(
      `<g class="node ${n.kind}${down ? ' down' : ''}" data-id="${xml(n.id)}"><title>${xml(n.label)}</title>` +
        `<rect x="${p.x}" y="${p.y}" width="${boxW}" height="${boxH}" rx="${n.kind === 'component' ? 12 : 4}" ` +
        `fill="${down ? '#e5e7eb' : fill[n.kind]}" stroke="${down ? '#9ca3af' : '#374151'}"` +
        `${down ? ' stroke-dasharray="4 3"' : ''}/>` +
        `<text x="${p.x + 8}" y="${p.y + boxH / 2 + 4}">${xml(label)}${down ? ' (down)' : ''}</text></g>`,
    );
  }
  // Labels last, over every arrow and box edge; the picture grows to hold any pushed below the last box.
  const tall = Math.max(height, ...blocks.map((b) => b.y + (b.shown.length - 1) * LINE + pad));
  parts[0] = parts[0].replace(
    `height="${height}" viewBox="0 0 ${width} ${height}"`,
    `height="${tall}" viewBox="0 0 ${width} ${tall}"`,
  );
  parts.push(...labels, '</svg>');
  return parts.join('\n');
}
