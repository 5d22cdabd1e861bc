// ably-js 2 (REST, Node) with `authUrl` pointed at our auth-server, which
// signs for mock-ably: the contract of
// `docs/real-clients.md#authcallback-and-authurl`, end to end.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';

import { ablyOptions, appToken, authCounter, control, jwtPayload, mockStats, startPair } from './harness.mjs';

const Ably = createRequire(import.meta.url)('ably');

let pair;
let options;
before(async () => {
  pair = await startPair();
  options = ablyOptions(pair.mockUrl);
});
after(() => pair?.stop());

/** An ably-js client whose credentials come from our auth server as `user`. */
function clientFor(path, user, extra = {}) {
  return new Ably.Rest({
    ...options,
    authUrl: `${pair.authUrl}${path}`,
    authHeaders: { Authorization: `Bearer ${appToken(user)}` },
    ...extra,
  });
}

/** Publishes, then reads the message back through the same client. */
async function roundTrip(client, channelName, data) {
  const channel = client.channels.get(channelName);
  await channel.publish('greeting', data);
  const page = await channel.history({ limit: 1 });
  return page.items[0];
}

test('authUrl /api/ably-token-request (GET): ably-js exchanges the TokenRequest and publishes as the user', async () => {
  const issued = await authCounter(pair.authUrl, 'auth_tokens_issued_total{kind="token_request"}');
  const client = clientFor('/api/ably-token-request', 'alice');
  const message = await roundTrip(client, 'chat:lobby', 'hello from alice');
  assert.equal(message.clientId, 'alice');
  assert.equal(message.data, 'hello from alice');
  // The token ably-js got from the mock carries what the policy granted alice.
  const details = client.auth.tokenDetails;
  assert.equal(details.clientId, 'alice');
  assert.equal(details.capability, '{"chat:*":["history","publish","subscribe"],"private:alice":["*"]}');
  assert.equal(await authCounter(pair.authUrl, 'auth_tokens_issued_total{kind="token_request"}'), issued + 1);
});

test('authUrl /api/ably-token-request with authMethod POST (a form body)', async () => {
  const client = clientFor('/api/ably-token-request', 'bob', { authMethod: 'POST', authParams: { ttl: '120000' } });
  const message = await roundTrip(client, 'private:bob', { posted: true });
  assert.equal(message.clientId, 'bob');
  assert.deepEqual(message.data, { posted: true });
  const details = client.auth.tokenDetails;
  assert.equal(details.expires - details.issued, 120_000);
});

test('authUrl /api/ably-jwt: ably-js takes the application/jwt body as the token', async () => {
  const client = clientFor('/api/ably-jwt', 'carol');
  const message = await roundTrip(client, 'chat:jwt', 'signed by the auth server');
  assert.equal(message.clientId, 'carol');
  const jwt = client.auth.tokenDetails.token;
  const claims = jwtPayload(jwt);
  assert.equal(claims['x-ably-clientId'], 'carol');
  assert.equal(claims['x-ably-capability'], '{"chat:*":["history","publish","subscribe"],"private:carol":["*"]}');
});

test('authUrl /api/ably-token: ably-js sends Accept application/json and gets TokenDetails with expires', async () => {
  const issued = await authCounter(pair.authUrl, 'auth_tokens_issued_total{kind="token"}');
  const client = clientFor('/api/ably-token', 'ivan', { authParams: { ttl: '90000' } });
  const message = await roundTrip(client, 'chat:details', 'a token from Ably');
  assert.equal(message.clientId, 'ivan');
  // TokenDetails, not a bare string: ably-js knows when it expires.
  const details = client.auth.tokenDetails;
  assert.equal(details.clientId, 'ivan');
  assert.equal(details.expires - details.issued, 90_000);
  assert.equal(details.capability, '{"chat:*":["history","publish","subscribe"],"private:ivan":["*"]}');
  assert.equal(await authCounter(pair.authUrl, 'auth_tokens_issued_total{kind="token"}'), issued + 1);
});

test('tokenParams narrow the grant: ably-js capability and ttl reach the auth server', async () => {
  const client = clientFor('/api/ably-jwt', 'dave', {
    defaultTokenParams: { capability: '{"chat:narrow":["subscribe","history"]}', ttl: 60_000 },
  });
  // Publishing is outside the narrowed capability: the mock refuses it.
  await assert.rejects(client.channels.get('chat:narrow').publish('x', 'y'), (err) => {
    assert.equal(err.code, 40160);
    assert.equal(err.statusCode, 401);
    return true;
  });
  const claims = jwtPayload(client.auth.tokenDetails.token);
  assert.equal(claims['x-ably-capability'], '{"chat:narrow":["history","subscribe"]}');
  assert.equal(claims.exp - claims.iat, 60);
});

test('a channel outside the policy surfaces in ably-js as 40160, with no renewal loop', async () => {
  const issued = await authCounter(pair.authUrl, 'auth_tokens_issued_total{kind="jwt"}');
  const client = clientFor('/api/ably-jwt', 'erin');
  await assert.rejects(client.channels.get('ops:deploys').publish('x', 'y'), (err) => {
    assert.equal(err.code, 40160);
    assert.equal(err.statusCode, 401);
    return true;
  });
  // One token, and no second authUrl call: 40160 is not a token error.
  assert.equal(await authCounter(pair.authUrl, 'auth_tokens_issued_total{kind="jwt"}'), issued + 1);
});

test('a 403 from the auth server stops ably-js at once (clientId mismatch)', async () => {
  const refusals = 'auth_refusals_total{reason="client_id_mismatch"}';
  const before = await authCounter(pair.authUrl, refusals);
  const published = (await mockStats(pair.mockUrl)).published;
  // alice's login token, but a client claiming to be mallory: ably-js sends
  // clientId=mallory to the authUrl, and the auth server refuses with 403.
  const client = clientFor('/api/ably-token-request', 'alice', { clientId: 'mallory' });
  await assert.rejects(client.channels.get('chat:lobby').publish('x', 'y'), (err) => {
    assert.equal(err.statusCode, 403);
    assert.equal(err.code, 40102);
    return true;
  });
  assert.equal(await authCounter(pair.authUrl, refusals), before + 1);
  assert.equal((await mockStats(pair.mockUrl)).published, published);
});

test('a 403 while renewing an expired token stops ably-js instead of retrying', async () => {
  // A JWT the auth server issued to frank, which the mock then expires.
  const response = await fetch(`${pair.authUrl}/api/ably-jwt`, {
    headers: { Authorization: `Bearer ${appToken('frank')}` },
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'application/jwt');
  const expiring = await response.text();
  // The mock expires what it has seen: show it the JWT once, then expire.
  await new Ably.Rest({ ...options, token: expiring }).channels.get('chat:lobby').history();
  await control(pair.mockUrl, 'expire-credentials');

  const refusals = 'auth_refusals_total{reason="capability_denied"}';
  const before = await authCounter(pair.authUrl, refusals);
  // The renewal asks for a capability the policy never grants: 403.
  const client = clientFor('/api/ably-jwt', 'frank', {
    token: expiring,
    defaultTokenParams: { capability: '{"ops:deploys":["publish"]}' },
  });
  await assert.rejects(client.channels.get('chat:lobby').publish('x', 'y'), (err) => {
    assert.equal(err.statusCode, 403);
    assert.equal(err.code, 40160);
    return true;
  });
  assert.equal(await authCounter(pair.authUrl, refusals), before + 1);
});
