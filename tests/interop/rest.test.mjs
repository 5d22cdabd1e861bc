// ably-js 2 (REST, Node) against mock-ably with an API key: the requests
// recorded in `docs/real-clients.md#rest-endpoints` (options as in
// `docs/real-clients.md#pointing-ably-js-at-a-mock`), answered as ably-js
// needs them.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';

import { KEY, KEY_NAME, KEY_SECRET, ablyOptions, control, signJwt, startPair } from './harness.mjs';

const Ably = createRequire(import.meta.url)('ably');

let pair;
let options;
let rest;
before(async () => {
  pair = await startPair();
  options = ablyOptions(pair.mockUrl);
  rest = new Ably.Rest({ key: KEY, ...options });
});
after(() => pair?.stop());

test('time() reads the mock clock', async () => {
  const time = await rest.time();
  assert.ok(Math.abs(time - Date.now()) < 5000, `time ${time}`);
});

test('publish and history round-trip JSON, text and binary data', async () => {
  const channel = rest.channels.get('interop:types');
  await channel.publish('object', { hello: 'world', n: [1, 2] });
  await channel.publish('text', 'plain text');
  await channel.publish('binary', Buffer.from([1, 2, 3, 255]));
  const page = await channel.history({ direction: 'forwards' });
  assert.deepEqual(
    page.items.map((m) => m.name),
    ['object', 'text', 'binary'],
  );
  assert.deepEqual(page.items[0].data, { hello: 'world', n: [1, 2] });
  assert.equal(page.items[1].data, 'plain text');
  assert.deepEqual([...page.items[2].data], [1, 2, 3, 255]);
  // ably-js's idempotent REST ids: <base64>:<index>.
  assert.match(page.items[0].id, /^[A-Za-z0-9+/]+:0$/);
});

test('a batch publish stores every message once, with ably-js ids <base>:0..n', async () => {
  const channel = rest.channels.get('interop:batch');
  const batch = Array.from({ length: 5 }, (_, i) => ({ name: `m${i}`, data: { i } }));
  await channel.publish(batch);
  const page = await channel.history({ direction: 'forwards' });
  assert.deepEqual(
    page.items.map((m) => [m.name, m.data]),
    batch.map((m) => [m.name, m.data]),
  );
  const base = page.items[0].id.split(':')[0];
  assert.deepEqual(
    page.items.map((m) => m.id),
    batch.map((_, i) => `${base}:${i}`),
  );
});

test('history paging follows the relative Link headers', async () => {
  const channel = rest.channels.get('interop:paging');
  await channel.publish(Array.from({ length: 7 }, (_, i) => ({ name: 'n', data: String(i) })));
  let page = await channel.history({ limit: 3 });
  const pages = [];
  for (;;) {
    pages.push(page.items.map((m) => m.data));
    if (!page.hasNext()) break;
    page = await page.next();
  }
  assert.deepEqual(pages, [['6', '5', '4'], ['3', '2', '1'], ['0']]);
});

test('requestToken (a signed TokenRequest) gives a working token with its clientId', async () => {
  const details = await rest.auth.requestToken({
    clientId: 'alice',
    capability: { 'interop:*': ['publish', 'subscribe', 'history'] },
  });
  assert.ok(details.token.startsWith(`${KEY_NAME.split('.')[0]}.`), details.token.slice(0, 12));
  assert.equal(details.clientId, 'alice');
  assert.equal(details.capability, '{"interop:*":["history","publish","subscribe"]}');
  const tokenRest = new Ably.Rest({ token: details.token, ...options });
  const channel = tokenRest.channels.get('interop:token');
  await channel.publish('hi', 'from alice');
  const page = await channel.history();
  assert.equal(page.items[0].clientId, 'alice');

  // Outside the token's capability: Ably's 40160, which ably-js does not retry.
  await assert.rejects(tokenRest.channels.get('elsewhere').publish('x', 'y'), (err) => {
    assert.equal(err.code, 40160);
    assert.equal(err.statusCode, 401);
    return true;
  });
});

test('an authCallback TokenRequest is exchanged and used', async () => {
  let calls = 0;
  const viaCallback = new Ably.Rest({
    ...options,
    authCallback: (_params, callback) => {
      calls += 1;
      rest.auth.createTokenRequest({ clientId: 'cb-user' }).then((request) => callback(null, request), callback);
    },
  });
  const channel = viaCallback.channels.get('interop:callback');
  await channel.publish('via', 'callback');
  const page = await channel.history();
  assert.equal(page.items[0].clientId, 'cb-user');
  assert.equal(calls, 1);
});

test('an Ably JWT works (ably-js base64-encodes it again in Bearer)', async () => {
  const now = Math.floor(Date.now() / 1000);
  const jwt = signJwt(
    { alg: 'HS256', typ: 'JWT', kid: KEY_NAME },
    { iat: now, exp: now + 600, 'x-ably-capability': '{"*":["*"]}', 'x-ably-clientId': 'jwt-user' },
    KEY_SECRET,
  );
  const jwtRest = new Ably.Rest({ token: jwt, ...options });
  const channel = jwtRest.channels.get('interop:jwt');
  await channel.publish('signed', 'by a JWT');
  const page = await channel.history();
  assert.equal(page.items[0].clientId, 'jwt-user');
});

test('an expired token literal ends in 40171 (ably-js saw a token error it cannot renew)', async () => {
  const literal = (await rest.auth.requestToken()).token;
  await control(pair.mockUrl, 'expire-credentials');
  const expired = new Ably.Rest({ token: literal, ...options });
  await assert.rejects(expired.channels.get('interop:expired').publish('x', 'y'), (err) => {
    assert.equal(err.code, 40171);
    return true;
  });
});
