import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { VERSION } from '../../lib/index.js';

describe('VERSION', () => {
  it('is the version package.json says (describe reports it)', () => {
    expect(VERSION).to.equal((JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version);
  });
});
