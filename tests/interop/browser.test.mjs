// Chromium (Debian's, driven by playwright-core) against our servers: its
// own EventSource on mock-ably's /sse with a token from auth-server, the
// browser build of ably-js across origins, a Spaces page written as the
// seeds' CDN recipe (the CDN answered from the pinned npm packages), the
// dev-mode demo page, and Ably's documented authCallback recipes on a
// same-origin page with a cookie session.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { after, before, describe, test } from 'node:test';

import { PATIENCE_MS, appToken, control, fetchWithin, jwtPayload, publish, startDev, startPair } from './harness.mjs';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const ABLY_BROWSER_BUILD = readFileSync(new URL('./node_modules/ably/build/ably.js', import.meta.url));

/**
 * Debian's chromium (`docs/real-clients.md#running-real-clients-headlessly`);
 * CHROMIUM overrides the path.
 */
function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  return execFileSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).trim();
}

/**
 * The seeds' CDN URLs of ably-js 2 and the Spaces IIFE bundle, each answered
 * with the file of the npm package package-lock.json pins (CI has no
 * internet; the README of @ably/spaces 0.5.2 gives these URLs).
 */
const CDN = new Map([
  ['https://cdn.ably.com/lib/ably.min-2.js', new URL('./node_modules/ably/build/ably.min.js', import.meta.url)],
  [
    'https://cdn.ably.com/spaces/0.5.2/iife/index.bundle.js',
    new URL('./node_modules/@ably/spaces/dist/iife/index.bundle.js', import.meta.url),
  ],
]);

/**
 * Routes `context`'s requests to Ably's CDN: `npm` answers the URLs of
 * [CDN] from the pinned packages, `offline` fails every one as a machine
 * without internet would.
 */
async function routeCdn(context, mode) {
  await context.route('https://cdn.ably.com/**', (route) => {
    const file = CDN.get(route.request().url());
    if (mode === 'npm' && file) {
      return route.fulfill({ status: 200, contentType: 'text/javascript', body: readFileSync(file) });
    }
    return route.abort('internetdisconnected');
  });
}

/**
 * A Spaces page as the seeds' CDN recipe writes one: ably-js 2 and the
 * Spaces bundle by `<script src>` from Ably's CDN, a Realtime client whose
 * authCallback fetches an Ably JWT from the auth server with the user's
 * login, an avatar stack of the members present and live cursors on a board.
 * Its settings come in the fragment: `mock`, `auth`, `login`, `space`, `name`.
 */
const SPACES_PAGE = `<!doctype html>
<meta charset="utf-8">
<title>Spaces</title>
<script src="https://cdn.ably.com/lib/ably.min-2.js"></script>
<script src="https://cdn.ably.com/spaces/0.5.2/iife/index.bundle.js"></script>
<style>
  #board { position: relative; width: 400px; height: 300px; border: 1px solid #888; }
  .cursor { position: absolute; }
</style>
<ul id="avatars"></ul>
<div id="board"></div>
<script>
  const config = Object.fromEntries(new URLSearchParams(location.hash.slice(1)));
  const mock = new URL(config.mock);
  const realtime = new Ably.Realtime({
    endpoint: mock.hostname,
    port: Number(mock.port),
    tls: false,
    transports: ['web_socket'],
    authCallback: async (_params, callback) => {
      try {
        const response = await fetch(config.auth + '/api/ably-jwt', {
          headers: { Authorization: 'Bearer ' + config.login },
        });
        callback(null, await response.text());
      } catch (err) {
        callback(err, null);
      }
    },
  });
  const spaces = new Spaces(realtime);
  const avatars = document.getElementById('avatars');
  const board = document.getElementById('board');
  function renderAvatars(members) {
    avatars.replaceChildren(
      ...members
        .filter((member) => member.isConnected)
        .map((member) => {
          const li = document.createElement('li');
          li.dataset.clientId = member.clientId;
          li.textContent = member.profileData.name;
          return li;
        }),
    );
  }
  window.ready = (async () => {
    const space = await spaces.get(config.space);
    window.space = space;
    space.subscribe('update', ({ members }) => renderAvatars(members));
    renderAvatars(await space.enter({ name: config.name }));
    space.cursors.subscribe('update', ({ clientId, connectionId, position, data }) => {
      if (connectionId === realtime.connection.id) return;
      let cursor = board.querySelector('[data-client-id="' + clientId + '"]');
      if (!cursor) {
        cursor = document.createElement('span');
        cursor.className = 'cursor';
        cursor.dataset.clientId = clientId;
        cursor.textContent = data.name;
        board.append(cursor);
      }
      cursor.style.left = position.x + 'px';
      cursor.style.top = position.y + 'px';
      cursor.dataset.x = position.x;
      cursor.dataset.y = position.y;
    });
    board.addEventListener('mousemove', (event) => {
      const box = board.getBoundingClientRect();
      space.cursors.set({
        position: { x: Math.round(event.clientX - box.left), y: Math.round(event.clientY - box.top) },
        data: { name: config.name },
      });
    });
  })();
</script>
`;

