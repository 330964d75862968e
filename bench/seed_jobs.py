"""Bulk-load 100 000 jobs into a migrated studyhall SQLite file (server stopped): 94 %
succeeded over the last day, 1 % dead of one of five errors (each with its error row),
the rest queued or failed; and the last hour's per-minute outcomes and timings the
workers would have kept."""
import math
import sqlite3
import sys
import time

N = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
NOW = int(time.time() * 1_000_000)
KINDS = ["grades.course_grade", "grades.task_grade"]
ERRORS = ["connection reset by peer", "timeout after 30 s", "the payload is not a grade",
          "deadlock detected", "upstream answered 503"]

db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA journal_mode=WAL")
rows, errors = [], []
for n in range(N):
    created = NOW - (N - n) * 860_000  # spread over the last day
    kind = KINDS[n % 2]
    payload = f'{{"student_id": "student-{n % 5000}", "course_id": "course-{n % 300}", "units": {n % 10001}}}'
    if n % 100 == 7:
        state, error = "dead", ERRORS[(n // 100) % 5]
        errors.append((f"seed-job-{n}", created + 1000, 5, "bench-host:1:0001", error))
    elif n % 100 in (8, 9, 10):
        state, error = ("queued", None) if n % 100 != 10 else ("failed", ERRORS[n % 5])
    else:
        state, error = "succeeded", None
    finished = created + 5000 if state in ("succeeded", "dead") else None
    rows.append((f"seed-job-{n}", kind, payload, state, 1 if state != "queued" else 0, 5,
                 created, error, created, finished, created + 100, "bench-host:1:0001"))
# Many rows to a statement, as the service enqueues a batch: the search index's trigger
# then writes once per statement rather than once per job.
CHUNK = 500
for start in range(0, len(rows), CHUNK):
    chunk = rows[start:start + CHUNK]
    db.execute(
        """INSERT INTO jobs (id, kind, payload, state, attempts, max_attempts, run_at, last_error,
                             created_at, finished_at, started_at, lease_holder)
           VALUES """ + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
        [value for row in chunk for value in row])
db.executemany("INSERT INTO job_errors (job_id, at, attempt, holder, error) VALUES (?, ?, ?, ?, ?)", errors)
minute = NOW // 60_000_000
minutes = []
for ago in range(60):
    for kind in KINDS:
        m = minute - ago
        minutes.append((kind, m, "succeeded", 0, 40 + ago % 7))
        minutes.append((kind, m, "failed", 0, ago % 3))
        for micros, jobs in ((800, 30), (5_000, 8), (120_000, 2)):
            minutes.append((kind, m, "run", math.floor(4 * math.log2(micros)), jobs))
            minutes.append((kind, m, "wait", math.floor(4 * math.log2(micros * 10)), jobs))
db.executemany("INSERT OR REPLACE INTO job_minutes (kind, minute, metric, bucket, jobs) VALUES (?, ?, ?, ?, ?)", minutes)
db.commit()
db.close()
