#!/usr/bin/env python3
"""Publishes COUNT messages to CHANNEL on a mock-ably at URL, 100 per REST
request, once STREAMS subscribers are attached to that channel (polled from
/_mock/stats).
Usage: publish.py URL KEY CHANNEL COUNT STREAMS
"""
import base64
import json
import sys
import time
import urllib.request

url, key, channel, count, streams = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
auth = "Basic " + base64.b64encode(key.encode()).decode()

deadline = time.time() + 30
def subscribers():
    stats = json.load(urllib.request.urlopen(f"{url}/_mock/stats"))
    return stats.get("channels", {}).get(channel, {}).get("subscribers", 0)


while subscribers() < streams:
    if time.time() > deadline:
        sys.exit("subscribers did not attach")
    time.sleep(0.05)

for start in range(0, count, 100):
    batch = [
        {"name": "update", "data": {"n": n, "text": "hello world", "score": n * 7 % 1000}}
        for n in range(start, min(start + 100, count))
    ]
    request = urllib.request.Request(
        f"{url}/channels/{channel}/messages",
        data=json.dumps(batch).encode(),
        headers={"Content-Type": "application/json", "Authorization": auth},
    )
    urllib.request.urlopen(request).read()
