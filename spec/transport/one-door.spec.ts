/**
 * lib/transport/ is the one door to amqplib's channels: everything else opens
 * them through `openChannel`, so a connection out of channels is reported the
 * same way (`CHANNELS_EXHAUSTED`) wherever it happens, the tools included.
 */
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

describe('the transport door', () => {
  it('is the only place in lib/ that opens a channel with amqplib (createChannel, createConfirmChannel)', () => {
    const files = sources('lib');
    expect(files.length, 'lib/ holds the sources').to.be.greaterThan(50);
    const raw = files
      .filter((f) => !f.startsWith(join('lib', 'transport')))
      .flatMap((f) =>
        readFileSync(f, 'utf8')
          .split('\n')
          .map((line, i) => ({ line, at: `${f}:${i + 1}` }))
          .filter(({ line }) => /\bcreate(Confirm)?Channel\s*\(/.test(line))
          .map(({ at }) => at),
      );
    expect(raw, 'open channels with openChannel (lib/transport/channels.ts)').to.deep.equal([]);
  });
});