/** A page origin of its own: an empty page, the ably-js browser build and the Spaces page. */
async function startPageServer() {
  const server = createServer((request, response) => {
    if (request.url === '/ably.js') {
      response.writeHead(200, { 'content-type': 'text/javascript' }).end(ABLY_BROWSER_BUILD);
    } else if (request.url === '/spaces') {
      response.writeHead(200, { 'content-type': 'text/html' }).end(SPACES_PAGE);
    } else if (request.url === '/') {
      response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>interop</title><script src="/ably.js"></script>');
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    stop: () => new Promise((resolve) => server.close(resolve)),
  };
}

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    // The flags of `docs/real-clients.md#running-real-clients-headlessly`:
    // nothing reaches off the box.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});
after(() => browser?.close());

/**
 * A fresh browser context and page; its console goes to `console` for the
 * failure log. `cdn` routes Ably's CDN (`npm` or `offline`, see routeCdn).
 */
async function newPage(t, { cdn = 'offline' } = {}) {
  const context = await browser.newContext();
  await routeCdn(context, cdn);
  const page = await context.newPage();
  page.setDefaultTimeout(PATIENCE_MS);
  const lines = [];
  page.on('console', (message) => lines.push(message.text()));
  page.on('pageerror', (err) => lines.push(`pageerror: ${err.message}`));
  t.after(async () => {
    if (t.passed === false) console.log(lines.join('\n'));
    await context.close();
  });
  return { page, lines };
}

describe("Chromium's EventSource and ably-js on our servers", () => {
  let site;
  let pair;
  before(async () => {
    site = await startPageServer();
    // Cross-origin on purpose: the page, the auth server and the mock each have their own port.
    pair = await startPair({ corsOrigins: site.origin });
  });
  after(async () => {
    await pair?.stop();
    await site?.stop();
  });

  test('EventSource: messages arrive, a forced expiry is a 40142 error event, lastEvent resumes', async (t) => {
    const { page } = await newPage(t);
    await page.goto(site.origin);
    const channel = 'chat:eventsource';
    // The page's own script, as an app would write it: fetch a JWT, open the stream.
    await page.evaluate(
      async ({ authUrl, mockUrl, token, channel }) => {
        window.received = [];
        window.errors = [];
        window.opens = 0;
        window.jwtFor = async () => {
          const response = await fetch(`${authUrl}/api/ably-jwt`, { headers: { Authorization: `Bearer ${token}` } });
          if (response.status !== 200) throw new Error(`ably-jwt: ${response.status}`);
          return { type: response.headers.get('content-type'), jwt: await response.text() };
        };
        window.openStream = async (lastEvent) => {
          const { type, jwt } = await window.jwtFor();
          window.jwtType = type;
          const params = new URLSearchParams({ v: '1.2', channels: channel, accessToken: jwt });
          if (lastEvent) params.set('lastEvent', lastEvent);
          const es = new EventSource(`${mockUrl}/sse?${params}`);
          window.source = es;
          es.onopen = () => (window.opens += 1);
          es.onmessage = (e) => window.received.push({ id: e.lastEventId, message: JSON.parse(e.data) });
          es.onerror = (e) =>
            window.errors.push({
              isMessageEvent: e instanceof MessageEvent,
              data: e.data ?? null,
              readyState: es.readyState,
            });
        };
        await window.openStream(null);
      },
      { authUrl: pair.authUrl, mockUrl: pair.mockUrl, token: appToken('alice'), channel },
    );
    await page.waitForFunction(() => window.opens === 1);
    assert.equal(await page.evaluate(() => window.jwtType), 'application/jwt');

    // A 200 means attached: what is published now reaches the stream.
    await publish(pair.mockUrl, channel, [
      { name: 'one', data: 'first' },
      { name: 'two', data: { n: 2 } },
    ]);
    await page.waitForFunction(() => window.received.length === 2);
    const firstTwo = await page.evaluate(() => window.received);
    assert.deepEqual(
      firstTwo.map(({ message }) => [message.name, message.data, message.encoding ?? null, message.channel]),
      [
        ['one', 'first', null, channel],
        ['two', '{"n":2}', 'json', channel],
      ],
    );
    assert.ok(firstTwo.every(({ id }) => id !== ''), 'every message event carries an id');

    // Force expiry: Ably's error event, a MessageEvent while the stream is still OPEN.
    await control(pair.mockUrl, 'expire-credentials');
    await page.waitForFunction(() => window.errors.length >= 1);
    const [error] = await page.evaluate(() => window.errors);
    assert.equal(error.isMessageEvent, true);
    assert.equal(error.readyState, 1);
    assert.deepEqual(JSON.parse(error.data), {
      code: 40142,
      statusCode: 401,
      message: 'Token expired',
      href: 'https://help.ably.io/error/40142',
    });

    // As Ably's SSE docs say: close, fetch a new token, reopen with lastEvent.
    // What is published in between arrives once, then the stream goes on live.
    const lastId = firstTwo[1].id;
    await page.evaluate(() => window.source.close());
    await publish(pair.mockUrl, channel, { name: 'three', data: 'while away' });
    await page.evaluate((id) => window.openStream(id), lastId);
    await page.waitForFunction(() => window.opens === 2);
    await publish(pair.mockUrl, channel, { name: 'four', data: 'live again' });
    await page.waitForFunction(() => window.received.length >= 4);
    const all = await page.evaluate(() => window.received);
    assert.deepEqual(
      all.map(({ message }) => message.name),
      ['one', 'two', 'three', 'four'],
    );
    assert.equal(new Set(all.map(({ id }) => id)).size, 4, 'four distinct event ids');
  });

  test('EventSource: a refused stream (a channel outside the policy) closes without data', async (t) => {
    const { page } = await newPage(t);
    await page.goto(site.origin);
    const result = await page.evaluate(
      async ({ authUrl, mockUrl, token }) => {
        const response = await fetch(`${authUrl}/api/ably-jwt`, { headers: { Authorization: `Bearer ${token}` } });
        const jwt = await response.text();
        const es = new EventSource(`${mockUrl}/sse?v=1.2&channels=ops:deploys&accessToken=${jwt}`);
        return new Promise((resolve) => {
          es.onerror = (e) => resolve({ data: e.data ?? null, readyState: es.readyState });
        });
      },
      { authUrl: pair.authUrl, mockUrl: pair.mockUrl, token: appToken('alice') },
    );
    // `docs/real-clients.md#chromium-eventsource`: a non-200 is one plain error
    // and CLOSED, never a reconnect.
    assert.deepEqual(result, { data: null, readyState: 2 });
  });

  test('ably-js browser build: authUrl across origins, publish, history and a 40160 refusal', async (t) => {
    const { page } = await newPage(t);
    await page.goto(site.origin);
    const result = await page.evaluate(
      async ({ authUrl, mockUrl, token }) => {
        const url = new URL(mockUrl);
        const rest = new Ably.Rest({
          endpoint: url.hostname,
          port: Number(url.port),
          tls: false,
          logLevel: 0,
          authUrl: `${authUrl}/api/ably-token-request`,
          authHeaders: { Authorization: `Bearer ${token}` },
        });
        const channel = rest.channels.get('chat:browser');
        await channel.publish('hello', { from: 'the browser' });
        const page = await channel.history();
        let refusal = null;
        try {
          await rest.channels.get('ops:deploys').publish('x', 'y');
        } catch (err) {
          refusal = { code: err.code, statusCode: err.statusCode };
        }
        const item = page.items[0];
        return { name: item.name, data: item.data, clientId: item.clientId, refusal };
      },
      { authUrl: pair.authUrl, mockUrl: pair.mockUrl, token: appToken('grace') },
    );
    assert.deepEqual(result, {
      name: 'hello',
      data: { from: 'the browser' },
      clientId: 'grace',
      refusal: { code: 40160, statusCode: 401 },
    });
  });

  test('ably-js browser build: Realtime (JSON over WebSocket) with the authCallback recipe publishes and subscribes', async (t) => {
    const { page } = await newPage(t);
    await page.goto(site.origin);
    const result = await page.evaluate(
      async ({ authUrl, mockUrl, token, patience }) => {
        const url = new URL(mockUrl);
        // The seeds' recipe: fetch the auth endpoint, hand the text (a JWT) over.
        const options = {
          endpoint: url.hostname,
          port: Number(url.port),
          tls: false,
          logLevel: 0,
          transports: ['web_socket'],
          authCallback: async (_params, callback) => {
            try {
              const response = await fetch(`${authUrl}/api/ably-jwt`, { headers: { Authorization: `Bearer ${token}` } });
              callback(null, await response.text());
            } catch (err) {
              callback(err, null);
            }
          },
        };
        const within = (promise, what) =>
          Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(what)), patience))]);
        const subscriber = new Ably.Realtime(options);
        const publisher = new Ably.Realtime(options);
        try {
          const channel = subscriber.channels.get('chat:realtime-browser');
          const received = new Promise((resolve) => channel.subscribe('hello', resolve));
          await within(channel.attach(), 'attach');
          await within(publisher.channels.get('chat:realtime-browser').publish('hello', { from: 'a browser' }), 'publish');
          const message = await within(received, 'the message');
          let refusal = null;
          try {
            await within(publisher.channels.get('ops:deploys').attach(), 'refused attach');
          } catch (err) {
            refusal = err.code;
          }
          return {
            data: message.data,
            clientId: message.clientId,
            fromPublisher: message.connectionId === publisher.connection.id,
            ownClientId: subscriber.auth.clientId,
            refusal,
            state: publisher.connection.state,
          };
        } finally {
          subscriber.close();
          publisher.close();
        }
      },
      { authUrl: pair.authUrl, mockUrl: pair.mockUrl, token: appToken('heidi'), patience: PATIENCE_MS },
    );
    assert.deepEqual(result, {
      data: { from: 'a browser' },
      clientId: 'heidi',
      fromPublisher: true,
      ownClientId: 'heidi',
      refusal: 40160,
      state: 'connected',
    });
  });
});

