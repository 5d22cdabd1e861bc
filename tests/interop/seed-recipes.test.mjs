// The seeds' recipes, verbatim: Ably's documented `authCallback` that calls
// `fetch('/api/ably-token', { credentials: 'include' })` and hands
// `await response.text()` to ably-js, and the same against `/api/ably-jwt`,
// with ably-js 2 `Realtime` (Node) on mock-ably and the auth server reading
// the user's session from a cookie (AUTH_APP_JWT_COOKIE), as a same-origin
// app sends it. auth-server/README.md's "Ably's recipes, pointed at us" shows them.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';

import { PATIENCE_MS, ablyOptions, appToken, authCounter, control, jwtPayload, reach, startPair } from './harness.mjs';

const { Realtime } = createRequire(import.meta.url)('ably');

let pair;
before(async () => {
  pair = await startPair({ env: { AUTH_APP_JWT_COOKIE: 'session' } });
});
after(() => pair?.stop());

/**
 * What `fetch` is on a page the auth server serves, for a user logged in as
 * `user`: relative URLs resolve against the page's origin, and the browser
 * adds the session cookie (Node's fetch has no cookie jar).
 */
function sameOriginFetch(user) {
  const cookie = `session=${appToken(user)}`;
  return (path, init = {}) =>
    globalThis.fetch(new URL(path, pair.authUrl), {
      ...init,
      headers: { ...init.headers, cookie },
      signal: AbortSignal.timeout(PATIENCE_MS),
    });
}

/** Where the mock is, for ably-js; the recipes' options come after. */
function mockOptions() {
  return ablyOptions(pair.mockUrl);
}

/** Ably's recipe for `/api/ably-token`, as documented (Spaces SDK setup). */
function tokenRecipe(fetch, calls) {
  return new Realtime({
    ...mockOptions(),
    authCallback: async (tokenParams, callback) => {
      calls.push(tokenParams);
      try {
        const response = await fetch('/api/ably-token', { credentials: 'include' });
        if (!response.ok) throw new Error('Auth failed');
        const jwt = await response.text();
        callback(null, jwt);
      } catch (error) {
        callback(error, null);
      }
    },
  });
}

/** The same recipe against `/api/ably-jwt`. */
function jwtRecipe(fetch, calls) {
  return new Realtime({
    ...mockOptions(),
    authCallback: async (tokenParams, callback) => {
      calls.push(tokenParams);
      try {
        const response = await fetch('/api/ably-jwt', { credentials: 'include' });
        if (!response.ok) throw new Error('Auth failed');
        const jwt = await response.text();
        callback(null, jwt);
      } catch (error) {
        callback(error, null);
      }
    },
  });
}

/** Rejects after PATIENCE_MS if `promise` has not settled. */
function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${PATIENCE_MS} ms`)), PATIENCE_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Drives one recipe for `user`: connect, publish and receive on a channel
 * the policy grants, be refused one it does not, survive a forced expiry
 * through the recipe again. Resolves to what the test checks.
 */
async function drive(recipe, user) {
  const calls = [];
  const realtime = recipe(sameOriginFetch(user), calls);
  try {
    await reach(realtime.connection, 'connected');
    const credential = realtime.auth.tokenDetails.token;
    const channel = realtime.channels.get(`chat:recipe-${user}`);
    const received = new Promise((resolve) => channel.subscribe('hello', resolve));
    await within(channel.attach(), 'attach');
    await within(channel.publish('hello', { from: user }), 'publish');
    const message = await within(received, 'the message');
    let refusal = null;
    try {
      await within(realtime.channels.get('ops:deploys').attach(), 'refused attach');
    } catch (err) {
      refusal = err.code;
    }
    // The mock expires the credential: ably-js calls the recipe again.
    const id = realtime.connection.id;
    const disconnected = new Promise((resolve) => realtime.connection.once('disconnected', resolve));
    await control(pair.mockUrl, 'expire-credentials');
    const change = await within(disconnected, 'the disconnection');
    await reach(realtime.connection, 'connected');
    return {
      credential,
      renewed: realtime.auth.tokenDetails.token !== credential,
      expiredWith: change.reason.code,
      resumed: realtime.connection.id === id,
      clientId: realtime.auth.clientId,
      message: { data: message.data, clientId: message.clientId },
      refusal,
      calls: calls.length,
    };
  } finally {
    realtime.close();
  }
}

test("Ably's recipe on /api/ably-token: the bare token from response.text(), with a cookie session", async () => {
  const issued = await authCounter(pair.authUrl, 'auth_tokens_issued_total{kind="token"}');

  const result = await drive(tokenRecipe, 'alice');

  // A token Ably (the mock) issued, not JSON and not a JWT.
  assert.doesNotMatch(result.credential, /^[{"]/);
  assert.equal(result.credential.split('.').length, 2, result.credential);
  assert.deepEqual(
    { ...result, credential: undefined },
    {
      credential: undefined,
      renewed: true,
      expiredWith: 40142,
      resumed: true,
      clientId: 'alice',
      message: { data: { from: 'alice' }, clientId: 'alice' },
      refusal: 40160,
      calls: 2,
    },
  );
  assert.equal(await authCounter(pair.authUrl, 'auth_tokens_issued_total{kind="token"}'), issued + 2);
});

test("Ably's recipe on /api/ably-jwt: the JWT from response.text(), with a cookie session", async () => {
  const issued = await authCounter(pair.authUrl, 'auth_tokens_issued_total{kind="jwt"}');

  const result = await drive(jwtRecipe, 'bob');

  const claims = jwtPayload(result.credential);
  assert.equal(claims['x-ably-clientId'], 'bob');
  assert.equal(claims['x-ably-capability'], '{"chat:*":["history","publish","subscribe"],"private:bob":["*"]}');
  assert.deepEqual(
    { ...result, credential: undefined },
    {
      credential: undefined,
      renewed: true,
      expiredWith: 40142,
      resumed: true,
      clientId: 'bob',
      message: { data: { from: 'bob' }, clientId: 'bob' },
      refusal: 40160,
      calls: 2,
    },
  );
  assert.equal(await authCounter(pair.authUrl, 'auth_tokens_issued_total{kind="jwt"}'), issued + 2);
});

test('without the cookie the recipe fails with the callback error, and the auth server says why', async () => {
  const calls = [];
  const noCookie = (path, init = {}) =>
    globalThis.fetch(new URL(path, pair.authUrl), { ...init, signal: AbortSignal.timeout(PATIENCE_MS) });
  const response = await noCookie('/api/ably-token');
  assert.equal(response.status, 401);
  assert.equal(
    (await response.json()).error.message,
    'no app token: send Authorization: Bearer <app JWT> or the session cookie',
  );

  const realtime = tokenRecipe(noCookie, calls);
  try {
    const change = await reach(realtime.connection, 'disconnected');
    // ably-js: "authentication provider request failed", caused by the
    // callback's error (40170).
    assert.equal(change.reason.code, 80019);
    assert.equal(change.reason.cause.code, 40170);
    assert.equal(calls.length, 1);
  } finally {
    realtime.close();
  }
});
