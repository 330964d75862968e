//! The hs256 secret: configured, or generated once beside the SQLite file.

use std::path::PathBuf;

use studyhall_core::config::AuthSettings;
use studyhall_core::sensitive::DatabaseUrl;

/// The configured secret; else, with SQLite, the one kept beside the database file
/// (created on first use, readable only by its owner); else none.
pub fn hs256_secret(
    settings: &AuthSettings,
    database: &DatabaseUrl,
) -> anyhow::Result<Option<String>> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(Some(secret.expose().to_owned()));
    }
    let Some(path) = secret_path(database) else {
        return Ok(None);
    };
    studyhall_core::sensitive::kept_in_file(
        &path,
        "the hs256 token secret",
        |secret| secret.len() >= 32,
        || {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes)
                .map_err(|err| anyhow::anyhow!("no randomness for a secret: {err}"))?;
            Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
        },
    )
    .map(Some)
}

/// `sqlite://dir/studyhall.db?mode=rwc` → `dir/studyhall.db.jwt-secret`.
fn secret_path(database: &DatabaseUrl) -> Option<PathBuf> {
    let file = database.sqlite_file()?;
    Some(PathBuf::from(format!("{}.jwt-secret", file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_lives_beside_the_sqlite_file() {
        let url = |u: &str| u.parse::<DatabaseUrl>().unwrap();
        assert_eq!(
            secret_path(&url("sqlite://studyhall.db")),
            Some("studyhall.db.jwt-secret".into())
        );
        assert_eq!(
            secret_path(&url("sqlite:///var/lib/s.db?mode=rwc")),
            Some("/var/lib/s.db.jwt-secret".into())
        );
        assert_eq!(secret_path(&url("postgres://db/x")), None);
    }

    #[test]
    fn a_generated_secret_is_kept_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let url: DatabaseUrl = format!("sqlite://{}", dir.path().join("a.db").display())
            .parse()
            .unwrap();
        let settings = AuthSettings::default();
        let first = hs256_secret(&settings, &url).unwrap().unwrap();
        assert_eq!(hs256_secret(&settings, &url).unwrap().unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("a.db.jwt-secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
