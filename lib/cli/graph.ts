import { ComponentDirectory, whyNoneAnswered } from '../operations/directory.js';
import { toDot, toMermaid, toSvg, topologyGraph } from '../operations/topology-graph.js';
import { UsageError } from './usage.js';
import { type Command, seconds } from './command.js';

export const GRAPH_HELP = `usage: postage graph [--format mermaid|dot|svg] [--timeout SECONDS]

Asks every running component (through 'presence') to describe itself and
prints the topology they make: exchanges -> (binding key) -> queues ->
components -> handlers, and where each component's failures go. mermaid
(the default) renders in Markdown on GitHub; dot is for Graphviz; svg is a
picture drawn here, with nothing to install. Exits 1 when nobody answers
within --timeout seconds (default 2).`;

export async function graph(
  values: Record<string, string | boolean | undefined>,
  seconds: (v: string | undefined, fallback: number, flag: string) => number,
): Promise<number> {
  const format = (values.format as string | undefined) ?? 'mermaid';
  const draw = { mermaid: toMermaid, dot: toDot, svg: toSvg }[format];
  if (!draw) throw new UsageError(`--format must be mermaid, dot or svg, not '${format}'`);
  const timeout = seconds(values.timeout as string | undefined, 2, 'timeout');
  const directory = await ComponentDirectory.open({ waitForBrokerMs: 0 });
  try {
    const found = await directory.describeAll(timeout);
    if (found.length === 0) {
      console.error(`no component answered describe on presence within ${timeout} s: ${whyNoneAnswered()}`);
      return 1;
    }
    console.log(draw(topologyGraph(found)));
    return 0;
  } finally {
    await directory.close();
  }
}

export const graphCommand: Command = {
  name: 'graph',
  synopsis: 'graph [--format mermaid|dot|svg]',
  summary: 'the topology the running components make',
  help: GRAPH_HELP,
  options: { format: { type: 'string' }, timeout: { type: 'string' } },
  run: ({ values }) => graph(values, seconds),
};
