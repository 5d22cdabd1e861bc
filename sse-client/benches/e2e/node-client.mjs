// The reference: the npm `eventsource` package, doing what `sse-client
// subscribe` does per message: parse the Message, undo `encoding: json`,
// print one JSON line. Usage: node node-client.mjs URL COUNT
import { EventSource } from 'eventsource';

const [url, count] = [process.argv[2], Number(process.argv[3])];
let seen = 0;
const source = new EventSource(url);
source.addEventListener('message', (event) => {
  const message = JSON.parse(event.data);
  const data = message.encoding === 'json' ? JSON.parse(message.data) : message.data;
  process.stdout.write(JSON.stringify({
    channel: message.channel, id: message.id, name: message.name, data,
    timestamp: message.timestamp, eventId: event.lastEventId,
  }) + '\n');
  if (++seen === count) {
    source.close();
    process.exit(0);
  }
});
source.onerror = (err) => { console.error('error', err.message); };
