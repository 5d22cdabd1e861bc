// Writes what the benchmarks need into the directory given as argv[2]:
// - app-hs256.jwt: an HS256 app JWT (AUTH_APP_JWT_SECRET);
// - app-rs256.jwt: an RS256 app JWT signed with auth-server/tests/fixtures/rsa-1.pem;
// - jwks.json: the JWKS holding that key's public half (kid "bench") and
//   the P-256 key of ec-p256.pem (kid "bench-ec");
// - with argv[3] = N (storm.sh): rs256-storm.txt and es256-storm.txt, N
//   distinct app JWTs each (one per line, subjects storm-user-0..N-1), as N
//   users renewing at once after an outage present them.
// Tokens are valid for two hours. The RS256 and ES256 tokens carry the iss
// and aud that auth-server requires with a JWKS (ISSUER and AUDIENCE below;
// run.sh, storm.sh and instructions.sh pass the same values).
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const jwt = require('jsonwebtoken');

const [out, storm] = process.argv.slice(2);
const fixtures = path.join(__dirname, '../../../auth-server/tests/fixtures');
const appSecret = process.env.AUTH_APP_JWT_SECRET;
const rsa = crypto.createPrivateKey(fs.readFileSync(path.join(fixtures, 'rsa-1.pem')));
const ec = crypto.createPrivateKey(fs.readFileSync(path.join(fixtures, 'ec-p256.pem')));
const claims = { sub: 'bench-user', roles: ['bench'] };
const ISSUER = 'https://idp.bench.invalid/';
const AUDIENCE = 'ably-auth-bench';

fs.writeFileSync(path.join(out, 'app-hs256.jwt'), jwt.sign(claims, appSecret, { algorithm: 'HS256', expiresIn: '2h' }));
fs.writeFileSync(path.join(out, 'app-rs256.jwt'), jwt.sign(claims, rsa, {
  algorithm: 'RS256', expiresIn: '2h', keyid: 'bench', issuer: ISSUER, audience: AUDIENCE,
}));
const publicJwk = (key) => crypto.createPublicKey(key).export({ format: 'jwk' });
fs.writeFileSync(path.join(out, 'jwks.json'), JSON.stringify({
  keys: [
    { ...publicJwk(rsa), kid: 'bench', alg: 'RS256', use: 'sig' },
    { ...publicJwk(ec), kid: 'bench-ec', alg: 'ES256', use: 'sig' },
  ],
}));

if (storm) {
  const count = Number(storm);
  for (const [file, key, algorithm, keyid] of [
    ['rs256-storm.txt', rsa, 'RS256', 'bench'],
    ['es256-storm.txt', ec, 'ES256', 'bench-ec'],
  ]) {
    const lines = [];
    for (let n = 0; n < count; n += 1) {
      lines.push(jwt.sign({ sub: `storm-user-${n}`, roles: ['bench'] }, key, {
        algorithm, expiresIn: '2h', keyid, issuer: ISSUER, audience: AUDIENCE,
      }));
    }
    fs.writeFileSync(path.join(out, file), `${lines.join('\n')}\n`);
  }
}
