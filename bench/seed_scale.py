"""Loads N events of the scale benchmark's shape into a migrated, empty studyhall
database (server stopped): `seed_scale.py sqlite:PATH N` or `seed_scale.py postgres:URL N`.

The shape, the same at every N: one address (`hot@example.com`) holds 1 % of the rows,
the rest spread over 5 000; three environments and twenty components; the word `failed`
in half of the messages; every message carries its own reference `ref-NNNNNNN`. Times
step one minute per row, oldest first. The rows are chained as the README's "Audit log"
defines it, so they are what a server with the chain on would have stored.
"""
import random
import subprocess
import sys

from chainlink import link

STEP_US = 60_000_000
START_US = 1_700_000_000_000_000


def rows(count):
    rng = random.Random(20261207)
    for i in range(count):
        email = "hot@example.com" if rng.random() < 0.01 else f"user{rng.randrange(5000)}@example.com"
        environment = ("production", "staging", "development")[rng.randrange(3)]
        component = f"component{rng.randrange(20)}"
        outcome = "failed" if rng.random() < 0.5 else "settled"
        message = f"order {i} payment {outcome} ref-{i:07d}"
        event_id = f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-7{rng.getrandbits(12):03x}-8{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}"
        yield event_id, component, f'{{"n":{i}}}', email, environment, message, START_US + i * STEP_US


def chained(events):
    """Each event with its position and hash, in (created_at, id) order."""
    previous = "0" * 64
    for position, (event_id, component, data, email, environment, message, created_at) in enumerate(events, 1):
        previous = link(previous, position, event_id, created_at, component, environment, email, message, data)
        yield event_id, component, data, email, environment, message, created_at, position, previous


def seed_sqlite(path, count):
    import sqlite3
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    db.executemany(
        "INSERT INTO events (id, component, data, email, environment, message, created_at, position, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", chained(rows(count)))
    db.execute("UPDATE event_chain_head SET position = (SELECT max(position) FROM events), "
               "hash = (SELECT hash FROM events ORDER BY position DESC LIMIT 1) WHERE id = 1")
    db.commit()
    db.execute("ANALYZE")
    db.commit()
    db.close()


def seed_postgres(url, count):
    def escaped(value):
        return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    copy = subprocess.Popen(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c",
         "COPY events (id, component, data, email, environment, message, created_at, position, hash) FROM STDIN"],
        stdin=subprocess.PIPE, text=True)
    for event in chained(rows(count)):
        copy.stdin.write("\t".join(escaped(value) for value in event) + "\n")
    copy.stdin.close()
    if copy.wait() != 0:
        raise SystemExit("COPY into events failed")
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c",
         "UPDATE event_chain_head SET (position, hash) = "
         "(SELECT position, hash FROM events ORDER BY position DESC LIMIT 1) WHERE id = 1",
         "-c", "VACUUM ANALYZE events"], check=True)


if __name__ == "__main__":
    target, count = sys.argv[1], int(sys.argv[2])
    backend, _, where = target.partition(":")
    {"sqlite": seed_sqlite, "postgres": seed_postgres}[backend](where, count)