describe('@ably/spaces from the CDN recipe in Chromium', () => {
  let site;
  let pair;
  before(async () => {
    site = await startPageServer();
    pair = await startPair({ corsOrigins: site.origin });
  });
  after(async () => {
    await pair?.stop();
    await site?.stop();
  });

  /** The Spaces page as `user` (a `team` member, so granted the space). */
  async function spacesPage(t, user, name) {
    const { page } = await newPage(t, { cdn: 'npm' });
    const settings = new URLSearchParams({
      mock: pair.mockUrl,
      auth: pair.authUrl,
      login: appToken(user, { roles: ['team'] }),
      space: 'browser-board',
      name,
    });
    await page.goto(`${site.origin}/spaces#${settings}`);
    await page.evaluate(() => window.ready);
    return page;
  }

  test('two users: each sees both avatars, and a cursor moved on one appears on the other', async (t) => {
    const ivan = await spacesPage(t, 'ivan', 'Ivan');
    const judy = await spacesPage(t, 'judy', 'Judy');
    const avatars = (page) =>
      page.$$eval('#avatars li', (items) => items.map((li) => [li.dataset.clientId, li.textContent]).sort());
    for (const page of [ivan, judy]) {
      await page.waitForFunction(() => document.querySelectorAll('#avatars li').length === 2);
      assert.deepEqual(await avatars(page), [
        ['ivan', 'Ivan'],
        ['judy', 'Judy'],
      ]);
    }

    // The SDK sends cursor positions once it sees another member on the
    // cursors channel (each page entered it when it subscribed).
    await ivan.waitForFunction(async () => (await window.space.cursors.channel.presence.get()).length === 2);
    const board = await ivan.locator('#board').boundingBox();
    // Whole pixels: the page rounds the pointer's offset in the board.
    await ivan.mouse.move(Math.round(board.x) + 120, Math.round(board.y) + 80);
    await judy.waitForSelector('#board .cursor[data-client-id="ivan"]');
    await judy.waitForFunction(() => {
      const cursor = document.querySelector('#board .cursor[data-client-id="ivan"]');
      return cursor.dataset.x === '120' && cursor.dataset.y === '80';
    });
    assert.equal(await judy.textContent('#board .cursor[data-client-id="ivan"]'), 'Ivan');
  });
});

