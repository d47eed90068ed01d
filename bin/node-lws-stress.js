#!/usr/bin/env node
'use strict';
// node-lws-stress: cycles node-lws servers up and down under media-shaped
// traffic and reports what broke. `node-lws-stress --help` for the options;
// the code is in bin/stress/.

require('./stress/cli.js')
  .main(process.argv.slice(2))
  .catch((err) => {
    process.stderr.write(`node-lws-stress: internal error: ${err?.stack ?? err}\n`);
    process.exitCode = 1;
  });
