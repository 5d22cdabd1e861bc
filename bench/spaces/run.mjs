// 500 members entering one space on mock-ably: how long until every client
// has seen every member, and what the mock's memory is then.
//
//   node bench/spaces/run.mjs [--members 500] [--workers 2] [--raw]
//
// MOCK_ABLY names the mock-ably binary (bench/spaces/run.sh builds the
// optimised one and sets it). The clients are @ably/spaces 0.5.2 on ably-js
// 2 `Realtime` in Node with default options (msgpack), from the interop
// suite's pinned packages (tests/interop/node_modules), split over
// `--workers` child processes so they use every core. With `--raw` they are
// plain ably-js presence members on one channel instead (no Spaces), to
// separate the SDK's own cost from the mock's.
//
// Phases:
//  1. connect: every client connects (a key with its own clientId: the auth
//     server is not what is measured) and attaches the space's channel, so
//     each will see every enter live;
//  2. enter: at one instant every client enters (Spaces: `space.enter()`
//     with a profile; raw: `presence.enter()`), and each records when it has
//     seen all N members enter (Spaces: the members' `enter` events; raw:
//     presence `enter` events), itself included;
//  3. the mock's resident memory (VmRSS) before anything connected, with
//     every client connected, and with every member present.
//
// Every wait is bounded (LIMIT_MS); only 127.0.0.1 is used. It prints a
// Markdown table for BENCHMARKS.md.
import { fork, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

const KEY = 'benchApp.benchKey:bench-secret';
const SPACE = 'bench';
const LIMIT_MS = Number(process.env.LIMIT_MS ?? 300_000);
const now = () => performance.timeOrigin + performance.now();

function args() {
  const argv = process.argv.slice(2);
  const value = (name, fallback) => {
    const at = argv.indexOf(name);
    return at >= 0 ? Number(argv[at + 1]) : fallback;
  };
  return { members: value('--members', 500), workers: value('--workers', 2), raw: argv.includes('--raw') };
}

/** Resident memory of `pid` in KiB. */
function rssKiB(pid) {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(line.split(/\s+/)[1]);
}

function within(promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${LIMIT_MS} ms`)), LIMIT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ---- worker: a share of the clients --------------------------------------

async function worker() {
  const require = createRequire(new URL('../../tests/interop/package.json', import.meta.url));
  const Ably = require('ably');
  const { default: Spaces } = require('@ably/spaces');
  const { mockUrl, first, count, members, raw } = JSON.parse(process.env.BENCH_WORKER);
  const url = new URL(mockUrl);
  const clients = [];
  const seenAll = [];
  const counts = [];
  let drops = 0;
  // Spaces calls `client.time()` without catching it: keep such failures
  // visible without ending the worker.
  process.on('unhandledRejection', (err) => process.send({ error: `unhandled: ${err}` }));
  for (let i = first; i < first + count; i += 1) {
    const realtime = new Ably.Realtime({
      endpoint: url.hostname,
      port: Number(url.port),
      tls: false,
      key: KEY,
      clientId: `member-${i}`,
      logLevel: 0,
    });
    const entered = new Set();
    counts.push(entered);
    let resolve;
    const all = new Promise((r) => {
      resolve = r;
    });
    const saw = (clientId) => {
      entered.add(clientId);
      if (entered.size === members) resolve(now());
    };
    let enter;
    realtime.connection.on('disconnected', () => {
        drops += 1;
      });
    if (raw) {
      const channel = realtime.channels.get(`${SPACE}::$space`);
      // `present`: a member learnt from a SYNC (after a resume) is seen too.
      channel.presence.subscribe(['enter', 'present'], (message) => saw(message.clientId));
      enter = () => channel.presence.enter({ name: `Member ${i}` });
      clients.push({ realtime, ready: channel.attach(), enter });
    } else {
      const ready = new Spaces(realtime).get(SPACE).then(async (space) => {
        // `updateProfile` also comes for a member learnt from a SYNC (after
        // a resume), which makes no `enter`.
        space.members.subscribe(['enter', 'updateProfile'], (member) => saw(member.clientId));
        await space.channel.attach();
        return space;
      });
      enter = async () => (await ready).enter({ name: `Member ${i}` });
      clients.push({ realtime, ready, enter });
    }
    seenAll.push(all);
  }
  await within(Promise.all(clients.map((c) => c.ready)), 'connect and attach');
  process.send({ ready: true });
  await new Promise((resolve) => process.once('message', resolve));
  // Spaces' enter() resolves once the member sees itself; not awaited here.
  for (const client of clients) client.enter().catch((err) => process.send({ error: String(err) }));
  // Progress on stderr while it runs, for a run that takes long.
  const progress = setInterval(() => {
    const sizes = counts.map((set) => set.size);
    const states = {};
    for (const { realtime } of clients) states[realtime.connection.state] = (states[realtime.connection.state] ?? 0) + 1;
    console.error(
      `worker ${first}: fewest seen ${Math.min(...sizes)}, most ${Math.max(...sizes)} of ${members}; ` +
        `done ${sizes.filter((n) => n === members).length}; connections ${JSON.stringify(states)}, ${drops} drops`,
    );
  }, 10_000);
  const times = await within(Promise.all(seenAll), 'every member seen');
  clearInterval(progress);
  process.send({ times, drops });
  // The coordinator reads the mock's memory with everyone present, then
  // ends this process.
}

// ---- coordinator ----------------------------------------------------------

async function startMock() {
  const bin = process.env.MOCK_ABLY;
  if (!bin) throw new Error('MOCK_ABLY is not set: run bench/spaces/run.sh');
  const child = spawn(bin, ['--bind', '127.0.0.1:0', '--key', KEY], {
    env: { PATH: process.env.PATH, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const mockUrl = await within(
    new Promise((resolve) => {
      lines.on('line', (line) => {
        if (line.startsWith('mock-ably listening on ')) resolve(line.slice('mock-ably listening on '.length));
      });
    }),
    'mock-ably ready line',
  );
  child.stdout.resume();
  return { child, mockUrl };
}

async function coordinator() {
  const { members, workers, raw } = args();
  const mock = await startMock();
  const rssStart = rssKiB(mock.child.pid);
  const children = [];
  const per = Math.ceil(members / workers);
  for (let w = 0; w < workers; w += 1) {
    const first = w * per;
    const count = Math.min(per, members - first);
    if (count <= 0) break;
    const child = fork(new URL(import.meta.url), [], {
      env: { ...process.env, BENCH_WORKER: JSON.stringify({ mockUrl: mock.mockUrl, first, count, members, raw }) },
    });
    const messages = [];
    const waiters = [];
    child.on('message', (message) => {
      if (message.error) console.error(`worker ${w}: ${message.error}`);
      else messages.push(message);
      waiters.splice(0).forEach((wake) => wake());
    });
    const next = async (key) => {
      while (!messages.some((m) => key in m)) await new Promise((wake) => waiters.push(wake));
      return messages.find((m) => key in m)[key];
    };
    children.push({ child, next });
  }
  try {
    const connectStart = now();
    await within(Promise.all(children.map((c) => c.next('ready'))), 'workers ready');
    const connectMs = now() - connectStart;
    const rssConnected = rssKiB(mock.child.pid);
    const enterAt = now();
    for (const { child } of children) child.send('enter');
    const times = (await within(Promise.all(children.map((c) => c.next('times'))), 'every member seen')).flat();
    const drops = (await Promise.all(children.map((c) => c.next('drops')))).reduce((a, b) => a + b, 0);
    const rssPresent = rssKiB(mock.child.pid);
    const delays = times.map((t) => t - enterAt).sort((a, b) => a - b);
    const pct = (p) => delays[Math.min(delays.length - 1, Math.floor((p / 100) * delays.length))];
    const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;
    const kib = (n) => `${n.toLocaleString('en')} KiB`;
    console.log(`\n| Measure | ${raw ? 'ably-js presence (no Spaces)' : '@ably/spaces'} |`);
    console.log('| --- | --- |');
    console.log(`| members (clients, one each) | ${members.toLocaleString('en')} in ${children.length} Node processes |`);
    console.log(`| connect and attach, all | ${fmt(connectMs)} |`);
    console.log(`| enter to every client having seen every member: p50 / p99 / **max** | ${fmt(pct(50))} / ${fmt(pct(99))} / **${fmt(delays.at(-1))}** |`);
    console.log(`| presence events delivered | ${(members * members).toLocaleString('en')} |`);
    console.log(`| connections dropped (resumed) during the run | ${drops} |`);
    console.log(`| mock RSS: started / all connected / **all present** | ${kib(rssStart)} / ${kib(rssConnected)} / **${kib(rssPresent)}** |`);
    console.log(`| mock RSS per member (present, over started) | ${((rssPresent - rssStart) / members).toFixed(1)} KiB |`);
    const cpu = readFileSync(`/proc/${mock.child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    const ticks = Number(cpu[11]) + Number(cpu[12]);
    console.log(`| mock CPU time, whole run | ${(ticks / 100).toFixed(2)} s |`);
  } finally {
    for (const { child } of children) child.kill('SIGKILL');
    mock.child.kill('SIGTERM');
  }
}

if (process.env.BENCH_WORKER) await worker();
else await coordinator();
