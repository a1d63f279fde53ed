#!/usr/bin/env node
// named_queries.js - node-postgres named queries ({name, text, values}: a named
// prepared statement, parsed once per connection and then only bound) through
// berth in transaction mode. A Pool of 20 runs 400 named queries at once (five
// names, one text each), transactions with named queries, and an error in a
// named query; then 20 separate Clients each prepare the SAME name with their OWN
// text. Every answer is checked; any mismatch exits non-zero.
// Env: DATABASE_URL, NAMED_TABLE, TARGET (=direct: also check that the server
// really holds the named statements, which only PostgreSQL itself can show).
'use strict';
const { Pool, Client } = require('pg');

const url = process.env.DATABASE_URL;
const table = process.env.NAMED_TABLE || 'node_named';
const direct = process.env.TARGET === 'direct';
let checks = 0;
function check(cond, what) {
  if (!cond) throw new Error('mismatch: ' + what);
  checks++;
}

const QUERIES = [
  { text: 'SELECT $1::int AS n, $1::int * 2 AS twice',
    arg: (k) => k, ok: (k, r) => r.rows.length === 1 && r.rows[0].n === k && r.rows[0].twice === 2 * k },
  { text: "SELECT $1::text || '-q1' AS s",
    arg: (k) => 'v' + k, ok: (k, r) => r.rows.length === 1 && r.rows[0].s === 'v' + k + '-q1' },
  { text: 'SELECT $1::bigint AS big, pg_typeof($1::bigint)::text AS t, 3 AS three',
    arg: (k) => String(k), ok: (k, r) => r.rows[0].big === String(k) && r.rows[0].t === 'bigint' &&
      r.rows[0].three === 3 && r.fields.length === 3 },
  { text: 'SELECT g FROM generate_series(1, $1::int) g',
    arg: (k) => k % 7, ok: (k, r) => r.rows.length === k % 7 && r.rows.every((x, j) => x.g === j + 1) },
  { text: "SELECT $1::jsonb -> 'k' AS k",
    arg: (k) => JSON.stringify({ k }), ok: (k, r) => r.rows.length === 1 && r.rows[0].k === k },
];

async function poolPart() {
  const pool = new Pool({ connectionString: url, max: 20, connectionTimeoutMillis: 20000 });
  try {
    const all = [];
    for (let k = 0; k < 400; k++) {
      const q = QUERIES[k % QUERIES.length];
      all.push(pool.query({ name: 'q' + (k % QUERIES.length), text: q.text, values: [q.arg(k)] })
        .then((r) => check(q.ok(k, r), `q${k % QUERIES.length} k=${k}: ${JSON.stringify(r.rows)}`)));
    }
    await Promise.all(all);

    // transactions with named queries, some rolled back
    await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const c = await pool.connect();
      try {
        let committed = 0;
        for (let k = 0; k < 3; k++) {
          await c.query('BEGIN');
          await c.query({ name: 'ins', text: `INSERT INTO ${table} (c, k) VALUES ($1, $2)`, values: [i, k] });
          const r = await c.query({ name: 'cnt', text: `SELECT count(*)::int AS n FROM ${table} WHERE c = $1`,
                                    values: [i] });
          check(r.rows[0].n === committed + 1, `count in txn ${i}/${k}: ${r.rows[0].n}`);
          await c.query(k === 1 ? 'ROLLBACK' : 'COMMIT');
          if (k !== 1) committed++;
        }
        const r = await c.query({ name: 'cnt', text: `SELECT count(*)::int AS n FROM ${table} WHERE c = $1`,
                                  values: [i] });
        check(r.rows[0].n === 2, `count after ${i}: ${r.rows[0].n}`);
        // an error in a named query, then the same name again
        let failed = null;
        try {
          await c.query({ name: 'div', text: 'SELECT 10 / $1::int AS d', values: [0] });
        } catch (e) {
          failed = e.code;
        }
        check(failed === '22012', `division by zero, got ${failed}`);
        const d = await c.query({ name: 'div', text: 'SELECT 10 / $1::int AS d', values: [5] });
        check(d.rows[0].d === 2, 'div after error');
        if (direct && i === 0) {
          const p = await c.query("SELECT array_agg(name::text ORDER BY name) AS n FROM pg_prepared_statements");
          check(['cnt', 'div', 'ins'].every((x) => p.rows[0].n.includes(x)),
                'named statements on the server: ' + p.rows[0].n);
        }
      } finally {
        c.release();
      }
    }));
  } finally {
    await pool.end();
  }
}

async function clientsPart() {
  // The same name, each client its own text (and its own column list).
  const clients = Array.from({ length: 20 }, () => new Client({ connectionString: url }));
  await Promise.all(clients.map((c) => c.connect()));
  try {
    await Promise.all(clients.map(async (c, i) => {
      const text = i % 2
        ? `SELECT $1::int + ${i} AS v, 'c${i}'::text AS who`
        : `SELECT 'c${i}'::text AS who, $1::int * ${i} AS prod, ${i} AS i`;
      for (let k = 0; k < 20; k++) {
        const r = await c.query({ name: 'mine', text, values: [k] });
        check(i % 2
          ? r.rows[0].v === k + i && r.rows[0].who === 'c' + i && r.fields.length === 2
          : r.rows[0].who === 'c' + i && r.rows[0].prod === k * i && r.rows[0].i === i && r.fields.length === 3,
        `client ${i} k=${k}: ${JSON.stringify(r.rows)}`);
      }
    }));
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}

(async () => {
  await poolPart();
  await clientsPart();
  console.log('checks passed: ' + checks);
})().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
