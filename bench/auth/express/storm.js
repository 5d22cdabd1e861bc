// The login-storm anchor: Express + jsonwebtoken doing the work auth-server
// does for an app token it has never seen. The app JWT is verified against a
// JWKS fetched once at start (the key chosen by its kid, the algorithms
// pinned, issuer and audience checked), then an Ably JWT is signed for its
// subject, as Ably's documented handler signs one. Listens on 127.0.0.1:$PORT
// (default 0) and prints the address. JWKS_URL names the JWKS.
const crypto = require('crypto');
const express = require('express');
const jwt = require('jsonwebtoken');

const [keyName, keySecret] = process.env.ABLY_API_KEY.split(':');
const verifyOptions = {
  algorithms: ['RS256', 'ES256'],
  issuer: 'https://idp.bench.invalid/',
  audience: 'ably-auth-bench',
};
const capability = JSON.stringify({ '*': ['publish', 'subscribe', 'presence', 'history'] });

async function main() {
  const jwks = await (await fetch(process.env.JWKS_URL)).json();
  const keys = new Map(jwks.keys.map((jwk) => [jwk.kid, crypto.createPublicKey({ key: jwk, format: 'jwk' })]));
  const keyFor = (header, done) => {
    const key = keys.get(header.kid);
    if (key) done(null, key);
    else done(new Error('unknown kid'));
  };
  const app = express();
  app.get('/api/ably-jwt', (req, res) => {
    const bearer = /^Bearer (.+)$/.exec(req.get('authorization') || '');
    if (!bearer) {
      res.status(401).send('no app token');
      return;
    }
    jwt.verify(bearer[1], keyFor, verifyOptions, (err, claims) => {
      if (err) {
        res.status(401).send(err.message);
        return;
      }
      const payload = { 'x-ably-capability': capability, 'x-ably-clientId': claims.sub };
      jwt.sign(payload, keySecret, { expiresIn: 3600, keyid: keyName }, (signErr, token) => {
        if (signErr) {
          res.status(500).send('cannot sign');
          return;
        }
        res.setHeader('Content-Type', 'application/jwt');
        res.send(token);
      });
    });
  });
  const server = app.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
    console.log(`storm anchor listening on http://127.0.0.1:${server.address().port}`);
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
