//! Social storage. Its SQL is the same on both backends (`$N` parameters, no dialect
//! features), so each query is written once and run on whichever pool there is; only
//! the migrations differ (the pair index, trigram indexes on PostgreSQL).

use serde_json::json;

use super::model::{
    Friendship, FriendshipRow, UserFriendRequest, UserRow, NEW_PROFILE_ALLOW, NEW_PROFILE_DENY,
    NEW_PROFILE_SHARE_MODE,
};
use studyhall_core::clock::Clock;
use studyhall_core::db::Db;
use studyhall_core::dialect::Dialect;
use studyhall_core::error::StoreError;
use studyhall_core::sql::Sql;
use studyhall_log::{Actor, Decision};

/// What a friend request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    Sent,
    /// The other user had asked first; the two are friends now.
    Accepted,
    AlreadyFriends,
    AlreadySent,
}

/// Friends of `$X`, as a one-column (`friend`) subquery.
pub(super) fn friends_of(param: &str) -> String {
    format!(
        "SELECT user_id2 AS friend FROM friendships WHERE user_id1 = {param} AND accepted_at IS NOT NULL
         UNION ALL SELECT user_id1 FROM friendships WHERE user_id2 = {param} AND accepted_at IS NOT NULL"
    )
}

/// Profile columns plus `friendship_state` and `mutual_friend_count` relative to the
/// caller (`$1`; '' for nobody). Built once: every profile read uses it.
fn user_columns() -> &'static str {
    static COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
        "u.user_id, u.email, u.first_name, u.last_name, u.description, u.dob, u.gender, u.school,
         u.work, u.location, u.email_public, u.dob_public, u.gender_public, u.school_public,
         u.work_public, u.location_public, u.share_mode, u.domain_allow_array, u.domain_deny_array,
         u.profile_image_extension, u.profile_image_uploaded_at, u.profile_image_key,
         CAST(COALESCE((SELECT CASE WHEN f.accepted_at IS NULL THEN 1 ELSE 2 END FROM friendships f
              WHERE (f.user_id1 = $1 AND f.user_id2 = u.user_id) OR (f.user_id1 = u.user_id AND f.user_id2 = $1)), 0)
              AS BIGINT) AS friendship_state,
         CAST((SELECT count(*) FROM ({theirs}) theirs WHERE theirs.friend IN ({mine})) AS BIGINT) AS mutual_friend_count",
        theirs = friends_of("u.user_id"),
        mine = friends_of("$1"),
    )
    });
    &COLUMNS
}

const ORDER: &str = " ORDER BY u.first_name, u.last_name, u.user_id";
pub(super) const PAIR: &str =
    "((user_id1 = $1 AND user_id2 = $2) OR (user_id1 = $2 AND user_id2 = $1))";

/// A user as the audit log names them (their email is on their profile).
fn user(id: &str) -> Actor {
    Actor::user(Some(id.to_owned()), None)
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// How a user search matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Email,
    Name,
}

/// A user search: users (other than the caller) whose email or name contains `text`, in
/// any case; with `friends_only`, only the caller's friends; with `exact`, the whole value.
#[derive(Debug, Clone, Copy)]
pub struct Search<'a> {
    pub by: Match,
    pub text: &'a str,
    pub friends_only: bool,
    pub exact: bool,
}

#[derive(Clone, Debug)]
pub struct SocialStore {
    db: Db,
    /// Profiles created and friendships changed are recorded in the audit log.
    audited: bool,
    clock: Clock,
}

const COMPONENT: &str = "studyhall.social";

impl SocialStore {
    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    pub(super) fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn new(db: &Db, audited: bool, clock: Clock) -> Self {
        SocialStore {
            db: db.clone(),
            audited,
            clock,
        }
    }

