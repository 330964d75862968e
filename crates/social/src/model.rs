//! Profiles, friendships and the user-api's shapes and validation.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use studyhall_core::clock::Micros;
use studyhall_core::error::ApiError;

pub const MAX_NAME: usize = 100;
pub const MAX_DESCRIPTION: usize = 1000;
pub const MAX_FIELD: usize = 200;
pub const MAX_DOMAIN: usize = 253;
pub const MAX_DOMAINS: usize = 500;
pub const MAX_IDS: usize = 100;
pub const MAX_PAGE: i64 = 100;

/// A stored profile with the caller-relative figures the summaries need.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub description: Option<String>,
    pub dob: Option<String>,
    pub gender: Option<String>,
    pub school: Option<String>,
    pub work: Option<String>,
    pub location: Option<String>,
    pub email_public: bool,
    pub dob_public: bool,
    pub gender_public: bool,
    pub school_public: bool,
    pub work_public: bool,
    pub location_public: bool,
    pub share_mode: String,
    pub domain_allow_array: String,
    pub domain_deny_array: String,
    pub profile_image_extension: Option<String>,
    pub profile_image_uploaded_at: Option<i64>,
    /// The name its image is stored under (see `social::images`).
    pub profile_image_key: Option<String>,
    /// 0 none, 1 pending (either way), 2 friends — relative to the caller.
    pub friendship_state: i64,
    pub mutual_friend_count: i64,
}

/// What a new profile shares: nothing by default, as the original created profiles,
/// since its browser extension reports every page a `default_all` profile visits.
pub const NEW_PROFILE_SHARE_MODE: &str = "default_none";

/// The sites a new profile shares even so (news, reference, learning and developer
/// sites), the original's default allow list.
pub const NEW_PROFILE_ALLOW: [&str; 66] = [
    "wikipedia.org",
    "nytimes.com",
    "forbes.com",
    "cnn.com",
    "cnbc.com",
    "medium.com",
    "washingtonpost.com",
    "brunch.co.kr",
    "stackoverflow.com",
    "stackexchange.com",
    "techcrunch.com",
    "crunchbase.com",
    "nbcnews.com",
    "huffpost.com",
    "buzzfeednews.com",
    "foxnews.com",
    "espn.com",
    "cbs.com",
    "cbsnews.com",
    "npr.org",
    "tistory.com",
    "cnet.com",
    "noninertialframe.com",
    "reuters.com",
    "apnews.com",
    "politico.com",
    "kaggle.com",
    "udemy.com",
    "udacity.com",
    "coursera.org",
    "github.com",
    "bloomberg.com",
    "fool.com",
    "python.org",
    "geeksforgeeks.org",
    "leetcode.com",
    "towardsdatascience.com",
    "nfl.com",
    "wsj.com",
    "usnews.com",
    "tmz.com",
    "businessinsider.com",
    "latimes.com",
    "techmeme.com",
    "engadget.com",
    "theverge.com",
    "ycombinator.com",
    "gizmodo.com",
    "producthunt.com",
    "venturebeat.com",
    "wired.com",
    "technologyreview.com",
    "androidcentral.com",
    "androidauthority.com",
    "vox.com",
    "fortune.com",
    "arxiv.org",
    "openai.com",
    "researchgate.net",
    "machinelearningmastery.com",
    "aitrends.com",
    "artificial-intelligence.blog",
    "news.mit.edu",
    "sciencedaily.com",
    "research.google",
    "kdnuggets.com",
];

/// The sites a new profile never shares, the original's default deny list.
pub const NEW_PROFILE_DENY: [&str; 7] = [
    "facebook.com",
    "instagram.com",
    "amazon.com",
    "twitter.com",
    "messenger.com",
    "gmail.com",
    "mail.google.com",
];

/// A count of friends, in the original's shape: its clients read `count_1`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"count_1": 3}))]
pub struct FriendCount {
    pub count_1: i64,
}

