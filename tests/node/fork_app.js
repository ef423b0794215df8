// A plain Node child with an IPC channel (fork mode, no cluster): PM2's wait_ready
// signal, and an echo of what it is sent, handles included.
'use strict';
const net = require('net');

process.on('message', (message, handle) => {
  if (handle) {
    // a socket came with the message: write into it to show it arrived alive
    const socket = new net.Socket({ handle, readable: true, writable: true });
    socket.end(`written by node ${process.pid}\n`);
    process.send({ gotHandle: message });
  } else if (message === 'bye') {
    process.disconnect();
  } else {
    process.send({ got: message });
  }
});
process.on('disconnect', () => process.exit(3));
process.send('ready');
