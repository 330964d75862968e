//! The hs256 secret: configured, or generated once beside the SQLite file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::config::AuthSettings;
use crate::sensitive::DatabaseUrl;

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
    match std::fs::read_to_string(&path) {
        Ok(secret) if secret.trim().len() >= 32 => return Ok(Some(secret.trim().to_owned())),
        Ok(_) => anyhow::bail!(
            "{} holds no usable secret; delete it to have a new one generated",
            path.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|err| anyhow::anyhow!("no randomness for a secret: {err}"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated the hs256 token secret");
            Ok(Some(secret))
        }
        // Another process created it first: use theirs.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            hs256_secret(settings, database)
        }
        Err(err) => Err(err).with_context(|| format!("creating {}", path.display())),
    }
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
