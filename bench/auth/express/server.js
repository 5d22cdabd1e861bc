// Ably's documented Express handler for Ably JWTs (ably.com/docs/auth/token/jwt),
// the benchmark's anchor: express + jsonwebtoken with a string secret. As in
// the docs it signs for every caller with the key's rights and verifies
// nothing. Listens on 127.0.0.1:$PORT (default 0) and prints the address.
const express = require('express');
const jwt = require('jsonwebtoken');

const apiKey = process.env.ABLY_API_KEY;
const [keyName, keySecret] = apiKey.split(':');
const app = express();

app.get('/api/ably-jwt', (req, res) => {
  const payload = {
    'x-ably-capability': JSON.stringify({ '*': ['publish', 'subscribe', 'presence', 'history'] }),
  };
  const options = { expiresIn: 3600, keyid: keyName };
  jwt.sign(payload, keySecret, options, (err, token) => {
    if (err) {
      res.status(500).send('cannot sign');
      return;
    }
    res.setHeader('Content-Type', 'application/jwt');
    res.send(token);
  });
});

const server = app.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`express listening on http://127.0.0.1:${server.address().port}`);
});
