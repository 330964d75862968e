"""Bulk-load N events straight into a migrated studyhall SQLite file (server stopped).

The FTS5 trigram index is kept in step by the schema's own triggers, and the events
are chained as the README's "Audit log" defines it, so the data is exactly what the
server would have written.
"""
import sqlite3
import sys

from chainlink import link

path, count = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(path)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=OFF")
now_us = int(__import__("time").time() * 1_000_000)
span_us = 365 * 24 * 3600 * 1_000_000
words = ["timeout", "refused", "declined", "shipped", "created", "updated", "deleted",
         "expired", "retried", "queued", "started", "stopped", "paused", "resumed",
         "approved", "rejected", "flagged", "archived", "restored", "exported"]
db.executescript("CREATE TEMP TABLE words(i INTEGER PRIMARY KEY, w TEXT);")
db.executemany("INSERT INTO temp.words VALUES (?, ?)", list(enumerate(words)))
batch = 100_000
for start in range(0, count, batch):
    n = min(batch, count - start)
    db.execute(
        """
        WITH RECURSIVE seq(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM seq WHERE x < ?)
        INSERT INTO events (id, component, data, email, environment, message, created_at)
        SELECT
          lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-7' || substr(hex(randomblob(2)), 2)
                || '-8' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
          'component' || (x % 20),
          '{"n":' || x || '}',
          'user' || (x % 5000) || '@example.com',
          CASE x % 3 WHEN 0 THEN 'production' WHEN 1 THEN 'staging' ELSE 'development' END,
          'order ' || x || ' ' || (SELECT w FROM temp.words WHERE i = x % 20) || ' ref-' || (x * 7919 % 1000003),
          ? - ? + (x * ? / ?)
        FROM seq
        """,
        (start, start + n - 1, now_us, span_us, span_us, count),
    )
    db.commit()
    print(f"  seeded {start + n} events", file=sys.stderr)
# The audit chain, in (created_at, id) order, after whatever is chained already.
position, previous = db.execute("SELECT position, hash FROM event_chain_head WHERE id = 1").fetchone()
rows = db.execute(
    "SELECT seq, id, created_at, component, environment, email, message, data FROM events "
    "WHERE position IS NULL ORDER BY created_at, id").fetchall()
updates = []
for seq, *fields in rows:
    position += 1
    previous = link(previous, position, *fields)
    updates.append((position, previous, seq))
db.executemany("UPDATE events SET position = ?, hash = ? WHERE seq = ?", updates)
db.execute("UPDATE event_chain_head SET position = ?, hash = ? WHERE id = 1", (position, previous))
db.commit()
print(f"  chained {len(updates)} events", file=sys.stderr)
db.execute("ANALYZE")
db.commit()
db.close()
