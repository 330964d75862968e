"""Bulk-load 100 000 users and 1 000 000 accepted friendships into a migrated studyhall
SQLite file (server stopped): user uN befriends uN+1 … uN+10 (mod N), so every user has
20 friends and neighbours share many."""
import sqlite3
import sys

USERS, PER_USER = 100_000, 10
FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Ken"]
LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Perlman", "Thompson"]

db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA journal_mode=WAL")
db.executemany(
    "INSERT INTO social_users (user_id, email, first_name, last_name, created_at) VALUES (?, ?, ?, ?, 0)",
    ((f"u{i}", f"user{i}@example.com", f"{FIRST[i % 10]}{i % 997}", LAST[(i // 10) % 10], ) for i in range(USERS)),
)
db.executemany(
    "INSERT INTO friendships (user_id1, user_id2, requested_at, accepted_at) VALUES (?, ?, 0, 1)",
    ((f"u{i}", f"u{(i + k) % USERS}") for i in range(USERS) for k in range(1, PER_USER + 1)),
)
db.execute("ANALYZE")
db.commit()
db.close()
