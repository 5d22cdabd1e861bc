// Serves the JWKS file given as argv[2] at /jwks.json on 127.0.0.1 (port 0)
// for the RS256 benchmark run, and prints its URL.
const fs = require('fs');
const http = require('http');

const body = fs.readFileSync(process.argv[2]);
const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'application/json');
  res.end(body);
});
server.listen(0, '127.0.0.1', () => {
  console.log(`jwks listening on http://127.0.0.1:${server.address().port}/jwks.json`);
});