/// `UserSummary`: what lists show.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserSummary {
    pub user_id: String,
    pub first_name: String,
    pub last_name: String,
    pub description: Option<String>,
    /// Profile images are not part of this service: always null.
    pub profile_image_uploaded_at: Option<String>,
    pub profile_image_extension: Option<String>,
    /// 0 none, 1 pending, 2 friends, relative to the caller.
    pub friendship_state: i64,
    pub mutual_friend_count: i64,
}

/// `UserPublic`: the summary plus the fields the user made public (others null).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserPublic {
    #[serde(flatten)]
    pub summary: UserSummary,
    pub dob: Option<String>,
    pub gender: Option<String>,
    pub school: Option<String>,
    pub work: Option<String>,
    pub location: Option<String>,
}

/// `UserPrivate`: everything, for the user themself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserPrivate {
    #[serde(flatten)]
    pub public: UserPublic,
    pub email: String,
    pub email_public: bool,
    pub dob_public: bool,
    pub gender_public: bool,
    pub school_public: bool,
    pub work_public: bool,
    pub location_public: bool,
    pub share_mode: String,
    pub domain_allow_array: Vec<String>,
    pub domain_deny_array: Vec<String>,
}

/// A pending request received: the sender's summary and when they asked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserFriendRequest {
    #[serde(flatten)]
    pub summary: UserSummary,
    pub requested_at: String,
}

impl UserRow {
    pub fn summary(&self) -> UserSummary {
        UserSummary {
            user_id: self.user_id.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            description: self.description.clone(),
            profile_image_uploaded_at: self
                .profile_image_uploaded_at
                .map(studyhall_core::clock::rfc3339),
            profile_image_extension: self.profile_image_extension.clone(),
            friendship_state: self.friendship_state,
            mutual_friend_count: self.mutual_friend_count,
        }
    }

    pub fn public(&self) -> UserPublic {
        let shown =
            |public: bool, value: &Option<String>| if public { value.clone() } else { None };
        UserPublic {
            summary: self.summary(),
            dob: shown(self.dob_public, &self.dob),
            gender: shown(self.gender_public, &self.gender),
            school: shown(self.school_public, &self.school),
            work: shown(self.work_public, &self.work),
            location: shown(self.location_public, &self.location),
        }
    }

    pub fn private(&self) -> UserPrivate {
        let mut public = self.public();
        public.dob.clone_from(&self.dob);
        public.gender.clone_from(&self.gender);
        public.school.clone_from(&self.school);
        public.work.clone_from(&self.work);
        public.location.clone_from(&self.location);
        let list = |json: &str| serde_json::from_str::<Vec<String>>(json).unwrap_or_default();
        UserPrivate {
            public,
            email: self.email.clone(),
            email_public: self.email_public,
            dob_public: self.dob_public,
            gender_public: self.gender_public,
            school_public: self.school_public,
            work_public: self.work_public,
            location_public: self.location_public,
            share_mode: self.share_mode.clone(),
            domain_allow_array: list(&self.domain_allow_array),
            domain_deny_array: list(&self.domain_deny_array),
        }
    }
}

/// A friendship row as `GET /friendship/check` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Friendship {
    pub user_id1: String,
    pub user_id2: String,
    pub requested_at: String,
    pub accepted_at: Option<String>,
}

/// A friendship as stored: Unix microseconds.
#[derive(Debug, sqlx::FromRow)]
pub struct FriendshipRow {
    pub user_id1: String,
    pub user_id2: String,
    pub requested_at: Micros,
    pub accepted_at: Option<Micros>,
}