describe('the dev-mode demo page', () => {
  let dev;
  before(async () => {
    dev = await startDev();
  });
  after(() => dev?.stop());

  test('log in, watch the ticks, force expiry, see one renewal and no gap', async (t) => {
    const { page } = await newPage(t);
    await page.goto(dev.authUrl);
    await page.fill('#user', 'alice');
    await page.click('#login');
    await page.waitForFunction(() => document.getElementById('state').dataset.state === 'connected');
    assert.equal(await page.textContent('#client-id'), 'alice');
    assert.deepEqual(JSON.parse(await page.textContent('#capability')), {
      '*': ['history', 'presence', 'publish', 'subscribe'],
    });

    const ticks = () =>
      page.$$eval('#messages li[data-name="tick"]', (rows) => rows.map((row) => Number(row.dataset.n)).reverse());
    // The publisher ticks once a second: two ticks, then the expiry.
    await page.waitForFunction(() => document.querySelectorAll('#messages li[data-name="tick"]').length >= 2);
    await page.click('#expire');
    await page.waitForFunction(() => document.getElementById('renewals').textContent === '1');
    const atRenewal = (await ticks()).length;
    // Two ticks after the renewal prove it resumed live.
    await page.waitForFunction(
      (count) => document.querySelectorAll('#messages li[data-name="tick"]').length >= count + 2,
      atRenewal,
    );

    // A message published from the page comes back on the stream.
    await page.fill('#publish-text', 'hello from the page');
    await page.click('#publish');
    await page.waitForSelector('#messages li[data-name="page"]');

    const seen = await ticks();
    assert.deepEqual(
      seen,
      Array.from({ length: seen.length }, (_, i) => seen[0] + i),
      'consecutive ticks: none missed or repeated across the renewal',
    );
    assert.equal(await page.textContent('#gaps'), '0');
    assert.equal(await page.getAttribute('#state', 'data-state'), 'connected');
    const kinds = await page.$$eval('#log li', (rows) => rows.map((row) => row.dataset.kind).reverse());
    assert.deepEqual(kinds.filter((kind) => kind !== 'info'), ['connected', 'renewing', 'renewed']);

    // Offline (Ably's CDN unreachable, as in CI), the Spaces panel says so
    // and everything above worked without it.
    assert.equal(await page.getAttribute('#spaces-status', 'data-state'), 'unavailable');
    assert.match(await page.textContent('#spaces-status'), /could not be loaded/);
    assert.equal(await page.$$eval('#avatars li', (items) => items.length), 0);
  });

  test('Spaces panel: two tabs logged in as different users see both avatars and each other\'s cursor', async (t) => {
    /** The demo page with Ably's CDN answered from the pinned npm packages, logged in as `user`. */
    async function tab(user) {
      const { page } = await newPage(t, { cdn: 'npm' });
      await page.goto(dev.authUrl);
      await page.waitForFunction(() => document.getElementById('spaces-status').dataset.state === 'idle');
      await page.fill('#user', user);
      await page.click('#login');
      await page.waitForFunction(() => document.getElementById('spaces-status').dataset.state === 'entered');
      return page;
    }
    const alice = await tab('alice');
    const bob = await tab('bob');
    for (const page of [alice, bob]) {
      await page.waitForFunction(() => document.querySelectorAll('#avatars li').length === 2);
      assert.deepEqual(
        await page.$$eval('#avatars li', (items) => items.map((li) => [li.dataset.clientId, li.dataset.name]).sort()),
        [
          ['alice', 'alice'],
          ['bob', 'bob'],
        ],
      );
    }
    // The SSE demo runs alongside.
    await bob.waitForFunction(() => document.getElementById('state').dataset.state === 'connected');

    // Cursors: alice's pointer on the board shows on bob's, once the SDK on
    // alice's side sees someone else on the cursors channel to send it to.
    await alice.waitForFunction(async () => (await window.demoSpace.cursors.channel.presence.get()).length === 2);
    await alice.locator('#cursor-board').scrollIntoViewIfNeeded();
    const board = await alice.locator('#cursor-board').boundingBox();
    // Whole pixels: the page rounds the pointer's offset in the board.
    await alice.mouse.move(Math.round(board.x) + 150, Math.round(board.y) + 60);
    await bob.waitForFunction(() => {
      const cursor = document.querySelector('#cursor-board .cursor[data-client-id="alice"]');
      return cursor?.dataset.x === '150' && cursor.dataset.y === '60';
    });
    assert.equal(await bob.textContent('#cursor-board .cursor[data-client-id="alice"]'), 'alice');
  });
});

