// Preloaded into kinesis-local (`node --require`): it hard-codes host 0.0.0.0, so a
// listen() without an explicit host (or on a wildcard host) is bound to loopback.
'use strict';
const net = require('net');
const host = process.env.SLUICE_BIND_HOST || '127.0.0.1';
const wildcard = new Set(['0.0.0.0', '::', '']);
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    if (typeof args[1] !== 'string' || wildcard.has(args[1])) {
      if (typeof args[1] === 'string') args.splice(1, 1, host);
      else args.splice(1, 0, host);
    }
  } else if (args[0] && typeof args[0] === 'object' && !Array.isArray(args[0])) {
    if (args[0].host === undefined || wildcard.has(args[0].host)) args[0] = { ...args[0], host };
  }
  return listen.apply(this, args);
};