    /// Runs `statement` in a transaction of its own, recording `decision` in it when
    /// the statement changed something; how many rows it changed.
    async fn write(
        &self,
        statement: Sql<'_>,
        decision: impl FnOnce() -> Decision,
    ) -> Result<u64, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let changed = statement.execute(&mut tx).await?;
        let decisions: &[_] = if changed > 0 && self.audited {
            &[decision()]
        } else {
            &[]
        };
        studyhall_log::commit(tx, decisions, self.clock.now()).await?;
        Ok(changed)
    }

    #[tracing::instrument(skip(self))]
    pub async fn user(&self, caller: &str, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {} FROM social_users u WHERE u.user_id = $2",
            user_columns()
        );
        Sql::new(&sql)
            .bind(caller)
            .bind(id)
            .fetch_optional(&self.db)
            .await
    }

    /// The `limit` profiles made last, newest first (as the service stores them).
    pub async fn newest(&self, limit: i64) -> Result<Vec<UserRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {} FROM social_users u ORDER BY u.created_at DESC, u.user_id DESC LIMIT $2",
            user_columns()
        );
        Sql::new(&sql)
            .bind("")
            .bind(limit)
            .fetch_all(&self.db)
            .await
    }

    #[tracing::instrument(skip(self))]
    pub async fn create(
        &self,
        id: &str,
        email: &str,
        first_name: &str,
        last_name: &str,
    ) -> Result<bool, sqlx::Error> {
        // A new profile shares nothing but the default allow list, and its text fields
        // are empty strings, as the original's clients expect.
        let sql = "INSERT INTO social_users (user_id, email, first_name, last_name, created_at,
            description, gender, school, work, location, share_mode, domain_allow_array, domain_deny_array)
            VALUES ($1, $2, $3, $4, $5, '', '', '', '', '', $6, $7, $8)";
        let list = |domains: &[&str]| serde_json::Value::from(domains).to_string();
        let insert = Sql::new(sql)
            .bind(id)
            .bind(email)
            .bind(first_name)
            .bind(last_name)
            .bind(self.clock.now())
            .bind(NEW_PROFILE_SHARE_MODE)
            .bind(list(&NEW_PROFILE_ALLOW))
            .bind(list(&NEW_PROFILE_DENY));
        let done = self
            .write(insert, || {
                let actor = Actor::user(Some(id.to_owned()), Some(email.to_owned()));
                Decision::new(COMPONENT, "profile.created", actor, json!({"user": id}))
            })
            .await
            .map(drop);
        match done {
            Ok(()) => Ok(true),
            Err(err) if is_unique_violation(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Writes every editable field of `row` (already merged with the update).
    #[tracing::instrument(skip_all, fields(user = %row.user_id))]
    pub async fn save(&self, row: &UserRow) -> Result<(), sqlx::Error> {
        let sql = "UPDATE social_users SET first_name = $2, last_name = $3, description = $4, dob = $5,
            gender = $6, school = $7, work = $8, location = $9, email_public = $10, dob_public = $11,
            gender_public = $12, school_public = $13, work_public = $14, location_public = $15,
            share_mode = $16, domain_allow_array = $17, domain_deny_array = $18
            WHERE user_id = $1";
        Sql::new(sql)
            .bind(&row.user_id)
            .bind(&row.first_name)
            .bind(&row.last_name)
            .bind(&row.description)
            .bind(&row.dob)
            .bind(&row.gender)
            .bind(&row.school)
            .bind(&row.work)
            .bind(&row.location)
            .bind(row.email_public)
            .bind(row.dob_public)
            .bind(row.gender_public)
            .bind(row.school_public)
            .bind(row.work_public)
            .bind(row.location_public)
            .bind(&row.share_mode)
            .bind(&row.domain_allow_array)
            .bind(&row.domain_deny_array)
            .execute(&self.db)
            .await
            .map(drop)
    }

    /// `user`'s friends (or, with `mutual_with`, those also friends of the caller).
    #[tracing::instrument(skip(self))]
    pub async fn friends(
        &self,
        caller: &str,
        user: &str,
        mutual: bool,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<UserRow>, sqlx::Error> {
        let also = if mutual {
            format!(" AND u.user_id IN ({})", friends_of("$1"))
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT {} FROM social_users u WHERE u.user_id IN ({}){also}{ORDER} LIMIT $3 OFFSET $4",
            user_columns(),
            friends_of("$2")
        );
        Sql::new(&sql)
            .bind(caller)
            .bind(user)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.db)
            .await
    }

    #[tracing::instrument(skip(self))]
    pub async fn friend_count(
        &self,
        caller: &str,
        user: &str,
        mutual: bool,
    ) -> Result<i64, sqlx::Error> {
        let also = if mutual {
            format!(" WHERE theirs.friend IN ({})", friends_of("$1"))
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT CAST(count(*) AS BIGINT) FROM ({}) theirs{also}",
            friends_of("$2")
        );
        Sql::new(&sql)
            .bind(caller)
            .bind(user)
            .fetch_scalar(&self.db)
            .await
            .and_then(|value| value.ok_or(sqlx::Error::RowNotFound))
    }

    #[tracing::instrument(skip(self))]
    pub async fn search(
        &self,
        caller: &str,
        search: &Search<'_>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<UserRow>, sqlx::Error> {
        let Search {
            by,
            text,
            friends_only,
            exact,
        } = *search;
        let text = text.trim().to_lowercase();
        let plain = !exact && !text.contains(['%', '_', '\\']);
        let (op, pattern) = if exact {
            ("=", text)
        } else {
            let escaped: String = text
                .chars()
                .flat_map(|c| {
                    if matches!(c, '%' | '_' | '\\') {
                        vec!['\\', c]
                    } else {
                        vec![c]
                    }
                })
                .collect();
            ("LIKE", format!("%{escaped}%"))
        };
        let escape = if exact { "" } else { " ESCAPE '\\'" };
        let searched = match by {
            Match::Email => "lower(u.email)",
            // A first name, a last name or "first last" containing the text is exactly
            // "first last" containing it.
            Match::Name => "lower(u.first_name || ' ' || u.last_name)",
        };
        let condition = match (by, self.db.dialect()) {
            // The trigram index answers plain substrings; patterns with LIKE's own
            // metacharacters take the escaped scan so their meaning never changes.
            (Match::Email, Dialect::Sqlite) if plain => {
                "u.rowid IN (SELECT rowid FROM social_users_search WHERE email LIKE $2)".to_owned()
            }
            (Match::Name, Dialect::Sqlite) if plain => {
                "u.rowid IN (SELECT rowid FROM social_users_search WHERE full_name LIKE $2)"
                    .to_owned()
            }
            _ => format!("{searched} {op} $2{escape}"),
        };
        // The original's order: friends, then pending requests, then by mutual friends,
        // then matches at the start of the text before those at its end before the rest.
        let score = if exact {
            "3".to_owned()
        } else {
            format!(
                "CASE WHEN {searched} LIKE $5{escape} THEN 3 WHEN {searched} LIKE $6{escape} THEN 2 ELSE 1 END"
            )
        };
        let friends = if friends_only {
            format!(" AND u.user_id IN ({})", friends_of("$1"))
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT {} FROM social_users u WHERE {condition} AND u.user_id <> $1{friends}
             ORDER BY friendship_state DESC, mutual_friend_count DESC, {score} DESC, u.user_id DESC
             LIMIT $3 OFFSET $4",
            user_columns()
        );
        let query = Sql::new(&sql)
            .bind(caller)
            .bind(&pattern)
            .bind(limit)
            .bind(offset);
        let query = match pattern.strip_prefix('%').and_then(|p| p.strip_suffix('%')) {
            Some(escaped) if !exact => query
                .bind(format!("{escaped}%"))
                .bind(format!("%{escaped}")),
            _ => query,
        };
        query.fetch_all(&self.db).await
    }

    /// The row between two users, in either direction.
    pub async fn between(&self, a: &str, b: &str) -> Result<Option<Friendship>, sqlx::Error> {
        let sql = format!(
            "SELECT user_id1, user_id2, requested_at, accepted_at FROM friendships WHERE {PAIR}"
        );
        let row: Option<FriendshipRow> = Sql::new(&sql)
            .bind(a)
            .bind(b)
            .fetch_optional(&self.db)
            .await?;
        Ok(row.map(Friendship::from))
    }

    /// The caller's own pending request to `other`.
    pub async fn sent_request(
        &self,
        caller: &str,
        other: &str,
    ) -> Result<Option<Friendship>, sqlx::Error> {
        let sql = "SELECT user_id1, user_id2, requested_at, accepted_at FROM friendships
            WHERE user_id1 = $1 AND user_id2 = $2 AND accepted_at IS NULL";
        let row: Option<FriendshipRow> = Sql::new(sql)
            .bind(caller)
            .bind(other)
            .fetch_optional(&self.db)
            .await?;
        Ok(row.map(Friendship::from))
    }

    /// Sends a request, or accepts the one `other` already sent the caller. Two users
    /// asking each other at once meet at the one-row-per-pair index: the loser retries
    /// and finds the winner's request, which it accepts.
    #[tracing::instrument(skip(self))]
    pub async fn request(&self, caller: &str, other: &str) -> Result<Requested, StoreError> {
        for _ in 0..3 {
            match self.between(caller, other).await? {
                Some(row) if row.accepted_at.is_some() => return Ok(Requested::AlreadyFriends),
                Some(row) if row.user_id1 == caller => return Ok(Requested::AlreadySent),
                Some(_) => {
                    // They asked first: this accepts it.
                    self.accept(caller, other).await?;
                    return Ok(Requested::Accepted);
                }
                None => {}
            }
            let sql =
                "INSERT INTO friendships (user_id1, user_id2, requested_at) VALUES ($1, $2, $3)";
            let insert = Sql::new(sql)
                .bind(caller)
                .bind(other)
                .bind(self.clock.now());
            let inserted = self
                .write(insert, || {
                    let data = json!({"from": caller, "to": other});
                    Decision::new(COMPONENT, "friend.requested", user(caller), data)
                })
                .await
                .map(drop);
            match inserted {
                Ok(_) => return Ok(Requested::Sent),
                Err(err) if is_unique_violation(&err) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(StoreError::Failed(anyhow::anyhow!(
            "friend request kept colliding"
        )))
    }

    /// Accepts `from`'s pending request to the caller; false if there is none.
    pub async fn accept(&self, caller: &str, from: &str) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE friendships SET accepted_at = $3 WHERE user_id1 = $2 AND user_id2 = $1 AND accepted_at IS NULL";
        let update = Sql::new(sql).bind(caller).bind(from).bind(self.clock.now());
        let done = self
            .write(update, || {
                let data = json!({"from": from, "to": caller});
                Decision::new(COMPONENT, "friend.accepted", user(caller), data)
            })
            .await?;
        Ok(done > 0)
    }

    /// Deletes the pending request between two users (declined or withdrawn).
    pub async fn drop_request(&self, a: &str, b: &str) -> Result<bool, sqlx::Error> {
        let sql = format!("DELETE FROM friendships WHERE {PAIR} AND accepted_at IS NULL");
        let delete = Sql::new(&sql).bind(a).bind(b);
        let done = self
            .write(delete, || {
                let data = json!({"by": a, "other": b});
                Decision::new(COMPONENT, "friend.request_removed", user(a), data)
            })
            .await?;
        Ok(done > 0)
    }

    /// Ends the friendship of `a` and `b`, at the request of `by`.
    pub async fn unfriend(&self, a: &str, b: &str, by: &str) -> Result<bool, sqlx::Error> {
        let sql = format!("DELETE FROM friendships WHERE {PAIR} AND accepted_at IS NOT NULL");
        let delete = Sql::new(&sql).bind(a).bind(b);
        let done = self
            .write(delete, || {
                let data = json!({"users": [a, b]});
                Decision::new(COMPONENT, "friend.removed", user(by), data)
            })
            .await?;
        Ok(done > 0)
    }

    /// Pending requests the caller received, newest first.
    pub async fn received(&self, caller: &str) -> Result<Vec<UserFriendRequest>, sqlx::Error> {
        #[derive(sqlx::FromRow)]
        struct Received {
            #[sqlx(flatten)]
            user: UserRow,
            requested_at: i64,
        }
        let sql = format!(
            "SELECT {}, f.requested_at FROM social_users u
             JOIN friendships f ON f.user_id1 = u.user_id AND f.user_id2 = $1 AND f.accepted_at IS NULL
             ORDER BY f.requested_at DESC, u.user_id",
            user_columns()
        );
        let rows: Vec<Received> = Sql::new(&sql).bind(caller).fetch_all(&self.db).await?;
        Ok(rows
            .into_iter()
            .map(|row| UserFriendRequest {
                summary: row.user.summary(),
                requested_at: studyhall_core::clock::rfc3339(row.requested_at),
            })
            .collect())
    }

    pub async fn all_friends(&self, caller: &str) -> Result<Vec<String>, sqlx::Error> {
        let sql = format!(
            "SELECT friend FROM ({}) f ORDER BY friend",
            friends_of("$1")
        );
        let rows: Vec<(String,)> = Sql::new(&sql).bind(caller).fetch_all(&self.db).await?;
        Ok(rows.into_iter().map(|(friend,)| friend).collect())
    }
}
