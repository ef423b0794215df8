// The lesson's own primary, without a process manager: `node cluster.js`
// (Node's cluster module; for comparison in bench/node_cluster.py).
const cluster = require('cluster');
const os = require('os');

const workers = Number(process.env.WORKERS || 2);

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.process.pid} died (${signal || code}); forking another`);
    cluster.fork();
  });
} else {
  require('./app.js');
}