describe("Ably's authCallback recipes on a same-origin page with a cookie session", () => {
  let dev;
  before(async () => {
    // The auth server serves the page (dev mode's `/`) and the API on one
    // origin, and reads the app JWT from the `session` cookie.
    dev = await startDev({ env: { AUTH_APP_JWT_COOKIE: 'session' } });
  });
  after(() => dev?.stop());

  for (const path of ['/api/ably-token', '/api/ably-jwt']) {
    test(`fetch('${path}', { credentials: 'include' }) and response.text(): Realtime connects, publishes and subscribes`, async (t) => {
      const login = await fetchWithin(`${dev.authUrl}/dev/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user: 'judy' }),
      });
      assert.equal(login.status, 200);
      const { token } = await login.json();
      const { page } = await newPage(t);
      // The app's login set its session cookie, as any login would.
      await page.context().addCookies([
        { name: 'session', value: token, url: dev.authUrl, httpOnly: true, sameSite: 'Strict' },
      ]);
      await page.goto(dev.authUrl);
      await page.addScriptTag({ content: ABLY_BROWSER_BUILD.toString('utf8') });
      const result = await page.evaluate(
        async ({ mockUrl, path, patience }) => {
          const url = new URL(mockUrl);
          const { Realtime } = Ably;
          // Ably's recipe, verbatim but for `path` and the mock's address.
          const realtimeClient = new Realtime({
            endpoint: url.hostname,
            port: Number(url.port),
            tls: false,
            logLevel: 0,
            authCallback: async (tokenParams, callback) => {
              try {
                const response = await fetch(path, { credentials: 'include' });
                if (!response.ok) throw new Error('Auth failed');
                const jwt = await response.text();
                callback(null, jwt);
              } catch (error) {
                callback(error, null);
              }
            },
          });
          const within = (promise, what) =>
            Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(what)), patience))]);
          try {
            await within(
              new Promise((resolve, reject) => {
                realtimeClient.connection.once('connected', resolve);
                realtimeClient.connection.once('failed', (change) => reject(new Error(change.reason.message)));
              }),
              'connected',
            );
            const channel = realtimeClient.channels.get('recipe:browser');
            const received = new Promise((resolve) => channel.subscribe('hello', resolve));
            await within(channel.attach(), 'attach');
            await within(channel.publish('hello', { from: 'the recipe' }), 'publish');
            const message = await within(received, 'the message');
            return {
              credential: realtimeClient.auth.tokenDetails.token,
              clientId: realtimeClient.auth.clientId,
              data: message.data,
              from: message.clientId,
              // The page cannot read the HttpOnly cookie; it rode along anyway.
              cookieVisible: document.cookie.includes('session='),
            };
          } finally {
            realtimeClient.close();
          }
        },
        { mockUrl: dev.mockUrl, path, patience: PATIENCE_MS },
      );
      if (path === '/api/ably-jwt') {
        assert.equal(jwtPayload(result.credential)['x-ably-clientId'], 'judy');
      } else {
        // The bare token string, not TokenDetails JSON and not a JWT.
        assert.equal(result.credential.split('.').length, 2, result.credential);
      }
      assert.deepEqual(
        { ...result, credential: undefined },
        { credential: undefined, clientId: 'judy', data: { from: 'the recipe' }, from: 'judy', cookieVisible: false },
      );
    });
  }
});
