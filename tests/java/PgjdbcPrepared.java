// PgjdbcPrepared.java - pgjdbc (Debian's libpostgresql-jdbc-java) with its default
// prepareThreshold (5): after five executions a PreparedStatement becomes a named
// server-side statement (S_1, S_2, ...), the same names on every connection.
// N threads, each with its own connection, run statements whose SQL is shared
// by all threads and statements whose SQL is the thread's own, ITER times each,
// plus transactions; every result is checked. Driven by
// tests/integration/test_drivers_tx.py, which compiles this file with javac.
//
// usage: java -cp postgresql.jar:DIR PgjdbcPrepared URL USER PASSWORD THREADS ITER TABLE [direct]
// ("direct": PostgreSQL itself, where pg_prepared_statements shows pgjdbc's S_n names)
// Prints "checks passed: N" and exits 0, or prints the mismatches and exits 1.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import org.postgresql.PGStatement;

public class PgjdbcPrepared {
	static final List<String> failures = Collections.synchronizedList(new ArrayList<>());
	static final AtomicLong checks = new AtomicLong();

	static void check(boolean ok, String what) {
		if (!ok)
			throw new IllegalStateException("mismatch: " + what);
		checks.incrementAndGet();
	}

	public static void main(String[] args) throws Exception {
		String url = args[0];
		Properties props = new Properties();
		props.setProperty("user", args[1]);
		props.setProperty("password", args[2]);
		int threads = Integer.parseInt(args[3]);
		int iter = Integer.parseInt(args[4]);
		String table = args[5];
		boolean direct = args.length > 6 && args[6].equals("direct");

		List<Thread> ts = new ArrayList<>();
		for (int t = 0; t < threads; t++) {
			final int id = t;
			Thread th = new Thread(() -> {
				try (Connection c = DriverManager.getConnection(url, props)) {
					work(c, id, iter, table, direct);
				} catch (Throwable e) {
					failures.add("thread " + id + ": " + e);
				}
			});
			ts.add(th);
			th.start();
		}
		for (Thread th : ts)
			th.join(120000);
		if (!failures.isEmpty()) {
			for (String f : failures)
				System.out.println(f);
			System.exit(1);
		}
		System.out.println("checks passed: " + checks.get());
	}

	static void work(Connection c, int id, int iter, String table, boolean direct)
		throws Exception {
		c.setAutoCommit(true);
		PreparedStatement shared = c.prepareStatement("SELECT ?::int * 2 AS v, ?::text AS tag");
		// the thread's own SQL: same server-side name S_n on every connection, other text
		PreparedStatement own = c.prepareStatement(
			"SELECT ?::int + " + id + " AS v, 'thread " + id + "'::text AS who, " + id + " AS n");
		for (int i = 0; i < iter; i++) {
			shared.setInt(1, i);
			shared.setString(2, id + "-" + i);
			try (ResultSet rs = shared.executeQuery()) {
				check(rs.next() && rs.getInt(1) == 2 * i && rs.getString(2).equals(id + "-" + i)
					&& !rs.next(), "shared " + id + "/" + i);
			}
			own.setInt(1, i);
			try (ResultSet rs = own.executeQuery()) {
				check(rs.next() && rs.getInt(1) == i + id && rs.getString(2).equals("thread " + id)
					&& rs.getInt(3) == id && !rs.next(), "own " + id + "/" + i);
			}
		}
		// default prepareThreshold: by now both run as named server-side statements
		check(shared.unwrap(PGStatement.class).isUseServerPrepare(), "shared is server-prepared");
		check(own.unwrap(PGStatement.class).isUseServerPrepare(), "own is server-prepared");
		if (direct) { // on PostgreSQL itself, pgjdbc's named statements are there to see
			try (ResultSet rs = c.createStatement().executeQuery(
				"SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'S\\_%'")) {
				check(rs.next() && rs.getInt(1) >= 2, "named statements on the server " + id);
			}
		}

		// transactions with a prepared INSERT and SELECT
		PreparedStatement ins = c.prepareStatement("INSERT INTO " + table + " (t, i) VALUES (?, ?)");
		PreparedStatement cnt = c.prepareStatement("SELECT count(*), coalesce(sum(i), 0) FROM " + table
			+ " WHERE t = ?");
		int committed = 0;
		long sum = 0;
		for (int k = 0; k < 10; k++) {
			c.setAutoCommit(false);
			for (int j = 0; j < 5; j++) {
				ins.setInt(1, id);
				ins.setInt(2, k * 5 + j);
				check(ins.executeUpdate() == 1, "insert " + id);
			}
			cnt.setInt(1, id);
			try (ResultSet rs = cnt.executeQuery()) {
				check(rs.next() && rs.getInt(1) == committed + 5, "count in txn " + id + "/" + k);
			}
			if (k % 3 == 2) {
				c.rollback();
			} else {
				c.commit();
				committed += 5;
				for (int j = 0; j < 5; j++)
					sum += k * 5 + j;
			}
			c.setAutoCommit(true);
			cnt.setInt(1, id);
			try (ResultSet rs = cnt.executeQuery()) {
				check(rs.next() && rs.getInt(1) == committed && rs.getLong(2) == sum,
					"count after txn " + id + "/" + k);
			}
		}
		// a batch through a server-prepared statement
		for (int j = 0; j < 20; j++) {
			ins.setInt(1, 1000 + id);
			ins.setInt(2, j);
			ins.addBatch();
		}
		int[] counts = ins.executeBatch();
		check(counts.length == 20, "batch " + id);
		cnt.setInt(1, 1000 + id);
		try (ResultSet rs = cnt.executeQuery()) {
			check(rs.next() && rs.getInt(1) == 20 && rs.getLong(2) == 190, "batch count " + id);
		}
		shared.close();
		own.close();
		ins.close();
		cnt.close();
	}
}
