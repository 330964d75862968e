"""Bulk-load 1 000 000 course grades for course `million` over two years (0 to 100 in
hundredths, stored in millionths), with the daily tallies the worker would have kept,
into a migrated studyhall SQLite file (server stopped)."""
import sqlite3
import sys

N, DAY_US = 1_000_000, 86_400_000_000
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA journal_mode=WAL")
db.execute(
    """
    WITH RECURSIVE seq(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM seq WHERE x < ?)
    INSERT INTO grade_records (id, student_id, course_id, units, on_time, created_at)
    SELECT printf('seed-%d', x), printf('%08d-0000-4000-8000-000000000000', x % 5000), 'million',
           ((x * 7919) % 10001) * 10000, x % 4 <> 0, 1700000000000000 + (x % 730) * ? + x
    FROM seq
    """,
    (N - 1, DAY_US),
)
db.execute(
    """
    INSERT INTO grade_days_course (course_id, day, grade_sum, grade_count, on_time_count)
    SELECT course_id, created_at / ?, sum(units), count(*), sum(on_time)
    FROM grade_records WHERE course_id = 'million' GROUP BY course_id, created_at / ?
    """,
    (DAY_US, DAY_US),
)
db.commit()
db.close()
