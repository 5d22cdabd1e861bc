// ably-js 2 `Realtime` (Node) against mock-ably's WebSocket: connecting,
// renewal with resume, channels and messages (presence comes later). Each
// test runs with the Node default (msgpack) and again with
// `useBinaryProtocol: false` (JSON). Token clients are authenticated by our
// auth server through the seeds' own authCallback recipe: fetch the auth
// endpoint with the user's login and hand `response.text()` to ably-js.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import {
  KEY,
  PATIENCE_MS,
  authCallback,
  control,
  mockStats,
  publish,
  reach,
  realtimeOptions,
  startPair,
} from './harness.mjs';

const Ably = createRequire(import.meta.url)('ably');
const vcdiff = createRequire(import.meta.url)('@ably/vcdiff-decoder');

let pair;
before(async () => {
  pair = await startPair();
});
after(() => pair?.stop());

/** Realtime options for the mock (the harness's), in the given format. */
function options(binary, extra = {}) {
  const options = realtimeOptions(pair.mockUrl, extra);
  if (!binary) options.useBinaryProtocol = false;
  return options;
}

/**
 * Options for `user` whose authCallback is the seeds' recipe at our auth
 * server (the harness's `authCallback`); `query` narrows the token.
 */
function tokenAuth(binary, user, query = {}, onToken = () => {}) {
  return options(binary, { authCallback: authCallback(pair.authUrl, user, { query, onToken }) });
}

