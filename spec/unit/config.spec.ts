import { expect } from 'chai';
import { Writable } from 'node:stream';
import { ConfigError, loadConfig } from '../../lib/index.js';
import { brokerUrls, redactUrl } from '../../lib/config.js';
import { componentLogger, makeLogger, rootLogger, setRootLogger } from '../../lib/log.js';

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('loadConfig accepted a bad value');
}

describe('loadConfig', () => {
  it("gives Postage's defaults for an empty environment", () => {
    const c = loadConfig({});
    expect(c).to.deep.include({
      vhost: '/',
      user: 'guest',
      password: 'guest',
      hosts: ['localhost'],
      port: 5672,
      url: undefined,
      debugMode: false,
      logLevel: 'info',
    });
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ POSTAGE_LOG_LEVEL: '', POSTAGE_PORT: '' })).to.deep.include({ logLevel: 'info', port: 5672 });
  });

  it('reads every POSTAGE_* variable', () => {
    const c = loadConfig({
      POSTAGE_VHOST: 'development',
      POSTAGE_USER: 'u',
      POSTAGE_PASSWORD: 'p',
      POSTAGE_HOST: 'a, b,c',
      POSTAGE_PORT: '5673',
      POSTAGE_DEBUG_MODE: 'true',
      POSTAGE_LOG_LEVEL: 'debug',
    });
    expect(c).to.deep.include({
      vhost: 'development',
      user: 'u',
      password: 'p',
      hosts: ['a', 'b', 'c'],
      port: 5673,
      debugMode: true,
      logLevel: 'debug',
    });
  });

  it("accepts Postage's POSTAGE_RMQ_USER and POSTAGE_RMQ_PASSWORD aliases", () => {
    expect(loadConfig({ POSTAGE_RMQ_USER: 'old', POSTAGE_RMQ_PASSWORD: 'pw' })).to.deep.include({
      user: 'old',
      password: 'pw',
    });
  });

  it('lets POSTAGE_URL override host, port, user, password and vhost', () => {
    const c = loadConfig({ POSTAGE_URL: 'amqp://x:y@broker:1234/v', POSTAGE_HOST: 'ignored' });
    expect(brokerUrls(c)).to.deep.equal(['amqp://x:y@broker:1234/v']);
  });

  it('builds one URL per host, escaping the vhost', () => {
    expect(brokerUrls(loadConfig({ POSTAGE_HOST: 'a,b', POSTAGE_VHOST: '/' }))).to.deep.equal([
      'amqp://guest:guest@a:5672/%2F',
      'amqp://guest:guest@b:5672/%2F',
    ]);
  });

  for (const [name, value] of [
    ['POSTAGE_PORT', 'http'],
    ['POSTAGE_PORT', '70000'],
    ['POSTAGE_DEBUG_MODE', 'maybe'],
    ['POSTAGE_LOG_LEVEL', 'loud'],
    ['POSTAGE_URL', 'http://broker'],
    ['POSTAGE_HOST', ' , '],
  ] as const) {
    it(`stops with an error naming ${name} for the bad value '${value}'`, () => {
      const err = configError({ [name]: value });
      expect(err.variable).to.equal(name);
      expect(err.message).to.contain(name);
    });
  }

  it('never puts a password in an error message', () => {
    const err = configError({ POSTAGE_URL: 'http://user:s3cret-pw@host' });
    expect(err.message).to.not.contain('s3cret-pw');
  });
});

describe('redactUrl', () => {
  it('hides the password of an amqp URL', () => {
    expect(redactUrl('amqp://guest:s3cret@host:5672/%2F')).to.equal('amqp://guest:***@host:5672/%2F');
  });
});

describe('logging', () => {
  it('gives each component a child logger carrying its fingerprint name, and redacts passwords', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const before = rootLogger();
    setRootLogger(makeLogger('info', sink));
    try {
      componentLogger('producer', 'echo_send').info(
        { hup: { host: 'h', user: 'u', password: 's3cret' } },
        'connecting',
      );
    } finally {
      setRootLogger(before);
    }
    const line = JSON.parse(lines[0]) as Record<string, unknown>;
    expect(line).to.include({ component: 'producer', componentName: 'echo_send', msg: 'connecting' });
    expect(lines[0]).to.not.contain('s3cret');
  });
});

describe('.env.example', () => {
  it('is read as it says (node --env-file), and every value in it is the default', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTAGE_')));
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        '--env-file=.env.example',
        '--import',
        'tsx',
        '-e',
        "import('./lib/config.ts').then((m) => console.log(JSON.stringify([m.loadConfig(), " +
          "Object.keys(process.env).filter((k) => k.startsWith('POSTAGE_')).sort()])))",
      ],
      { env: clean },
    );
    const [cfg, names] = JSON.parse(stdout) as [Record<string, unknown>, string[]];
    expect(cfg).to.deep.equal(JSON.parse(JSON.stringify(loadConfig({}))));
    expect(names).to.deep.equal([
      'POSTAGE_DEBUG_MODE',
      'POSTAGE_HOST',
      'POSTAGE_LOG_LEVEL',
      'POSTAGE_PASSWORD',
      'POSTAGE_PORT',
      'POSTAGE_TLS',
      'POSTAGE_USER',
      'POSTAGE_VHOST',
    ]);
  });
});

describe('loadConfig: addresses that cannot be used', () => {
  const refused = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (err) {
      return err as ConfigError;
    }
    throw new Error(`${JSON.stringify(env)} was accepted`);
  };

  it('refuses POSTAGE_URL=amqp:// (no host) instead of connecting as guest to localhost', () => {
    const e = refused({ POSTAGE_URL: 'amqp://' });
    expect(e).to.be.instanceOf(ConfigError);
    expect(e.variable).to.equal('POSTAGE_URL');
    expect(e.message).to.contain('names no host');
  });

  it('refuses a malformed POSTAGE_URL with a ConfigError naming it and never its password', () => {
    const e = refused({ POSTAGE_URL: 'amqp://guest:s3cret-pw@host:notaport/' });
    expect(e.variable).to.equal('POSTAGE_URL');
    expect(e.message).to.contain('not a valid URL').and.not.contain('s3cret-pw');
  });

  it('refuses a port in POSTAGE_HOST, saying where it goes', () => {
    const e = refused({ POSTAGE_HOST: '127.0.0.1:5672' });
    expect(e.variable).to.equal('POSTAGE_HOST');
    expect(e.message).to.contain('POSTAGE_PORT');
  });

  it('keeps a password holding @ or , whole: one URL, fully masked', () => {
    const cfg = loadConfig({ POSTAGE_URL: 'amqp://guest:Passw0rd@x,y@h1:5672/v' });
    const urls = brokerUrls(cfg);
    expect(urls).to.have.length(1);
    expect(redactUrl(urls[0])).to.equal('amqp://guest:***@h1:5672/v');
    expect(brokerUrls(loadConfig({ POSTAGE_URL: 'amqp://a:b@h1/v, amqp://a:b@h2/v' }))).to.deep.equal([
      'amqp://a:b@h1/v',
      'amqp://a:b@h2/v',
    ]);
  });
});