impl From<FriendshipRow> for Friendship {
    fn from(row: FriendshipRow) -> Self {
        Friendship {
            user_id1: row.user_id1,
            user_id2: row.user_id2,
            requested_at: row.requested_at.rfc3339(),
            accepted_at: row.accepted_at.map(Micros::rfc3339),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUser {
    #[schema(max_length = 100, pattern = "\\S")]
    pub first_name: String,
    #[schema(max_length = 100, pattern = "\\S")]
    pub last_name: String,
}

/// `UserUpdate`: every field optional; only those sent change.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UserUpdate {
    #[schema(max_length = 100, pattern = "\\S")]
    pub first_name: Option<String>,
    #[schema(max_length = 100, pattern = "\\S")]
    pub last_name: Option<String>,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    #[schema(max_length = 200)]
    pub dob: Option<String>,
    #[schema(max_length = 200)]
    pub gender: Option<String>,
    #[schema(max_length = 200)]
    pub school: Option<String>,
    #[schema(max_length = 200)]
    pub work: Option<String>,
    #[schema(max_length = 200)]
    pub location: Option<String>,
    pub email_public: Option<bool>,
    pub dob_public: Option<bool>,
    pub gender_public: Option<bool>,
    pub school_public: Option<bool>,
    pub work_public: Option<bool>,
    pub location_public: Option<bool>,
    /// `default_all` or `default_none`.
    #[schema(pattern = "^(default_all|default_none)$")]
    pub share_mode: Option<String>,
    pub domain_allow_array: Option<Vec<String>>,
    pub domain_deny_array: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FriendRequestBody {
    #[schema(pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$")]
    pub user_id2: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AcceptBody {
    #[schema(pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$")]
    pub user_id1: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UnfriendBody {
    #[schema(pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$")]
    pub user_id1: String,
    #[schema(pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$")]
    pub user_id2: String,
}

/// A 4xx whose `detail` is FastAPI's field; 400 and 422 alike.
pub fn detail(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(status, message)
}

pub fn invalid(message: impl Into<String>) -> ApiError {
    detail(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// A comma-separated list of user ids (`/users/ids/{ids}`): at most [`MAX_IDS`], each
/// checked, blanks skipped.
pub fn user_ids(list: &str) -> Result<Vec<String>, ApiError> {
    let ids: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect();
    if ids.len() > MAX_IDS {
        return Err(detail(
            StatusCode::BAD_REQUEST,
            format!("At most {MAX_IDS} ids at once"),
        ));
    }
    ids.into_iter().map(user_id).collect()
}

pub fn name(field: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_NAME {
        return Err(invalid(format!(
            "{field} must be 1 to {MAX_NAME} characters."
        )));
    }
    Ok(value.to_owned())
}

pub fn optional_text(field: &str, value: &str, max: usize) -> Result<Option<String>, ApiError> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(invalid(format!(
            "{field} must be at most {max} characters."
        )));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

pub fn dob(value: &str) -> Result<Option<String>, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    time::Date::parse(
        value,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map(|_| Some(value.to_owned()))
    .map_err(|_| invalid("dob must be a date as YYYY-MM-DD."))
}

pub fn share_mode(value: &str) -> Result<String, ApiError> {
    match value {
        "default_all" | "default_none" => Ok(value.to_owned()),
        _ => Err(invalid(
            "share_mode must be `default_all` or `default_none`.",
        )),
    }
}

/// A domain list: at most 500 entries of at most 253 characters, stored as JSON.
pub fn domains(list: &[String]) -> Result<String, ApiError> {
    if list.len() > MAX_DOMAINS {
        return Err(invalid(format!(
            "A domain list holds at most {MAX_DOMAINS} entries."
        )));
    }
    let mut cleaned = Vec::with_capacity(list.len());
    for domain in list {
        let domain = domain.trim().to_ascii_lowercase();
        let ok = !domain.is_empty()
            && domain.len() <= MAX_DOMAIN
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !ok {
            return Err(invalid(format!(
                "`{domain}` is not a domain name (at most {MAX_DOMAIN} characters)."
            )));
        }
        cleaned.push(Value::String(domain));
    }
    Ok(Value::Array(cleaned).to_string())
}

/// A user id in a path or body: what tokens carry, up to 128 characters.
pub fn user_id(value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 128 || value.chars().any(char::is_control) {
        return Err(detail(
            StatusCode::BAD_REQUEST,
            "A user id is 1 to 128 printable characters.",
        ));
    }
    Ok(value.to_owned())
}

/// `limit`/`offset` as the user-api read them.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Page size; capped at 100.
    #[param(minimum = 0)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
    /// Friend searches: match the whole value instead of a substring.
    pub exact: Option<bool>,
}

impl Page {
    /// (limit, offset) with the seed's rules: negatives are a 400, limit caps at 100.
    pub fn bounds(&self, default_limit: i64) -> Result<(i64, i64), ApiError> {
        let (limit, offset) = (
            self.limit.unwrap_or(default_limit),
            self.offset.unwrap_or(0),
        );
        if limit < 0 || offset < 0 {
            return Err(detail(
                StatusCode::BAD_REQUEST,
                "Limit and offset cannot be negative",
            ));
        }
        Ok((limit.min(MAX_PAGE), offset))
    }
}

impl UserUpdate {
    /// Applies the sent fields to `row`, validating each.
    pub fn apply(self, row: &mut UserRow) -> Result<(), ApiError> {
        if let Some(value) = self.first_name {
            row.first_name = name("first_name", &value)?;
        }
        if let Some(value) = self.last_name {
            row.last_name = name("last_name", &value)?;
        }
        if let Some(value) = self.description {
            row.description = optional_text("description", &value, MAX_DESCRIPTION)?;
        }
        if let Some(value) = self.dob {
            row.dob = dob(&value)?;
        }
        for (field, value, slot) in [
            ("gender", self.gender, &mut row.gender),
            ("school", self.school, &mut row.school),
            ("work", self.work, &mut row.work),
            ("location", self.location, &mut row.location),
        ] {
            if let Some(value) = value {
                *slot = optional_text(field, &value, MAX_FIELD)?;
            }
        }
        for (value, slot) in [
            (self.email_public, &mut row.email_public),
            (self.dob_public, &mut row.dob_public),
            (self.gender_public, &mut row.gender_public),
            (self.school_public, &mut row.school_public),
            (self.work_public, &mut row.work_public),
            (self.location_public, &mut row.location_public),
        ] {
            if let Some(value) = value {
                *slot = value;
            }
        }
        if let Some(value) = self.share_mode {
            row.share_mode = share_mode(&value)?;
        }
        if let Some(list) = self.domain_allow_array {
            row.domain_allow_array = domains(&list)?;
        }
        if let Some(list) = self.domain_deny_array {
            row.domain_deny_array = domains(&list)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_seeds_rules() {
        let page = |limit, offset| Page {
            limit,
            offset,
            exact: None,
        };
        assert_eq!(page(None, None).bounds(15).unwrap(), (15, 0));
        assert_eq!(page(Some(500), Some(3)).bounds(15).unwrap(), (100, 3));
        assert!(page(Some(-1), None).bounds(15).is_err());
        assert!(page(None, Some(-1)).bounds(15).is_err());
    }

    #[test]
    fn fields_are_validated() {
        assert!(name("first_name", " ").is_err());
        assert!(name("first_name", &"x".repeat(101)).is_err());
        assert_eq!(name("first_name", " Ada ").unwrap(), "Ada");
        assert!(dob("2001-02-30").is_err());
        assert_eq!(dob("2001-02-28").unwrap().as_deref(), Some("2001-02-28"));
        assert!(share_mode("everyone").is_err());
        assert_eq!(
            domains(&["Example.COM".into()]).unwrap(),
            r#"["example.com"]"#
        );
        assert!(domains(&["bad domain".into()]).is_err());
        assert!(domains(&vec!["a.com".to_owned(); 501]).is_err());
    }
}