for (const binary of [true, false]) {
  const format = binary ? 'msgpack (the Node default)' : 'JSON (useBinaryProtocol: false)';

  test(`a key connects, pings and closes in ${format}`, async () => {
    const realtime = new Ably.Realtime(options(binary, { key: KEY, clientId: 'alice' }));
    try {
      await reach(realtime.connection, 'connected');
      assert.match(realtime.connection.id, /^[A-Za-z0-9_-]+$/);
      assert.ok(realtime.connection.key.startsWith(`${realtime.connection.id}!`));
      assert.equal(realtime.auth.clientId, 'alice');
      const rtt = await realtime.connection.ping();
      assert.ok(rtt >= 0, `ping ${rtt}`);
      assert.equal((await mockStats(pair.mockUrl)).openConnections, 1);
    } finally {
      realtime.close();
    }
    await reach(realtime.connection, 'closed');
  });

  test(`a token-only client learns its clientId from CONNECTED in ${format}`, async () => {
    const realtime = new Ably.Realtime(tokenAuth(binary, 'tok-user'));
    try {
      await reach(realtime.connection, 'connected');
      assert.equal(realtime.auth.clientId, 'tok-user');
    } finally {
      realtime.close();
    }
    await reach(realtime.connection, 'closed');
  });

  test(`a wrong key fails the connection with 40101 in ${format}`, async () => {
    const realtime = new Ably.Realtime(
      options(binary, { key: 'interopApp.interopKey:wrong-secret' }),
    );
    try {
      const change = await reach(realtime.connection, 'failed');
      assert.equal(change.reason.code, 40101);
    } finally {
      realtime.close();
    }
  });

  test(`an expired token is renewed and the connection resumed in ${format}`, async () => {
    let tokens = 0;
    const realtime = new Ably.Realtime(
      tokenAuth(binary, 'renewer', {}, () => {
        tokens += 1;
      }),
    );
    try {
      await reach(realtime.connection, 'connected');
      const id = realtime.connection.id;
      const disconnected = new Promise((resolve) => realtime.connection.once('disconnected', resolve));
      await control(pair.mockUrl, 'expire-credentials');
      const change = await disconnected;
      assert.equal(change.reason.code, 40142);
      await reach(realtime.connection, 'connected');
      assert.equal(tokens, 2);
      // The resume kept the connection (RTN15c6).
      assert.equal(realtime.connection.id, id);
    } finally {
      realtime.close();
    }
    await reach(realtime.connection, 'closed');
  });

  test(`publish and subscribe across two clients, text, JSON and binary, in ${format}`, async () => {
    const alice = new Ably.Realtime(tokenAuth(binary, 'alice'));
    const bob = new Ably.Realtime(tokenAuth(binary, 'bob'));
    try {
      const channel = `chat:rt-${binary ? 'msgpack' : 'json'}`;
      const received = [];
      const all = new Promise((resolve) => {
        bob.channels.get(channel).subscribe((message) => {
          received.push(message);
          if (received.length === 3) resolve();
        });
      });
      await bob.channels.get(channel).attach();
      assert.equal(bob.channels.get(channel).state, 'attached');
      // What the auth server's policy grants on chat:* (no presence).
      assert.deepEqual(bob.channels.get(channel).modes.sort(), [
        'presence_subscribe',
        'publish',
        'subscribe',
      ]);
      // ably-js publishes without attaching first (RTL6c).
      const sent = alice.channels.get(channel);
      await sent.publish('text', 'hello');
      await sent.publish('object', { hello: 'world', n: [1, 2] });
      await sent.publish('binary', Buffer.from([1, 2, 3, 255]));
      await Promise.race([
        all,
        new Promise((_, reject) => setTimeout(() => reject(new Error(`got ${received.length} of 3`)), PATIENCE_MS)),
      ]);
      assert.deepEqual(
        received.map((m) => m.name),
        ['text', 'object', 'binary'],
      );
      assert.equal(received[0].data, 'hello');
      assert.deepEqual(received[1].data, { hello: 'world', n: [1, 2] });
      assert.deepEqual([...received[2].data], [1, 2, 3, 255]);
      for (const message of received) {
        assert.equal(message.clientId, 'alice');
        assert.equal(message.connectionId, alice.connection.id);
      }
      assert.equal(received[0].id, `${alice.connection.id}:0:0`);
    } finally {
      alice.close();
      bob.close();
    }
  });

  test(`attach and publish outside the capability are refused with 40160 in ${format}`, async () => {
    const realtime = new Ably.Realtime(
      tokenAuth(binary, 'limited', { capability: { 'chat:*': ['subscribe'] } }),
    );
    try {
      await reach(realtime.connection, 'connected');
      await assert.rejects(realtime.channels.get('secret').attach(), (err) => err.code === 40160);
      assert.equal(realtime.channels.get('secret').state, 'failed');
      await assert.rejects(
        realtime.channels.get('chat:ro').publish('x', 'y'),
        (err) => err.code === 40160,
      );
      await realtime.channels.get('chat:ro').attach();
      assert.equal(realtime.connection.state, 'connected');
    } finally {
      realtime.close();
    }
  });

  test(`force-auth renews through authCallback on the same connection in ${format}`, async () => {
    let tokens = 0;
    const realtime = new Ably.Realtime(
      tokenAuth(binary, 'forced', {}, () => {
        tokens += 1;
      }),
    );
    try {
      await reach(realtime.connection, 'connected');
      const id = realtime.connection.id;
      const updated = new Promise((resolve) => realtime.connection.once('update', resolve));
      await control(pair.mockUrl, 'force-auth');
      await Promise.race([
        updated,
        new Promise((_, reject) => setTimeout(() => reject(new Error('no update')), PATIENCE_MS)),
      ]);
      assert.equal(tokens, 2);
      assert.equal(realtime.connection.state, 'connected');
      assert.equal(realtime.connection.id, id);
    } finally {
      realtime.close();
    }
  });

  test(`delta: vcdiff channels decode with Ably's plugin to the published payloads in ${format}`, async () => {
    const realtime = new Ably.Realtime(options(binary, { key: KEY, plugins: { vcdiff } }));
    try {
      const name = `chat:deltas-${binary ? 'msgpack' : 'json'}`;
      const channel = realtime.channels.get(name, { params: { delta: 'vcdiff' } });
      const sent = Array.from({ length: 5 }, (_, i) => ({
        text: `a long enough payload that deltas pay off, repeated and repeated, number ${i}`,
        n: i,
      }));
      const received = [];
      const all = new Promise((resolve) => {
        channel.subscribe((message) => {
          received.push(message);
          if (received.length === sent.length) resolve();
        });
      });
      await channel.attach();
      for (const data of sent) await publish(pair.mockUrl, name, { name: 'd', data });
      await Promise.race([
        all,
        new Promise((_, reject) => setTimeout(() => reject(new Error(`got ${received.length}`)), PATIENCE_MS)),
      ]);
      assert.deepEqual(
        received.map((m) => m.data),
        sent,
      );
      assert.equal(channel.state, 'attached');
    } finally {
      realtime.close();
    }
  });
}

