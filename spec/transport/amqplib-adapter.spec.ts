/**
 * Every amqplib private postage-ts uses is in one module, and this amqplib
 * still has each of them. On an amqplib release where one moved, the first
 * spec names it: postage-ts still works (each is feature-detected), but loses
 * what that detail gave, until the adapter is mended.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { internalsOf } from '../../lib/transport/amqplib-adapter.js';
import { brokerUrl } from '../support/broker.js';
import type { SendOptions } from '../../lib/index.js';

/** Every send option's name (the compiler keeps this complete). */
function sendOptionNames(): Record<keyof SendOptions, true> {
  return {
    _key: true,
    _eks: true,
    _timeout: true,
    _max_retry: true,
    _queue_only: true,
    _mandatory: true,
    _headers: true,
    _expiration: true,
    _priority: true,
    _correlation_id: true,
    _message_id: true,
    _type: true,
    _delay: true,
    _outbox: true,
    _window: true,
    _partition_key: true,
    _cloudevent: true,
  };
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('the amqplib adapter', () => {
  it(`finds every amqplib internal it relies on in this amqplib (${JSON.parse(readFileSync('node_modules/amqplib/package.json', 'utf8')).version as string})`, async () => {
    const conn = await amqp.connect(await brokerUrl());
    try {
      const ch = await conn.createChannel();
      const found = internalsOf(conn);
      const moved = Object.entries(found)
        .filter(([, ok]) => !ok)
        .map(([name]) => name);
      expect(
        moved,
        `this amqplib moved ${moved.join(', ')}: mend lib/transport/amqplib-adapter.ts (or pin the amqplib range ` +
          'package.json names)',
      ).to.deep.equal([]);
      await ch.close();
    } finally {
      await conn.close();
    }
  });

  it('is the only file in lib/ that touches an amqplib private or prototype', () => {
    // `_`-prefixed members (but postage-ts's own: the send options and the envelope's `_reserved`), amqplib's
    // module cache, its prototypes, and the internals the adapter names.
    const OWN = new Set(['_reserved', ...Object.keys(sendOptionNames())]);
    const UNDERSCORED = /\.(_[A-Za-z]\w*)\b/g;
    const PRIVATE = new RegExp(
      [
        String.raw`require\.cache`,
        String.raw`\bConnection\??\.prototype\b`,
        String.raw`\b(muxer|newStreams|channelMax|expectSocketClose|_writableState)\b`,
        String.raw`\.connection\.(stream|channels)\b`,
      ].join('|'),
    );
    const offenders: string[] = [];
    for (const f of files('lib')) {
      if (f.endsWith(join('transport', 'amqplib-adapter.ts'))) continue;
      readFileSync(f, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          const code = line.replace(/\/\/.*$|^\s*\*.*$/, '');
          const foreign = [...code.matchAll(UNDERSCORED)].map((m) => m[1]).filter((n) => !OWN.has(n));
          if (PRIVATE.test(code) || foreign.length > 0) offenders.push(`${f}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(offenders, offenders.join('\n')).to.deep.equal([]);
  });
});
