// The lesson's app: Node's hello world, one of N workers behind one port.
// Unmodified Node code: under `corral start pm2.config.js` (or `pm2 start`) the
// process manager is the cluster primary and owns port 3000.
const http = require('http');

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';

http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(`hello world, start with cluster ${process.pid}\n`);
}).listen(port, host, () => {
  console.log(`worker ${process.pid} (instance ${process.env.NODE_APP_INSTANCE}) ` +
              `serves http://${host}:${port} in ${process.env.NODE_ENV}`);
});
