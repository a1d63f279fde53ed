#!/usr/bin/env node
// pool_mix.js - node-postgres (pg) through berth in transaction mode, app code
// unchanged: a Pool of 20 doing parameterized queries, transactions that commit
// and roll back, errors, and larger results, all at once. Every answer is
// checked; any mismatch exits non-zero. Reads DATABASE_URL and MIX_TABLE.
'use strict';
const { Pool } = require('pg');

const table = process.env.MIX_TABLE || 'node_mix';
const pool = new Pool({
  connectionString: process.env.DATABASE_URL,
  max: 20,
  application_name: 'node-mix',
  statement_timeout: 5000, // sent as a startup parameter
  connectionTimeoutMillis: 10000,
});
let checks = 0;
function check(cond, what) {
  if (!cond) throw new Error('mismatch: ' + what);
  checks++;
}

async function paramQuery(i) {
  const r = await pool.query('SELECT $1::int AS n, $2::text AS s, $3::jsonb AS j',
                             [i, 'v' + i, JSON.stringify({ i })]);
  check(r.rows[0].n === i && r.rows[0].s === 'v' + i && r.rows[0].j.i === i, `param ${i}`);
}

async function txn(i, commit) {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p;
    await c.query(`INSERT INTO ${table} (id, v) VALUES ($1, $2)`, [i, 'row' + i]);
    const r = await c.query(`SELECT v FROM ${table} WHERE id = $1`, [i]);
    check(r.rows.length === 1 && r.rows[0].v === 'row' + i, `txn read ${i}`);
    const pid2 = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p;
    check(pid === pid2, `same server inside transaction ${i}`);
    await c.query(commit ? 'COMMIT' : 'ROLLBACK');
  } finally {
    c.release();
  }
  const after = await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE id = $1`, [i]);
  check(after.rows[0].n === (commit ? 1 : 0), `after ${commit ? 'commit' : 'rollback'} ${i}`);
}

async function failing(i) {
  try {
    await pool.query('SELEC 1');
    check(false, 'syntax error expected');
  } catch (e) {
    check(e.code === '42601', `sqlstate 42601, got ${e.code}`);
  }
  try {
    await pool.query('SELECT 1 / $1::int', [0]);
    check(false, 'division by zero expected');
  } catch (e) {
    check(e.code === '22012', `sqlstate 22012, got ${e.code}`);
  }
  const r = await pool.query('SELECT $1::int + 1 AS n', [i]);
  check(r.rows[0].n === i + 1, `after error ${i}`);
}

async function bigResult(i) {
  const r = await pool.query('SELECT g, md5(g::text) AS h FROM generate_series(1, $1::int) g', [5000 + i]);
  check(r.rows.length === 5000 + i && r.rows[r.rows.length - 1].g === 5000 + i, `big ${i}`);
}

async function settings() {
  const r = await pool.query("SELECT current_setting('application_name') AS a, " +
                             "current_setting('statement_timeout') AS t");
  check(r.rows[0].a === 'node-mix' && r.rows[0].t === '5s',
        `startup params in force: ${JSON.stringify(r.rows[0])}`);
}

(async () => {
  try {
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await pool.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    const tasks = [];
    for (let i = 0; i < 400; i++) {
      switch (i % 6) {
        case 0: tasks.push(paramQuery(i)); break;
        case 1: tasks.push(txn(i, true)); break;
        case 2: tasks.push(txn(i, false)); break;
        case 3: tasks.push(failing(i)); break;
        case 4: tasks.push(bigResult(i)); break;
        default: tasks.push(settings()); break;
      }
    }
    await Promise.all(tasks);
    const n = (await pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n;
    check(n === 67, `committed rows: ${n}`);
    await pool.query(`DROP TABLE ${table}`);
    await pool.end();
    console.log(`pool_mix: ${checks} checks passed`);
    process.exit(0);
  } catch (e) {
    console.error(`pool_mix: FAILED: ${e.code ? '[' + e.code + '] ' : ''}${e.stack || e}`);
    process.exit(1);
  }
})();
