#!/usr/bin/env node
// healthcheck.js - an application's database health check, as apps write it:
// SELECT 1 with retry and exponential backoff (5 tries, 100 ms doubling).
// Exit 0 when the database answers; otherwise exit 1 with the last error,
// including its SQLSTATE, on stderr. Reads DATABASE_URL.
'use strict';
const { Client } = require('pg');

const url = process.env.DATABASE_URL;
if (!url) {
  console.error('healthcheck: DATABASE_URL is not set');
  process.exit(2);
}
const TRIES = 5;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function once() {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 3000,
                              query_timeout: 3000 });
  client.on('error', () => {}); // reported by connect()/query() below
  try {
    await client.connect();
    const res = await client.query('SELECT 1 AS ok');
    if (res.rows.length !== 1 || res.rows[0].ok !== 1) {
      throw new Error('unexpected answer ' + JSON.stringify(res.rows));
    }
  } finally {
    await client.end().catch(() => {});
  }
}

(async () => {
  let delay = 100;
  let last;
  for (let attempt = 1; attempt <= TRIES; attempt++) {
    try {
      await once();
      console.log(`healthcheck: ok (attempt ${attempt})`);
      process.exit(0);
    } catch (err) {
      last = err;
      if (attempt < TRIES) {
        await sleep(delay);
        delay *= 2;
      }
    }
  }
  const code = last && last.code ? `[${last.code}] ` : '';
  console.error(`healthcheck: FAILED after ${TRIES} attempts: ${code}${last && last.message}`);
  process.exit(1);
})();