// A minute of 6 s tokens at 10 messages/s, through AUTH renewals, forced
// expiries and dropped sockets: the subscriber (msgpack) gets every message
// the publisher (JSON) sent exactly once and in order, and neither
// connection's id changes. INTEROP_SOAK_MS shortens it for a quick run.
test('a minute of renewals, expiries and drops loses, repeats and reorders nothing', async () => {
  const soakMs = Number(process.env.INTEROP_SOAK_MS ?? 60_000);
  const tokens = { pub: 0, sub: 0 };
  const client = (who, binary) =>
    new Ably.Realtime(
      tokenAuth(binary, `soak-${who}`, { ttl: 6_000 }, () => {
        tokens[who] += 1;
      }),
    );
  const publisher = client('pub', false);
  const subscriber = client('sub', true);
  try {
    await reach(publisher.connection, 'connected');
    await reach(subscriber.connection, 'connected');
    const ids = [publisher.connection.id, subscriber.connection.id];
    const received = [];
    const channel = subscriber.channels.get('chat:soak');
    channel.subscribe((message) => received.push(message.data.i));
    await channel.attach();

    const sent = [];
    const publishing = [];
    let i = 0;
    const faults = ['expire-credentials', 'drop-streams'];
    let fault = 0;
    const started = Date.now();
    await new Promise((resolve) => {
      const ticker = setInterval(() => {
        publishing.push(publisher.channels.get('chat:soak').publish('n', { i }));
        sent.push(i);
        i += 1;
        if (Date.now() - started >= soakMs) {
          clearInterval(ticker);
          clearInterval(faulter);
          resolve();
        }
      }, 100);
      const faulter = setInterval(() => {
        control(pair.mockUrl, faults[fault % faults.length]).catch(() => {});
        fault += 1;
      }, 7_000);
    });
    await Promise.all(publishing);
    const deadline = Date.now() + PATIENCE_MS;
    while (received.length < sent.length && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(received, sent);
    assert.deepEqual([publisher.connection.id, subscriber.connection.id], ids);
    // Renewed well beyond the first token (6 s tokens, AUTH at half-life).
    const renewals = Math.floor(soakMs / 6_000);
    assert.ok(tokens.pub >= renewals && tokens.sub >= renewals, JSON.stringify(tokens));
  } finally {
    publisher.close();
    subscriber.close();
  }
});

// A page reload, as Node can stage one: a child process connects, attaches,
// gets a message, prints its recovery key and is killed (no CLOSE, so the
// connection stays resumable). A new client with `recover` (RTN16) gets the
// same connection and, on the channel the key names, what was published
// while nobody was connected, and nothing it had already had.
test('recover after the process died keeps the connection and the channel position', async () => {
  const reloader = { ...options(true), key: KEY, clientId: 'reloader' };
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `
      import { createRequire } from 'node:module';
      const Ably = createRequire(process.cwd() + '/')('ably');
      const realtime = new Ably.Realtime(${JSON.stringify(reloader)});
      const channel = realtime.channels.get('recover:x');
      await channel.subscribe((message) => {
        console.log(JSON.stringify({ got: message.data, id: realtime.connection.id,
          key: realtime.connection.createRecoveryKey() }));
      });
      console.log('attached');
      `,
    ],
    { cwd: fileURLToPath(new URL('.', import.meta.url)), stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = [];
  const waitFor = (predicate) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child said ${lines}`)), PATIENCE_MS);
      const check = () => {
        const line = lines.find(predicate);
        if (line) {
          clearTimeout(timer);
          resolve(line);
        }
      };
      child.stdout.on('data', (chunk) => {
        lines.push(...chunk.toString().trim().split('\n'));
        check();
      });
      check();
    });
  let recovered;
  try {
    await waitFor((line) => line === 'attached');
    await publish(pair.mockUrl, 'recover:x', { data: 'one' });
    const { got, id, key } = JSON.parse(await waitFor((line) => line.startsWith('{')));
    assert.equal(got, 'one');
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    await publish(pair.mockUrl, 'recover:x', { data: 'two' });

    recovered = new Ably.Realtime({ ...reloader, recover: key });
    const received = [];
    const channel = recovered.channels.get('recover:x');
    const two = new Promise((resolve) =>
      channel.subscribe((message) => {
        received.push(message.data);
        resolve();
      }),
    );
    await reach(recovered.connection, 'connected');
    assert.equal(recovered.connection.id, id);
    assert.equal(recovered.connection.errorReason, null);
    await two;
    await publish(pair.mockUrl, 'recover:x', { data: 'three' });
    const deadline = Date.now() + PATIENCE_MS;
    while (received.length < 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(received, ['two', 'three']);
  } finally {
    child.kill('SIGKILL');
    recovered?.close();
  }
});
