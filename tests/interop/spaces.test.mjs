// @ably/spaces 0.5.2 (pinned in package-lock.json) on ably-js 2 `Realtime`
// in Node with its default options (msgpack), against mock-ably. Every
// client holds a token our auth server issued through the seeds'
// authCallback recipe; the auth server's policy grants the spaces with its
// `spaces` shorthand (role `team` in harness.mjs), which gives each space
// `S` the channels `S::$space` and `S::$cursors`. Covers the SDK's four
// areas (members, locations, locks, cursors), a user the policy does not
// give the space, and a run of short tokens renewed while cursors move.
// What the SDK does on the wire, and the behaviours the tests wait around,
// are in `docs/real-clients.md#the-spaces-sdk`.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, afterEach, before, test } from 'node:test';

import { PATIENCE_MS, Recorder, authCallback, control, reach, realtimeOptions, startPair } from './harness.mjs';

const require = createRequire(import.meta.url);
const Ably = require('ably');
const { default: Spaces } = require('@ably/spaces');

let pair;
before(async () => {
  pair = await startPair();
});
after(() => pair?.stop());

/**
 * Every Realtime client a test opened; closed after each test, together.
 * The SDK answers every presence event with a `presence.get()` it neither
 * awaits nor catches, so the leave of one client that reaches another while
 * that one is closing rejects there with 80017 (connection closed), at a
 * time no test controls. For the whole file those are let go; anything else
 * unhandled fails the next test to end (or the file).
 */
const opened = [];
const unexpected = [];
let restoreRejections;
before(() => {
  const previous = process.listeners('unhandledRejection');
  process.removeAllListeners('unhandledRejection');
  process.on('unhandledRejection', (err) => {
    if (err?.code !== 80017) unexpected.push(err);
  });
  restoreRejections = () => {
    process.removeAllListeners('unhandledRejection');
    for (const listener of previous) process.on('unhandledRejection', listener);
  };
});
after(() => {
  restoreRejections?.();
  assert.deepEqual(unexpected, []);
});
afterEach(async () => {
  const closing = opened.splice(0).map(async (realtime) => {
    realtime.close();
    await reach(realtime.connection, 'closed');
  });
  await Promise.all(closing);
  // Unhandled rejections are reported once the microtasks run dry.
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(unexpected.splice(0), []);
});

/**
 * A Spaces user: an ably-js Realtime client on its defaults, authenticated
 * by our auth server as `user` (with `roles`; `query` narrows the token),
 * and the space `name` from `new Spaces(realtime).get(name, options)`.
 */
async function join(user, name, { roles = ['team'], query, options, onToken } = {}) {
  const realtime = new Ably.Realtime(
    realtimeOptions(pair.mockUrl, {
      authCallback: authCallback(pair.authUrl, user, { roles, query, onToken }),
    }),
  );
  opened.push(realtime);
  const space = await new Spaces(realtime).get(name, options);
  return { user, realtime, space, id: () => realtime.connection.id };
}

/** Records `emitter`'s `events` (a Spaces emitter) as `{ event, ...data }`. */
function record(emitter, events) {
  const recorder = new Recorder();
  for (const event of events) {
    emitter.subscribe(event, (data) => recorder.push({ event, at: Date.now(), ...data }));
  }
  return recorder;
}

/** `members` as clientId → profileData, for comparing views of a space. */
function profiles(members) {
  return Object.fromEntries(
    members.map((m) => [m.clientId, m.profileData]).sort(([a], [b]) => a.localeCompare(b)),
  );
}

/**
 * Resolves once `space`'s cursors channel has `count` members present. The
 * SDK publishes cursor positions only while more than one member is there
 * (it decides on each presence event, after a `presence.get()`; this one,
 * made after its own, resolves after it).
 */
async function cursorsPresent(space, count) {
  const channel = space.cursors.channel;
  const events = new Recorder();
  channel.presence.subscribe(events.push);
  let members = await channel.presence.get();
  while (members.length < count) {
    const seen = events.events.length;
    await events.until(`presence on ${channel.name} (${members.length} of ${count})`, () => true, seen);
    members = await channel.presence.get();
  }
  channel.presence.unsubscribe(events.push);
}

