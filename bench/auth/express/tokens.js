// Writes what the benchmark needs into the directory given as argv[2]:
// an HS256 app JWT (app-hs256.jwt), an RS256 app JWT (app-rs256.jwt) signed
// with auth-server/tests/fixtures/rsa-1.pem, and the JWKS holding that key's
// public half (jwks.json). Tokens are valid for two hours. The RS256 token
// carries the iss and aud that auth-server requires with a JWKS (ISSUER and
// AUDIENCE below; run.sh and instructions.sh pass the same values).
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const jwt = require('jsonwebtoken');

const out = process.argv[2];
const appSecret = process.env.AUTH_APP_JWT_SECRET;
const pem = fs.readFileSync(path.join(__dirname, '../../../auth-server/tests/fixtures/rsa-1.pem'));
const claims = { sub: 'bench-user', roles: ['bench'] };
const ISSUER = 'https://idp.bench.invalid/';
const AUDIENCE = 'ably-auth-bench';

fs.writeFileSync(path.join(out, 'app-hs256.jwt'), jwt.sign(claims, appSecret, { algorithm: 'HS256', expiresIn: '2h' }));
fs.writeFileSync(path.join(out, 'app-rs256.jwt'), jwt.sign(claims, pem, {
  algorithm: 'RS256', expiresIn: '2h', keyid: 'bench', issuer: ISSUER, audience: AUDIENCE,
}));
const jwk = crypto.createPublicKey(pem).export({ format: 'jwk' });
fs.writeFileSync(path.join(out, 'jwks.json'), JSON.stringify({ keys: [{ ...jwk, kid: 'bench', alg: 'RS256', use: 'sig' }] }));
