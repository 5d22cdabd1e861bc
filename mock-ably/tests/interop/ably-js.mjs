// Drives mock-ably with ably-js 2.28 (REST, Node), the client whose requests
// REAL-CLIENTS.md §1–§4 recorded: time, publish, history paging, tokens from
// requestToken, authCallback TokenRequests, JWTs, and the error envelope.
//
// Usage: node ably-js.mjs BASE_URL KEY   (run.sh starts the mock)
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Ably = require('ably');
const { version } = JSON.parse(
  readFileSync(new URL('./node_modules/ably/package.json', import.meta.url), 'utf8'),
);
const [base, key] = process.argv.slice(2);
const endpoint = new URL(base);
const options = {
  endpoint: endpoint.hostname,
  port: Number(endpoint.port),
  tls: false,
  useBinaryProtocol: false, // Node's default is msgpack, which the mock refuses
  logLevel: 0,
};
const [keyName, secret] = [key.slice(0, key.indexOf(':')), key.slice(key.indexOf(':') + 1)];
const checks = [];
const check = async (name, body) => {
  await body();
  checks.push(name);
};

const rest = new Ably.Rest({ key, ...options });

await check('time', async () => {
  const time = await rest.time();
  assert.ok(Math.abs(time - Date.now()) < 5000, `time ${time}`);
});

await check('publish and history decode json, text and binary', async () => {
  const channel = rest.channels.get('interop:types');
  await channel.publish('object', { hello: 'world', n: [1, 2] });
  await channel.publish('text', 'plain text');
  await channel.publish('binary', Buffer.from([1, 2, 3, 255]));
  const page = await channel.history({ direction: 'forwards' });
  assert.deepEqual(page.items.map((m) => m.name), ['object', 'text', 'binary']);
  assert.deepEqual(page.items[0].data, { hello: 'world', n: [1, 2] });
  assert.equal(page.items[1].data, 'plain text');
  assert.deepEqual([...page.items[2].data], [1, 2, 3, 255]);
  // ably-js's idempotent REST ids: <base64>:<index>.
  assert.match(page.items[0].id, /^[A-Za-z0-9+/]+:0$/);
});

await check('history paging follows the relative Link headers', async () => {
  const channel = rest.channels.get('interop:paging');
  await channel.publish(Array.from({ length: 7 }, (_, i) => ({ name: 'n', data: String(i) })));
  let page = await channel.history({ limit: 3 });
  const seen = [];
  for (;;) {
    seen.push(...page.items.map((m) => m.data));
    if (!page.hasNext()) break;
    page = await page.next();
  }
  assert.deepEqual(seen, ['6', '5', '4', '3', '2', '1', '0']);
});

const tokenDetails = await rest.auth.requestToken({
  clientId: 'alice',
  capability: { 'interop:*': ['publish', 'subscribe', 'history'] },
});

await check('requestToken (a signed TokenRequest) gives a working token', async () => {
  assert.ok(tokenDetails.token.startsWith(keyName.split('.')[0] + '.'));
  assert.equal(tokenDetails.clientId, 'alice');
  const tokenRest = new Ably.Rest({ token: tokenDetails.token, ...options });
  const channel = tokenRest.channels.get('interop:token');
  await channel.publish('hi', 'from alice');
  const page = await channel.history();
  assert.equal(page.items[0].clientId, 'alice');
});

await check('a capability refusal reaches ably-js as 40160/401', async () => {
  const tokenRest = new Ably.Rest({ token: tokenDetails.token, ...options });
  await assert.rejects(tokenRest.channels.get('elsewhere').publish('x', 'y'), (err) => {
    assert.equal(err.code, 40160);
    assert.equal(err.statusCode, 401);
    return true;
  });
});

await check('an authCallback TokenRequest is exchanged and used', async () => {
  const viaCallback = new Ably.Rest({
    ...options,
    authCallback: (params, callback) => {
      rest.auth.createTokenRequest({ capability: { '*': ['*'] } }).then((request) => callback(null, request), callback);
    },
  });
  await viaCallback.channels.get('interop:callback').publish('via', 'callback');
});

await check('an Ably JWT works (ably-js base64-encodes it in Bearer)', async () => {
  const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${b64url({ alg: 'HS256', typ: 'JWT', kid: keyName })}.${b64url({
    iat: now,
    exp: now + 600,
    'x-ably-capability': '{"*":["*"]}',
    'x-ably-clientId': 'jwt-user',
  })}`;
  const jwt = `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
  const jwtRest = new Ably.Rest({ token: jwt, ...options });
  const channel = jwtRest.channels.get('interop:jwt');
  await channel.publish('signed', 'by a JWT');
  const page = await channel.history();
  assert.equal(page.items[0].clientId, 'jwt-user');
});

await check('an expired token literal ends in 40171 (ably-js saw a token error)', async () => {
  const literal = (await rest.auth.requestToken()).token;
  const response = await fetch(`${base}/_mock/expire-credentials`, { method: 'POST' });
  assert.equal(response.status, 204);
  const expired = new Ably.Rest({ token: literal, ...options });
  await assert.rejects(expired.channels.get('interop:expired').publish('x', 'y'), (err) => {
    assert.equal(err.code, 40171);
    return true;
  });
});

console.log(`ably-js ${version} against mock-ably: ${checks.length} checks passed`);
for (const name of checks) console.log(`  ok  ${name}`);