test('members: enter, updateProfileData, getAll/getSelf/getOthers, a late joiner, leave and remove after offlineTimeout', async () => {
  const offlineTimeout = 1_000;
  const options = { offlineTimeout };
  const alice = await join('alice', 'members', { options });
  const bob = await join('bob', 'members', { options });
  const seenByAlice = record(alice.space.members, ['enter', 'updateProfile', 'leave', 'remove']);
  const seenByBob = record(bob.space.members, ['enter', 'updateProfile', 'leave', 'remove']);

  const first = await alice.space.enter({ name: 'Alice' });
  assert.deepEqual(first, [
    {
      clientId: 'alice',
      connectionId: alice.id(),
      isConnected: true,
      profileData: { name: 'Alice' },
      location: null,
      lastEvent: first[0].lastEvent,
    },
  ]);
  assert.deepEqual(profiles(await bob.space.enter({ name: 'Bob' })), {
    alice: { name: 'Alice' },
    bob: { name: 'Bob' },
  });
  const bobEntered = await seenByAlice.until("bob's enter", (e) => e.event === 'enter' && e.clientId === 'bob');
  assert.equal(bobEntered.connectionId, bob.id());
  assert.deepEqual(bobEntered.profileData, { name: 'Bob' });

  await alice.space.updateProfileData((profile) => ({ ...profile, color: 'red' }));
  const updated = await seenByBob.until(
    "alice's profile update",
    (e) => e.event === 'updateProfile' && e.clientId === 'alice' && e.profileData.color,
  );
  assert.deepEqual(updated.profileData, { name: 'Alice', color: 'red' });
  const self = await alice.space.members.getSelf();
  assert.deepEqual([self.clientId, self.connectionId, self.profileData], [
    'alice',
    alice.id(),
    { name: 'Alice', color: 'red' },
  ]);
  assert.deepEqual(
    (await alice.space.members.getOthers()).map((m) => [m.clientId, m.connectionId, m.isConnected]),
    [['bob', bob.id(), true]],
  );
  assert.deepEqual(profiles(await bob.space.members.getAll()), {
    alice: { name: 'Alice', color: 'red' },
    bob: { name: 'Bob' },
  });

  // A late joiner gets everyone's profile from the SYNC, as last updated.
  const carol = await join('carol', 'members', { options });
  assert.deepEqual(profiles(await carol.space.enter({ name: 'Carol' })), {
    alice: { name: 'Alice', color: 'red' },
    bob: { name: 'Bob' },
    carol: { name: 'Carol' },
  });

  // Bob leaves: a leave at once (still listed, not connected), then the
  // SDK's own `remove` once offlineTimeout has passed.
  await bob.space.leave({ name: 'Bob', status: 'gone' });
  const left = await seenByAlice.until("bob's leave", (e) => e.event === 'leave' && e.clientId === 'bob');
  assert.equal(left.isConnected, false);
  assert.deepEqual(left.profileData, { name: 'Bob', status: 'gone' });
  const listed = (await alice.space.members.getAll()).find((m) => m.clientId === 'bob');
  assert.equal(listed?.isConnected, false, 'a leaver stays listed until offlineTimeout');
  const removed = await seenByAlice.until("bob's remove", (e) => e.event === 'remove' && e.clientId === 'bob');
  assert.ok(removed.at - left.at >= offlineTimeout - 50, `removed ${removed.at - left.at} ms after leaving`);
  assert.deepEqual(profiles(await alice.space.members.getAll()), {
    alice: { name: 'Alice', color: 'red' },
    carol: { name: 'Carol' },
  });
  // Nobody left or came back but bob.
  assert.deepEqual(
    seenByAlice.events.filter((e) => e.event !== 'updateProfile').map((e) => `${e.event} ${e.clientId}`),
    ['enter alice', 'enter bob', 'enter carol', 'leave bob', 'remove bob'],
  );
});

