// Applies every delta mock-ably sends with Ably's own decoder
// (@ably/vcdiff-decoder) and checks the results against history.
//
// Usage: node vcdiff-decoder.mjs BASE_URL KEY   (run.sh starts the mock)
import { createRequire } from 'node:module';

const vcdiff = createRequire(import.meta.url)('@ably/vcdiff-decoder');
const [base, key] = process.argv.slice(2);
const auth = 'Basic ' + Buffer.from(key).toString('base64');
const ROUNDS = 40;
const deadline = AbortSignal.timeout(20_000);

async function publish(channel, body) {
  const res = await fetch(`${base}/channels/${channel}/messages`, {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: deadline,
  });
  if (res.status !== 201) throw new Error(`publish: ${res.status} ${await res.text()}`);
}

async function history(channel) {
  const res = await fetch(`${base}/channels/${channel}/messages?direction=forwards&limit=1000`, {
    headers: { authorization: auth },
    signal: deadline,
  });
  return res.json();
}

// A deterministic byte pattern, changed a little each round.
function blob(round) {
  const bytes = Buffer.alloc(2000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + (i % 13 === round % 13 ? round : 0)) % 256;
  return bytes;
}

const stream = await fetch(
  `${base}/sse?v=1.2&channels=json,text,binary&delta=vcdiff&key=${encodeURIComponent(key)}`,
  { headers: { accept: 'text/event-stream' }, signal: deadline },
);
if (stream.status !== 200) throw new Error(`stream: ${stream.status}`);

const doc = { title: 'scores '.repeat(8), players: [] };
for (let i = 0; i < 30; i++) doc.players.push({ name: `player-${i}`, score: i * 10 });
const text = 'lorem ipsum dolor sit amet, consectetur adipiscing elit '.repeat(10);
for (let round = 0; round < ROUNDS; round++) {
  doc.players[round % 30].score += round;
  doc.round = round;
  await publish('json', { name: 'scores', data: doc });
  await publish('text', { data: text.replace('lorem', `lorem ${round}`) + String(round).repeat(round) });
  await publish('binary', { data: blob(round).toString('base64'), encoding: 'base64' });
}

// Read the stream until every message has arrived.
const messages = [];
const reader = stream.body.getReader();
const decoder = new TextDecoder();
let buffer = '';
while (messages.length < 3 * ROUNDS) {
  const { value, done } = await reader.read();
  if (done) throw new Error(`stream ended after ${messages.length} messages`);
  buffer += decoder.decode(value, { stream: true });
  let end;
  while ((end = buffer.indexOf('\n\n')) >= 0) {
    const event = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    const data = event.split('\n').find((line) => line.startsWith('data: '));
    if (event.includes('event: message') && data) messages.push(JSON.parse(data.slice(6)));
  }
}
await reader.cancel();

// RTL19/RTL20: per channel, the base is the last payload with only an
// outermost base64 undone; a delta must name that base's id.
const bases = {};
const decoded = {};
let deltas = 0;
for (const m of messages) {
  let payload;
  if (m.extras?.delta) {
    const baseEntry = bases[m.channel];
    if (m.extras.delta.format !== 'vcdiff') throw new Error(`format ${m.extras.delta.format}`);
    if (m.extras.delta.from !== baseEntry.id) throw new Error(`${m.id}: delta from the wrong base`);
    if (!m.encoding.endsWith('vcdiff/base64')) throw new Error(`${m.id}: encoding ${m.encoding}`);
    const delta = new Uint8Array(Buffer.from(m.data, 'base64'));
    payload = Buffer.from(vcdiff.decode(delta, new Uint8Array(baseEntry.payload)));
    deltas++;
  } else {
    payload = m.encoding?.endsWith('base64') ? Buffer.from(m.data, 'base64') : Buffer.from(m.data, 'utf8');
  }
  bases[m.channel] = { id: m.id, payload };
  (decoded[m.channel] ??= []).push(payload);
}

for (const channel of ['json', 'text', 'binary']) {
  const stored = await history(channel);
  if (stored.length !== ROUNDS) throw new Error(`${channel}: ${stored.length} messages in history`);
  stored.forEach((m, i) => {
    const full = m.encoding?.endsWith('base64') ? Buffer.from(m.data, 'base64') : Buffer.from(m.data, 'utf8');
    if (!full.equals(decoded[channel][i])) throw new Error(`${channel} #${i}: decoded payload differs`);
  });
}
if (deltas < 3 * (ROUNDS - 1)) throw new Error(`only ${deltas} deltas were sent`);
console.log(`vcdiff interop: Ably's decoder applied ${deltas} deltas; ${messages.length - deltas} full messages; every payload equals history`);
