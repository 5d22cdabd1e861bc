// The interop suite's harness: starts our binaries on loopback ports the OS
// picks, waits for their ready lines (never a sleep), and gives the tests
// what they need to drive them: app login tokens, REST publishing on the
// mock, the mock's fault controls and the auth server's counters.
//
// The binaries come from INTEROP_BIN_DIR (run.sh sets it to cargo's
// target/debug after building them).
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** The one API key the mock accepts and the auth server signs with. */
export const KEY = 'interopApp.interopKey:interop-secret';
export const KEY_NAME = KEY.slice(0, KEY.indexOf(':'));
export const KEY_SECRET = KEY.slice(KEY.indexOf(':') + 1);

/** The app's own login secret: the auth server verifies app tokens with it. */
const APP_SECRET = 'interop-app-login-secret-0123456789';

/** The policy the auth server runs with in this suite. */
const POLICY = `
[default]
"chat:*" = ["subscribe", "publish", "history"]
"private:{clientId}" = ["*"]

[roles.ops]
"ops:*" = ["*"]

# Spaces (the shorthand grants S::$space and S::$cursors), one per test.
[roles.team]
spaces = ["members", "locations", "locks", "cursors", "renewal", "browser-board"]
`;

/** How long any one wait may take before the test fails instead of hanging. */
export const PATIENCE_MS = Number(process.env.INTEROP_PATIENCE_MS ?? 15_000);

function binDir() {
  const dir = process.env.INTEROP_BIN_DIR;
  if (!dir) throw new Error('INTEROP_BIN_DIR is not set: run tests/interop/run.sh');
  return dir;
}

/**
 * Starts one of our binaries and resolves once it has printed every line in
 * `ready` (each a prefix such as "mock-ably listening on "), with the rest of
 * each line (the URL). Its stderr is kept for the failure message.
 */
