// The lesson's hello world, plus a graceful stop that fails no request: with
// `shutdown_with_message` (--shutdown-with-message), corral sends 'shutdown'
// instead of the kill signal. The worker then answers every request still coming
// on its keep-alive connections with `Connection: close`, stops listening, and
// exits once its connections are gone. (Node's own server.close() drops idle
// keep-alive connections at once, which fails a request a client is just
// sending on one: that is why this app does not call it first.)
const http = require('http');

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';
let draining = false;

const server = http.createServer((req, res) => {
  if (draining) res.setHeader('Connection', 'close');
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(`hello world, start with cluster ${process.pid}\n`);
});
server.listen(port, host);

process.on('message', (message) => {
  if (message !== 'shutdown' || draining) return;
  draining = true;
  // stop listening, but leave the open connections to end after their next answer
  require('net').Server.prototype.close.call(server, () => process.exit(0));
  // a connection that stays silent for a second gets no request any more: close it
  setTimeout(() => server.closeIdleConnections(), 1000).unref();
});