test('locations: set, subscribe across clients, getAll, and a late joiner sees them', async () => {
  const alice = await join('alice', 'locations');
  const bob = await join('bob', 'locations');
  await alice.space.enter({ name: 'Alice' });
  await bob.space.enter({ name: 'Bob' });
  const seenByBob = new Recorder();
  bob.space.locations.subscribe('update', seenByBob.push);

  await alice.space.locations.set({ slide: 1 });
  const first = await seenByBob.until('the first location', (e) => e.member.clientId === 'alice');
  assert.deepEqual([first.currentLocation, first.previousLocation], [{ slide: 1 }, null]);
  await alice.space.locations.set({ slide: 2, element: 'title' });
  const second = await seenByBob.until('the second location', (e) => e.currentLocation?.slide === 2);
  assert.deepEqual([second.currentLocation, second.previousLocation], [{ slide: 2, element: 'title' }, { slide: 1 }]);
  assert.equal(second.member.connectionId, alice.id());

  assert.deepEqual(await bob.space.locations.getAll(), {
    [alice.id()]: { slide: 2, element: 'title' },
    [bob.id()]: null,
  });
  assert.deepEqual(await alice.space.locations.getSelf(), { slide: 2, element: 'title' });
  assert.deepEqual(await bob.space.locations.getOthers(), { [alice.id()]: { slide: 2, element: 'title' } });

  const carol = await join('carol', 'locations');
  await carol.space.enter({ name: 'Carol' });
  assert.deepEqual(await carol.space.locations.getAll(), {
    [alice.id()]: { slide: 2, element: 'title' },
    [bob.id()]: null,
    [carol.id()]: null,
  });
});

test('locks: contention decided the same way on both members, release, get, and acquire again', async () => {
  const alice = await join('alice', 'locks');
  const bob = await join('bob', 'locks');
  await alice.space.enter({ name: 'Alice' });
  await bob.space.enter({ name: 'Bob' });
  const seen = { alice: new Recorder(), bob: new Recorder() };
  alice.space.locks.subscribe('update', seen.alice.push);
  bob.space.locks.subscribe('update', seen.bob.push);

  // Both ask at once. The SDK decides from presence, on each client: the
  // earlier request wins, a tie going to the smaller connectionId.
  const attributes = { component: 'title' };
  const [asked, rival] = await Promise.all([
    alice.space.locks.acquire('title', { attributes }),
    bob.space.locks.acquire('title', { attributes }),
  ]);
  assert.deepEqual([asked.status, rival.status], ['pending', 'pending']);
  const aliceFirst =
    asked.timestamp < rival.timestamp ||
    (asked.timestamp === rival.timestamp && alice.id() < bob.id());
  const [winner, loser] = aliceFirst ? [alice, bob] : [bob, alice];
  // Each has seen both requests come back (each one's status moves off
  // `pending` on both, so each makes an update event on both).
  for (const member of [alice, bob]) {
    for (const requester of ['alice', 'bob']) {
      await seen[member.user].until(
        `${requester}'s request at ${member.user}`,
        (lock) => lock.id === 'title' && lock.member.clientId === requester,
      );
    }
  }
  for (const member of [alice, bob]) {
    const held = member.space.locks.get('title');
    assert.equal(held?.status, 'locked', `${member.user} sees it locked`);
    assert.equal(held.member.clientId, winner.user, `${member.user} agrees ${winner.user} holds it`);
    assert.equal(held.member.connectionId, winner.id());
    assert.deepEqual(held.attributes, attributes);
  }
  assert.deepEqual((await winner.space.locks.getSelf()).map((lock) => lock.id), ['title']);
  assert.deepEqual(await loser.space.locks.getSelf(), []);
  assert.deepEqual((await loser.space.locks.getOthers()).map((lock) => lock.member.clientId), [winner.user]);

  // Release: unlocked for both; the other may then take it.
  const released = seen[loser.user].events.length;
  await winner.space.locks.release('title');
  await seen[loser.user].until(
    'the release',
    (lock) => lock.member.clientId === winner.user && lock.status === 'unlocked',
    released,
  );
  assert.equal(winner.space.locks.get('title'), undefined);
  assert.equal(loser.space.locks.get('title'), undefined);
  const before = { alice: seen.alice.events.length, bob: seen.bob.events.length };
  await loser.space.locks.acquire('title');
  for (const member of [alice, bob]) {
    await seen[member.user].until(
      `${loser.user}'s second request at ${member.user}`,
      (lock) => lock.member.clientId === loser.user && lock.status === 'locked',
      before[member.user],
    );
  }
  for (const member of [alice, bob]) {
    assert.equal(member.space.locks.get('title')?.member.clientId, loser.user, `${member.user} after the release`);
  }
});