async function start(name, args, { env = {}, cwd, ready }) {
  const child = spawn(join(binDir(), name), args, {
    cwd,
    env: { PATH: process.env.PATH, RUST_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const found = new Map();
  const lines = createInterface({ input: child.stdout });
  const urls = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(`no ready line within ${PATIENCE_MS} ms`), PATIENCE_MS);
    function fail(why) {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${name} ${args.join(' ')}: ${why}\n${stderr}`));
    }
    child.once('exit', (code, signal) => fail(`exited (${code ?? signal}) before it was ready`));
    lines.on('line', (line) => {
      for (const prefix of ready) {
        if (line.startsWith(prefix) && !found.has(prefix)) found.set(prefix, line.slice(prefix.length));
      }
      if (found.size === ready.length) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve(ready.map((prefix) => found.get(prefix)));
      }
    });
  });
  // Keep draining stdout so the child never blocks on a full pipe.
  child.stdout.resume();
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  return { urls, stop, stderr: () => stderr, signal: (name) => child.kill(name) };
}

/**
 * The production pair: mock-ably with KEY, and auth-server (built as users
 * deploy it, without dev mode) signing with KEY against that mock.
 *
 * `corsOrigins` is AUTH_CORS_ORIGINS (browser tests pass their page's origin);
 * `env` adds auth-server variables (AUTH_APP_JWT_COOKIE, say).
 */
export async function startPair({ corsOrigins = '*', env = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'interop-'));
  const policyFile = join(dir, 'policy.toml');
  writeFileSync(policyFile, POLICY);
  // A 2 s AUTH lead: the soak's 6 s tokens are then renewed in-band by AUTH
  // (a token with less life left than the lead just expires).
  const mock = await start('mock-ably', ['--bind', '127.0.0.1:0', '--key', KEY, '--auth-lead', '2s'], {
    cwd: dir,
    ready: ['mock-ably listening on '],
  });
  const mockUrl = mock.urls[0];
  let auth;
  try {
    auth = await start('auth-server', [], {
      // A directory of its own, so a developer's `.env` is never read.
      cwd: dir,
      env: {
        ABLY_API_KEY: KEY,
        ABLY_REST_URL: mockUrl,
        AUTH_BIND: '127.0.0.1:0',
        AUTH_APP_JWT_SECRET: APP_SECRET,
        AUTH_POLICY_FILE: policyFile,
        AUTH_CORS_ORIGINS: corsOrigins,
        ...env,
      },
      ready: ['auth-server listening on '],
    });
  } catch (err) {
    await mock.stop();
    throw err;
  }
  const authUrl = auth.urls[0];
  return {
    mockUrl,
    authUrl,
    /**
     * Puts `toml` in force as an operator does: writes the policy file, sends
     * the auth server SIGHUP, and resolves once `/metrics` counts the reload.
     */
    async reloadPolicy(toml) {
      const series = 'auth_policy_reloads_total{result="ok"}';
      const before = await authCounter(authUrl, series);
      writeFileSync(policyFile, toml);
      auth.signal('SIGHUP');
      const deadline = Date.now() + PATIENCE_MS;
      while ((await authCounter(authUrl, series)) === before) {
        if (Date.now() > deadline) throw new Error(`no policy reload within ${PATIENCE_MS} ms`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    async stop() {
      await Promise.all([auth.stop(), mock.stop()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * `auth-server --dev` on free ports: the demo page, its mock and publisher.
 * `env` adds auth-server variables (AUTH_APP_JWT_COOKIE, say).
 */
export async function startDev({ env = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'interop-dev-'));
  const dev = await start('auth-server', ['--dev', '--mock-bind', '127.0.0.1:0'], {
    cwd: dir,
    env: { AUTH_BIND: '127.0.0.1:0', ...env },
    ready: ['auth-server listening on ', 'mock-ably listening on '],
  });
  const [authUrl, mockUrl] = dev.urls;
  return {
    authUrl,
    mockUrl,
    async stop() {
      await dev.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** Signs an HS256 JWT by hand, so the tests share no code with the server. */
export function signJwt(header, claims, secret) {
  const unsigned = `${b64url(header)}.${b64url(claims)}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/** The app's login token for `user`, as the app's identity provider would issue it. */
export function appToken(user, { roles = [], ttlSeconds = 600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return signJwt(
    { alg: 'HS256', typ: 'JWT' },
    { sub: user, roles, iat: now, exp: now + ttlSeconds, jti: randomBytes(8).toString('hex') },
    APP_SECRET,
  );
}

/** The payload of a JWT, unverified (the tests check what was issued). */
export function jwtPayload(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

/**
 * ably-js REST options for one of our mocks
 * (`docs/real-clients.md#pointing-ably-js-at-a-mock`).
 */
export function ablyOptions(mockUrl) {
  const url = new URL(mockUrl);
  return {
    endpoint: url.hostname,
    port: Number(url.port),
    tls: false,
    useBinaryProtocol: false, // Node's default is msgpack, which the mock refuses
    logLevel: 0,
  };
}

/**
 * ably-js `Realtime` options for one of our mocks on ably-js's own defaults
 * otherwise (msgpack in Node), with `extra` on top.
 */
export function realtimeOptions(mockUrl, extra = {}) {
  const { useBinaryProtocol: _json, ...base } = ablyOptions(mockUrl);
  return { ...base, ...extra };
}

/**
 * The seeds' authCallback recipe pointed at our auth server: fetch an Ably
 * JWT from `/api/ably-jwt` with the user's app login, then
 * `callback(null, await response.text())`. `roles` go into the login,
 * `query` narrows the token (`ttl`, `capability`), `onToken` runs at every
 * call.
 */
export function authCallback(authUrl, user, { roles = [], query = {}, onToken = () => {} } = {}) {
  const login = appToken(user, { roles });
  const url = new URL('/api/ably-jwt', authUrl);
  for (const [name, value] of Object.entries(query)) {
    url.searchParams.set(name, typeof value === 'string' ? value : JSON.stringify(value));
  }
  return async (_params, callback) => {
    onToken();
    try {
      const response = await fetch(url, { headers: { Authorization: `Bearer ${login}` } });
      if (!response.ok) throw new Error(`ably-jwt: ${response.status} ${await response.text()}`);
      callback(null, await response.text());
    } catch (err) {
      callback(err, null);
    }
  };
}

/** Resolves when an ably-js `connection` reaches `state`, or fails after PATIENCE_MS. */
export function reach(connection, state) {
  if (connection.state === state) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`still ${connection.state}, not ${state}, after ${PATIENCE_MS} ms`)),
      PATIENCE_MS,
    );
    connection.on(state, (change) => {
      clearTimeout(timer);
      resolve(change);
    });
  });
}

/**
 * Keeps every event handed to `push`, and resolves `until` on the first,
 * past or future, that passes a check: no listener is ever late.
 */
export class Recorder {
  events = [];
  #waiters = new Set();

  /** Records `event` (bound, so it can be passed as a listener). */
  push = (event) => {
    this.events.push(event);
    for (const waiter of this.#waiters) waiter(event);
  };

  /**
   * The first event passing `check` (from the `from`th recorded on), or a
   * failure naming `what` after PATIENCE_MS.
   */
  until(what, check = () => true, from = 0) {
    const seen = this.events.slice(from).find(check);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = (event) => {
        if (!check(event)) return;
        this.#waiters.delete(waiter);
        clearTimeout(timer);
        resolve(event);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`no ${what} within ${PATIENCE_MS} ms; last seen ${JSON.stringify(this.events.slice(-10))}`));
      }, PATIENCE_MS);
      this.#waiters.add(waiter);
    });
  }
}

/** A fetch that gives up after PATIENCE_MS. */
export function fetchWithin(url, init = {}) {
  return fetch(url, { signal: AbortSignal.timeout(PATIENCE_MS), ...init });
}

/** Publishes over the mock's REST API with the key; resolves to the 201 body. */
export async function publish(mockUrl, channel, messages) {
  const response = await fetchWithin(`${mockUrl}/channels/${encodeURIComponent(channel)}/messages`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(KEY).toString('base64')}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify(messages),
  });
  if (response.status !== 201) throw new Error(`publish: ${response.status} ${await response.text()}`);
  return response.json();
}

/** Calls one of the mock's `/_mock/` controls and checks it succeeded. */
export async function control(mockUrl, name, body) {
  const response = await fetchWithin(`${mockUrl}/_mock/${name}`, {
    method: 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status !== 204 && response.status !== 200) {
    throw new Error(`/_mock/${name}: ${response.status} ${await response.text()}`);
  }
}

/** The mock's counters (`GET /_mock/stats`). */
export async function mockStats(mockUrl) {
  return (await fetchWithin(`${mockUrl}/_mock/stats`)).json();
}

/** One counter from the auth server's `/metrics`, 0 when it has not moved yet. */
export async function authCounter(authUrl, series) {
  const text = await (await fetchWithin(`${authUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}
