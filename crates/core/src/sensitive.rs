//! Values that must never reach a log line: secrets, and URLs that may carry a password.
//! Their `Debug` and `Display` hide what is secret; only `expose` hands it out.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

/// A secret of at least 16 characters (the hs256 key, the admin token).
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether `sent` is this secret, in time that does not depend on where they differ.
    pub fn matches(&self, sent: &str) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        // Digests first, so that the length of the secret does not show either.
        let sent = Sha256::digest(sent.as_bytes());
        let expected = Sha256::digest(self.expose().as_bytes());
        sent.ct_eq(&expected).into()
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.chars().count() < 16 {
            return Err("must be at least 16 characters".into());
        }
        Ok(Secret(SecretString::from(s)))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `Display` with the password masked, and `Debug` the same inside the type's name.
macro_rules! masked_display {
    ($url:ident) => {
        impl fmt::Display for $url {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&mask_password(&self.0))
            }
        }

        impl fmt::Debug for $url {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($url))
            }
        }
    };
}

/// A database URL: `sqlite:` or `postgres:`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }

    /// The SQLite database file (`sqlite://dir/studyhall.db?mode=rwc` →
    /// `dir/studyhall.db`); `None` for PostgreSQL and in-memory databases.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        let rest = self.0.strip_prefix("sqlite:")?;
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path.contains(":memory:") {
            return None;
        }
        Some(std::path::PathBuf::from(path))
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let scheme = s.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" | "postgres" | "postgresql" => Ok(DatabaseUrl(s.to_owned())),
            _ => Err(format!(
                "unsupported database URL scheme `{scheme}`: use sqlite://FILE or postgres://USER@HOST/DB"
            )),
        }
    }
}

masked_display!(DatabaseUrl);

/// A Redis URL: `redis://` or `rediss://` (TLS).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for RedisUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split("://").next() {
            Some("redis" | "rediss") if s.contains("://") => Ok(RedisUrl(s.to_owned())),
            _ => Err("use redis://HOST:PORT or rediss://HOST:PORT".into()),
        }
    }
}

masked_display!(RedisUrl);

/// `scheme://user:password@host/…` → `scheme://user:***@host/…`, for logs and errors.
/// A URL that does not parse is not shown at all if it could hold a password.
pub fn mask_password(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password fails only for URLs that cannot have one.
            if parsed.set_password(Some("***")).is_ok() {
                parsed.to_string()
            } else {
                hidden(text)
            }
        }
        Ok(_) => text.to_owned(),
        Err(_) if text.contains('@') => hidden(text),
        Err(_) => text.to_owned(),
    }
}

fn hidden(text: &str) -> String {
    let scheme = text.split("://").next().unwrap_or_default();
    format!("{scheme}://*** (the URL does not parse; hidden as it may hold a password)")
}

/// The secret kept in `path`: read when the file exists, else made by `make` and
/// written there, readable only by its owner. Two processes starting at once agree on
/// one: the file is created exclusively, and the loser reads the winner's.
pub fn kept_in_file(
    path: &std::path::Path,
    what: &str,
    usable: impl Fn(&str) -> bool,
    make: impl Fn() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::io::Write;
    for _ in 0..2 {
        match std::fs::read_to_string(path) {
            Ok(kept) if usable(kept.trim()) => return Ok(kept.trim().to_owned()),
            Ok(_) => anyhow::bail!(
                "{} holds no usable {what}; delete it to have a new one generated",
                path.display()
            ),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        }
        let secret = make()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(secret.as_bytes())
                    .with_context(|| format!("writing {}", path.display()))?;
                tracing::info!(path = %path.display(), "generated {what}");
                return Ok(secret);
            }
            // Another process created it first: use theirs.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err).with_context(|| format!("creating {}", path.display())),
        }
    }
    anyhow::bail!("{} keeps appearing and vanishing", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_never_displayed() {
        let url: DatabaseUrl = "postgres://app:s3cret@db:5432/studyhall".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://app:***@db:5432/studyhall");
        assert!(!format!("{url:?}").contains("s3cret"));
    }

    #[test]
    fn the_password_is_masked_beside_query_parameters_and_in_redis_urls() {
        let url: DatabaseUrl = "postgres://app:p@ss@db/sh?sslmode=verify-full&sslrootcert=/a@b.pem"
            .parse()
            .unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db/sh?sslmode=verify-full&sslrootcert=/a@b.pem"
        );
        assert_eq!(
            mask_password("rediss://:t0ken@cache.example:6379"),
            "rediss://:***@cache.example:6379"
        );
        let sqlite: DatabaseUrl = "sqlite://data/studyhall.db?mode=rwc".parse().unwrap();
        assert_eq!(sqlite.to_string(), "sqlite://data/studyhall.db?mode=rwc");
    }

    #[test]
    fn an_unparseable_url_with_a_password_is_hidden_whole() {
        let shown = mask_password("postgres://app:s3cret@[bad/studyhall");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.starts_with("postgres://"), "{shown}");
    }

    #[test]
    fn unknown_schemes_are_refused_with_the_scheme_named() {
        let err = "mysql://x".parse::<DatabaseUrl>().unwrap_err();
        assert!(err.contains("mysql"), "{err}");
    }

    #[test]
    fn secrets_compare_whole_and_never_print() {
        let secret: Secret = "0123456789abcdef".parse().unwrap();
        assert!(secret.matches("0123456789abcdef"));
        assert!(!secret.matches("0123456789abcdeF"));
        assert!(!secret.matches("0123456789abcde"));
        assert!(!format!("{secret:?}").contains("0123"));
        assert!("short".parse::<Secret>().is_err());
    }
}
