"""Bulk-load learning sessions into a migrated studyhall SQLite file (server stopped):
course 10000000-…-000000000010 with 10 sessions and 10000000-…-000100000000 with
100 000, for user 7e57…, with the aggregate rows computed from them."""
import sqlite3
import sys

USER = "7e570000-0000-4000-8000-000000000001"
# course id → (sessions, prefix of their session ids)
COURSES = {
    "10000000-0000-4000-8000-000000000010": (10, "5e550000-0000-4000-8000"),
    "10000000-0000-4000-8000-000100000000": (100_000, "5e550000-0000-4000-9000"),
}

db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA journal_mode=WAL")
for course, (count, prefix) in COURSES.items():
    db.execute(
        """
        WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?)
        INSERT INTO stats_sessions (session_id, user_id, course_id, total_modules, average_score,
                                    score_units, time_studied, updated_at)
        SELECT printf('%s-%012d', ?, x), ?, ?, x % 15, (x % 100) + 0.25,
               ((x % 100) * 10000) + 2500, x * 60000 % 3600000, 0
        FROM seq
        """,
        (count, prefix, USER, course),
    )
db.execute(
    """
    INSERT INTO stats_course_totals (user_id, course_id, session_count, total_modules, time_studied,
                                     weighted_score, score_sum)
    SELECT user_id, course_id, count(*), sum(total_modules), sum(time_studied),
           sum(score_units * total_modules), sum(score_units)
    FROM stats_sessions WHERE user_id = ? GROUP BY user_id, course_id
    """,
    (USER,),
)
db.commit()
db.close()
