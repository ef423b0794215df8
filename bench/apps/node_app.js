// Node's classic hello world, the PM2 side of bench/cluster_mode.py: the same answer as
// examples/app.py. Port from $PORT (default 3000), host from $HOST (default 127.0.0.1).
// Run alone (`node node_app.js`) or under PM2 (`pm2 start node_app.js -i 2`): unchanged.
'use strict';
const http = require('http');

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';

// setHeader + end(body), not writeHead: Node then sends Content-Length (not chunked), as
// examples/app.py does, so both answer with the same framing
http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end(`hello world, start with cluster ${process.pid}\n`);
}).listen(port, host);
