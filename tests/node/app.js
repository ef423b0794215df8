// A Node cluster worker that knows nothing about corral: Node's classic example, plus
// a few switches for the tests (environment variables) and an echo of messages.
'use strict';
const http = require('http');

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST === undefined ? '127.0.0.1' : process.env.HOST;

process.on('message', (message) => {
  if (message && message.echo !== undefined) {
    process.send({ echoed: message.echo, pid: process.pid });
  } else if (message === 'bogus') {
    // internal messages nobody defined: the primary must log them and go on
    process.send({ cmd: 'NODE_CLUSTER', act: 'bogus', seq: 1000 });
    process.send({ cmd: 'NODE_SOMETHING_ELSE', seq: 1001 });
    process.send('after-bogus');
  } else if (message === 'spin') {
    // never read the channel again (a stuck event loop)
    process.send('spinning', () => { for (;;) { /* busy */ } });
  } else if (message === 'leave') {
    require('cluster').worker.disconnect();
  }
});

if (process.env.NO_LISTEN) {
  process.send('ready');
} else {
  const server = http.createServer((req, res) => {
    if (req.url === '/slow') {
      process.send({ slow: 'started', pid: process.pid });
      setTimeout(() => res.end(`slow answer from ${process.pid}\n`), 700);
      return;
    }
    res.end(`hello world, start with cluster ${process.pid}\n`);
  });
  server.on('error', (err) => {
    process.send({ error: err.code, message: err.message });
    process.exitCode = 7;
  });
  const args = host === '' ? [port] : [port, host];
  server.listen(...args, () => process.send('ready'));
}