test('cursors: set on one client reaches the other in order, and getAll reads the last position from history', async () => {
  const alice = await join('alice', 'cursors');
  const bob = await join('bob', 'cursors');
  await alice.space.enter({ name: 'Alice' });
  await bob.space.enter({ name: 'Bob' });
  const seenByBob = new Recorder();
  // Subscribing enters the cursors channel's presence.
  bob.space.cursors.subscribe('update', seenByBob.push);
  alice.space.cursors.subscribe('update', () => {});
  await cursorsPresent(alice.space, 2);

  const positions = [
    { x: 10, y: 20 },
    { x: 11, y: 22 },
    { x: 12, y: 24 },
  ];
  for (const position of positions) {
    await alice.space.cursors.set({ position, data: { color: 'red' } });
  }
  await seenByBob.until('the last position', (update) => update.clientId === 'alice' && update.position.x === 12);
  const fromAlice = seenByBob.events.filter((update) => update.clientId === 'alice');
  assert.deepEqual(
    fromAlice.map((update) => update.position),
    positions,
  );
  for (const update of fromAlice) {
    assert.equal(update.connectionId, alice.id());
    assert.deepEqual(update.data, { color: 'red' });
  }

  // getAll: cursors-channel presence, then history's current page
  // (`Link: …; rel="current"`) in msgpack.
  assert.deepEqual(await bob.space.cursors.getAll(), {
    [alice.id()]: { clientId: 'alice', connectionId: alice.id(), position: { x: 12, y: 24 }, data: { color: 'red' } },
    [bob.id()]: null,
  });
  assert.deepEqual((await alice.space.cursors.getSelf()).position, { x: 12, y: 24 });
});

/**
 * Runs `body` with unhandled rejections handed to `onRejection` rather than
 * failing the run: Spaces 0.5 calls `presence.enter()` without awaiting or
 * catching it, so a refused enter surfaces only as an unhandled rejection
 * and `space.enter()` never settles.
 */
async function withUnhandledRejections(onRejection, body) {
  const previous = process.listeners('unhandledRejection');
  process.removeAllListeners('unhandledRejection');
  process.on('unhandledRejection', onRejection);
  try {
    return await body();
  } finally {
    process.removeAllListeners('unhandledRejection');
    for (const listener of previous) process.on('unhandledRejection', listener);
  }
}

test('a user without the space is refused with 40160, and space.enter() never settles', async () => {
  const cases = [
    // Not in the policy's `spaces` at all: the space channel's ATTACH is refused.
    { user: 'outsider', options: { roles: [] }, channel: 'failed' },
    // Granted the space, but a token narrowed to subscribe on it: attached,
    // and the presence enter is NACKed.
    {
      user: 'watcher',
      options: { query: { capability: { 'members::$space': ['subscribe'] } } },
      channel: 'attached',
    },
  ];
  for (const { user, options, channel } of cases) {
    const refused = await join(user, 'members', options);
    await reach(refused.realtime.connection, 'connected');
    const rejections = new Recorder();
    await withUnhandledRejections(rejections.push, async () => {
      let settled = false;
      refused.space.enter({ name: user }).finally(() => {
        settled = true;
      });
      const reason = await rejections.until(`${user}'s refusal`, (err) => err?.code === 40160);
      assert.equal(reason.statusCode, 401);
      assert.equal(settled, false, `${user}: space.enter() settled`);
    });
    assert.equal(refused.space.channel.state, channel, user);
    assert.equal(refused.realtime.connection.state, 'connected', user);
    const rest = new Ably.Rest(
      realtimeOptions(pair.mockUrl, { authCallback: authCallback(pair.authUrl, 'alice', { roles: ['team'] }) }),
    );
    const present = await rest.channels.get('members::$space').presence.get();
    assert.deepEqual(present.items.filter((m) => m.clientId === user), [], `${user} is not present`);
  }
});

