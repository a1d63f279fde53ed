#!/usr/bin/env node
// postgresjs.js - postgres.js ("postgres" on npm) with its default settings
// (prepare: true: every query with parameters becomes a named statement on its
// connection, and queries are pipelined) through berth in transaction mode, with
// up to 20 connections. Every answer is checked.
//
// postgres.js silently retries a query whose prepared statement the server lost
// (errors from routines FetchPreparedStatement / RevalidateCachedQuery), which
// would hide exactly what this test is about: so the `debug` hook counts how many
// times each query text was sent, and any text sent more often than it was issued
// fails the run.
// Env: DATABASE_URL, PGJS_TABLE, TARGET (=direct: also check that the server holds
// the named statements).
'use strict';
const postgres = require('postgres');

const url = process.env.DATABASE_URL;
const table = process.env.PGJS_TABLE || 'pgjs_t';
const direct = process.env.TARGET === 'direct';
let checks = 0;
function check(cond, what) {
  if (!cond) throw new Error('mismatch: ' + what);
  checks++;
}

const sent = new Map();
const issued = new Map();
const sql = postgres(url, {
  max: 20,
  connect_timeout: 20,
  onnotice: () => {},
  debug: (_conn, text) => sent.set(text, (sent.get(text) || 0) + 1),
});
// q(text, query): the query's text as postgres.js sends it, and the query
async function q(text, query) {
  issued.set(text, (issued.get(text) || 0) + 1);
  return await query;
}

async function main() {
  // 400 queries at once over 20 connections: the same texts from every connection
  await Promise.all(Array.from({ length: 400 }, async (_, k) => {
    const tag = 't' + k;
    if (k % 3 === 0) {
      const r = await q('SELECT $1::int * 2 AS v, $2::text AS tag', sql`SELECT ${k}::int * 2 AS v, ${tag}::text AS tag`);
      check(r.length === 1 && r[0].v === 2 * k && r[0].tag === tag, `shared ${k}`);
    } else if (k % 3 === 1) {
      const r = await q('SELECT g FROM generate_series(1, $1::int) g', sql`SELECT g FROM generate_series(1, ${k % 9}::int) g`);
      check(r.length === k % 9 && r.every((x, j) => x.g === j + 1), `series ${k}`);
    } else {
      const r = await q('SELECT $1::text AS a, $2::int AS b, $3::bool AS c',
        sql`SELECT ${tag}::text AS a, ${k}::int AS b, ${k % 2 === 0}::bool AS c`);
      check(r[0].a === tag && r[0].b === k && r[0].c === (k % 2 === 0) && r.columns.length === 3, `three ${k}`);
    }
  }));

  // 20 reserved connections, each with its own text for the same statement
  // positions (postgres.js names statements per connection)
  const reserved = await Promise.all(Array.from({ length: 20 }, () => sql.reserve()));
  try {
    await Promise.all(reserved.map(async (r, i) => {
      for (let k = 0; k < 15; k++) {
        const own = `SELECT $1::int + ${i} AS v, 'c${i}'::text AS who`;
        const x = await q(own, r`SELECT ${k}::int + ${r.unsafe(String(i))} AS v, ${r.unsafe(`'c${i}'`)}::text AS who`);
        check(x.length === 1 && x[0].v === k + i && x[0].who === 'c' + i, `own ${i}/${k}: ${JSON.stringify(x)}`);
      }
      if (direct && i === 0) {
        const p = await r`SELECT count(*)::int AS n FROM pg_prepared_statements`;
        check(p[0].n >= 2, 'named statements on the server: ' + p[0].n);
      }
    }));
  } finally {
    reserved.forEach((r) => r.release());
  }

  // transactions, committed and rolled back
  await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    for (let k = 0; k < 3; k++) {
      const work = sql.begin(async (tx) => {
        await q(`INSERT INTO "${table}" (c, k) VALUES ($1, $2)`, tx`INSERT INTO ${tx(table)} (c, k) VALUES (${i}, ${k})`);
        const r = await q(`SELECT count(*)::int AS n FROM "${table}" WHERE c = $1`,
          tx`SELECT count(*)::int AS n FROM ${tx(table)} WHERE c = ${i}`);
        check(r[0].n === (k === 2 ? 2 : k + 1), `in txn ${i}/${k}: ${r[0].n}`);
        if (k === 1) throw new Error('roll back');
      });
      if (k === 1) {
        let err = null;
        try { await work; } catch (e) { err = e.message; }
        check(err === 'roll back', 'rolled back');
      } else {
        await work;
      }
    }
    const r = await q(`SELECT count(*)::int AS n FROM "${table}" WHERE c = $1`,
      sql`SELECT count(*)::int AS n FROM ${sql(table)} WHERE c = ${i}`);
    check(r[0].n === 2, `after txns ${i}: ${r[0].n}`);
  }));

  // every issued text was sent exactly as often as issued: no silent retries
  for (const [text, n] of issued) {
    check(sent.get(text) === n, `"${text}" issued ${n} times, sent ${sent.get(text)} times (retried?)`);
  }
}

main().then(async () => {
  await sql.end({ timeout: 5 });
  console.log('checks passed: ' + checks);
}).catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
