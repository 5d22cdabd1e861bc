// Revocation through the auth server, seen by ably-js 2 `Realtime` (Node):
// a connection authenticated by the seeds' authCallback recipe (fetch the
// auth server's /api/ably-jwt, hand `response.text()` to ably-js) is
// revoked with the auth server's `POST /api/revoke` after a policy reload
// (SIGHUP). mock-ably disconnects it with 40141 within a second; ably-js
// treats that as a token error, calls the recipe again and resumes under
// the new policy, or, when the auth server now refuses the user, stays out.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';

import { PATIENCE_MS, Recorder, ablyOptions, appToken, fetchWithin, publish, startPair } from './harness.mjs';

const Ably = createRequire(import.meta.url)('ably');

/** How soon after the revocation the connection must be cut. */
const CUT_OFF_WITHIN_MS = 1000;

/** The reloaded policy where users may only read chat:*. */
const READ_ONLY = `
[default]
"chat:*" = ["subscribe"]

[roles.ops]
"ops:*" = ["*"]
`;

/** The reloaded policy that grants ordinary users nothing. */
const OPS_ONLY = `
[roles.ops]
"ops:*" = ["*"]
`;

let pair;
before(async () => {
  pair = await startPair({ env: { AUTH_ADMIN_ROLE: 'ops' } });
});
after(() => pair?.stop());

/** A Realtime client for `user`, authenticated by the seeds' recipe. */
function realtimeFor(user) {
  const login = appToken(user);
  const { useBinaryProtocol: _json, ...options } = ablyOptions(pair.mockUrl);
  return new Ably.Realtime({
    ...options,
    authCallback: async (_params, callback) => {
      try {
        const response = await fetch(new URL('/api/ably-jwt', pair.authUrl), {
          headers: { Authorization: `Bearer ${login}` },
        });
        if (!response.ok) throw new Error('Auth failed');
        callback(null, await response.text());
      } catch (error) {
        callback(error, null);
      }
    },
  });
}

/** Revokes `clientId` through the auth server, as an admin (role `ops`). */
async function revoke(clientId) {
  const response = await fetchWithin(new URL('/api/revoke', pair.authUrl), {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${appToken('olga', { roles: ['ops'] })}`,
      'Content-Type': 'application/json',
    },
    body: JSON.stringify({ clientId }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  assert.equal(body.successCount, 1, JSON.stringify(body));
}

/** The next `state` change of `connection`, or a failure after PATIENCE_MS. */
function next(connection, state) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`still ${connection.state}, not ${state}, after ${PATIENCE_MS} ms`)),
      PATIENCE_MS,
    );
    connection.once(state, (change) => {
      clearTimeout(timer);
      resolve(change);
    });
  });
}

/** Resolves with the next message on `channel` named `name`. */
function message(channel, name) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name} within ${PATIENCE_MS} ms`)), PATIENCE_MS);
    channel.subscribe(name, (received) => {
      clearTimeout(timer);
      resolve(received);
    });
  });
}

test('a revoked connection is cut with 40141 within a second, renews and resumes under the reloaded policy', async () => {
  const realtime = realtimeFor('carol');
  try {
    await next(realtime.connection, 'connected');
    const id = realtime.connection.id;
    const channel = realtime.channels.get('chat:revoked');
    await channel.attach();
    await channel.publish('mine', 'allowed before');

    await pair.reloadPolicy(READ_ONLY);
    const cut = next(realtime.connection, 'disconnected');
    const during = message(channel, 'during');
    const revokedAt = Date.now();
    await revoke('carol');
    await publish(pair.mockUrl, 'chat:revoked', [{ name: 'during', data: 'published after the revocation' }]);

    const change = await cut;
    assert.equal(change.reason.code, 40141);
    assert.ok(Date.now() - revokedAt < CUT_OFF_WITHIN_MS, `cut after ${Date.now() - revokedAt} ms`);
    await next(realtime.connection, 'connected');
    // Resumed (RTN15c6): the same connection, and nothing lost.
    assert.equal(realtime.connection.id, id);
    assert.equal((await during).data, 'published after the revocation');
    // The new rights: reading only.
    await assert.rejects(channel.publish('mine', 'refused now'), (err) => err.code === 40160);
  } finally {
    realtime.close();
  }
});

test('a revoked connection the reloaded policy refuses stays out and receives nothing after the revocation', async () => {
  const realtime = realtimeFor('dave');
  try {
    await next(realtime.connection, 'connected');
    const channel = realtime.channels.get('chat:out');
    await channel.attach();
    const received = [];
    channel.subscribe((m) => received.push(m.data));

    await pair.reloadPolicy(OPS_ONLY);
    // Every disconnection from here on, so the refused renewal's (which can
    // follow the cut at once) is not missed.
    const cuts = new Recorder();
    realtime.connection.on('disconnected', cuts.push);
    const revokedAt = Date.now();
    await revoke('dave');
    await publish(pair.mockUrl, 'chat:out', [{ name: 'after', data: 'not for dave' }]);

    const change = await cuts.until('the cut');
    assert.equal(change.reason.code, 40141);
    assert.ok(Date.now() - revokedAt < CUT_OFF_WITHIN_MS, `cut after ${Date.now() - revokedAt} ms`);
    // The renewal is refused (the recipe's callback fails on the 403): ably-js
    // stays disconnected, retrying later, and never gets back in.
    const refused = await cuts.until('the refused renewal', () => true, 1);
    assert.notEqual(realtime.connection.state, 'connected');
    assert.notEqual(refused.reason?.code, 40141, 'the second cut is the refused renewal');
    assert.deepEqual(received, []);
  } finally {
    realtime.close();
  }
});
