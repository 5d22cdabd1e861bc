// Every delta mock-ably sends on a `delta=vcdiff` stream, applied by Ably's
// own decoder (@ably/vcdiff-decoder), gives exactly the payload that a plain
// stream on the same channels carries for that message.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';

import { KEY, PATIENCE_MS, publish, startPair } from './harness.mjs';

const vcdiff = createRequire(import.meta.url)('@ably/vcdiff-decoder');
const ROUNDS = 40;
const CHANNELS = ['delta:json', 'delta:text', 'delta:binary'];

let pair;
before(async () => {
  pair = await startPair();
});
after(() => pair?.stop());

/** Opens an SSE stream on the mock; `take(n)` resolves to the next n messages. */
async function openStream(query) {
  const signal = AbortSignal.timeout(PATIENCE_MS);
  const params = new URLSearchParams({ v: '1.2', channels: CHANNELS.join(','), key: KEY, ...query });
  const response = await fetch(`${pair.mockUrl}/sse?${params}`, {
    headers: { accept: 'text/event-stream' },
    signal,
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'text/event-stream');
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  return {
    async take(n) {
      const messages = [];
      while (messages.length < n) {
        let end;
        while (messages.length < n && (end = buffer.indexOf('\n\n')) >= 0) {
          const lines = buffer.slice(0, end).split('\n');
          buffer = buffer.slice(end + 2);
          if (!lines.includes('event: message')) continue;
          const data = lines.find((line) => line.startsWith('data: '));
          messages.push(JSON.parse(data.slice('data: '.length)));
        }
        if (messages.length === n) break;
        const { value, done } = await reader.read();
        if (done) throw new Error(`the stream ended after ${messages.length} of ${n} messages`);
        buffer += decoder.decode(value, { stream: true });
      }
      return messages;
    },
    close: () => reader.cancel(),
  };
}

/** A message's payload bytes with every encoding step but the last one undone (RTL19/RTL20). */
function payloadBytes(message) {
  return message.encoding?.endsWith('base64') ? Buffer.from(message.data, 'base64') : Buffer.from(message.data, 'utf8');
}

/** A deterministic byte pattern, changed a little each round. */
function blob(round) {
  const bytes = Buffer.alloc(2000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + (i % 13 === round % 13 ? round : 0)) % 256;
  return bytes;
}

test("Ably's vcdiff decoder turns every delta into the plain stream's payload", async () => {
  // Both streams are attached once their 200 is in: every later publish reaches both.
  const deltas = await openStream({ delta: 'vcdiff' });
  const plain = await openStream({});

  const doc = { title: 'scores '.repeat(8), players: [] };
  for (let i = 0; i < 30; i++) doc.players.push({ name: `player-${i}`, score: i * 10 });
  const text = 'lorem ipsum dolor sit amet, consectetur adipiscing elit '.repeat(10);
  for (let round = 0; round < ROUNDS; round++) {
    doc.players[round % 30].score += round;
    doc.round = round;
    await publish(pair.mockUrl, 'delta:json', { name: 'scores', data: doc });
    await publish(pair.mockUrl, 'delta:text', { data: text.replace('lorem', `lorem ${round}`) + String(round).repeat(round) });
    await publish(pair.mockUrl, 'delta:binary', { data: blob(round).toString('base64'), encoding: 'base64' });
  }
  const total = CHANNELS.length * ROUNDS;
  const [withDeltas, withoutDeltas] = await Promise.all([deltas.take(total), plain.take(total)]);
  await Promise.all([deltas.close(), plain.close()]);

  assert.equal(withoutDeltas.filter((m) => m.extras?.delta).length, 0, 'the plain stream carries no delta');
  const expected = new Map(withoutDeltas.map((m) => [m.id, { channel: m.channel, payload: payloadBytes(m) }]));
  const bases = new Map();
  let applied = 0;
  for (const message of withDeltas) {
    let payload;
    if (message.extras?.delta) {
      const base = bases.get(message.channel);
      assert.equal(message.extras.delta.format, 'vcdiff');
      assert.equal(message.extras.delta.from, base.id, `${message.id}: a delta from the previous message`);
      assert.match(message.encoding, /(^|\/)vcdiff\/base64$/, `${message.id}: encoding ${message.encoding}`);
      const delta = new Uint8Array(Buffer.from(message.data, 'base64'));
      payload = Buffer.from(vcdiff.decode(delta, new Uint8Array(base.payload)));
      applied += 1;
    } else {
      payload = payloadBytes(message);
    }
    const want = expected.get(message.id);
    assert.ok(want, `${message.id} is on the plain stream too`);
    assert.equal(message.channel, want.channel);
    assert.ok(payload.equals(want.payload), `${message.channel} ${message.id}: the decoded payload differs`);
    bases.set(message.channel, { id: message.id, payload });
  }
  assert.equal(expected.size, total);
  // The first message on each channel is full; small edits after it become deltas.
  assert.equal(applied, CHANNELS.length * (ROUNDS - 1));
});