// Six-second tokens for INTEROP_SOAK_MS (40 s by default) while two members
// move their cursors every 100 ms, and every 7 s a forced expiry (40142:
// renew and resume) or a dropped socket (resume) on top of the AUTH
// renewals: each connection keeps its id, each re-attach's SYNC carries the
// members with their ids, so no member leaves or re-enters, and every
// position one sets reaches the other, in order.
test('a renewal run: 6 s tokens, expiries and drops while two members move cursors, nobody leaves, nothing lost', async () => {
  const soakMs = Number(process.env.INTEROP_SOAK_MS ?? 40_000);
  const tokens = { alice: 0, bob: 0 };
  const member = (user) =>
    join(user, 'renewal', {
      query: { ttl: 6_000 },
      options: { offlineTimeout: 1_000 },
      onToken: () => {
        tokens[user] += 1;
      },
    });
  const alice = await member('alice');
  const bob = await member('bob');
  await alice.space.enter({ name: 'Alice' });
  await bob.space.enter({ name: 'Bob' });
  const ids = [alice.id(), bob.id()];
  const changes = ['enter', 'leave', 'remove'];
  const membership = { alice: record(alice.space.members, changes), bob: record(bob.space.members, changes) };
  const cursors = { alice: new Recorder(), bob: new Recorder() };
  alice.space.cursors.subscribe('update', cursors.alice.push);
  bob.space.cursors.subscribe('update', cursors.bob.push);
  await cursorsPresent(alice.space, 2);
  await cursorsPresent(bob.space, 2);
  const startEvents = { alice: membership.alice.events.length, bob: membership.bob.events.length };

  const sent = { alice: [], bob: [] };
  const started = Date.now();
  let i = 0;
  await new Promise((resolve, reject) => {
    const ticker = setInterval(() => {
      const position = { x: i, y: 2 * i };
      i += 1;
      Promise.all([
        alice.space.cursors.set({ position }).then(() => sent.alice.push(position)),
        bob.space.cursors.set({ position }).then(() => sent.bob.push(position)),
      ]).catch(reject);
      if (Date.now() - started >= soakMs) {
        clearInterval(ticker);
        clearInterval(faulter);
        resolve();
      }
    }, 100);
    let fault = 0;
    const faulter = setInterval(() => {
      control(pair.mockUrl, ['expire-credentials', 'drop-streams'][fault % 2]).catch(reject);
      fault += 1;
    }, 7_000);
  });
  const last = i - 1;
  await cursors.bob.until("alice's last position", (u) => u.clientId === 'alice' && u.position.x === last);
  await cursors.alice.until("bob's last position", (u) => u.clientId === 'bob' && u.position.x === last);

  const from = (recorder, user) => recorder.events.filter((u) => u.clientId === user).map((u) => u.position);
  assert.deepEqual(from(cursors.bob, 'alice'), sent.alice);
  assert.deepEqual(from(cursors.alice, 'bob'), sent.bob);
  assert.equal(sent.alice.length, i);
  assert.deepEqual(membership.alice.events.slice(startEvents.alice), [], 'alice saw no member leave or enter');
  assert.deepEqual(membership.bob.events.slice(startEvents.bob), [], 'bob saw no member leave or enter');
  assert.deepEqual([alice.id(), bob.id()], ids);
  assert.deepEqual(
    profiles(await alice.space.members.getAll()).bob,
    { name: 'Bob' },
  );
  // Renewed well beyond the first token (AUTH at half of a 6 s life).
  const renewals = Math.floor(soakMs / 6_000);
  assert.ok(tokens.alice >= renewals && tokens.bob >= renewals, JSON.stringify(tokens));
});
