//! Profile images, as the user-api's clients use them: the client asks for an upload
//! URL, PUTs the file to it, and later asks for a URL to show a user's image. By default
//! the URLs point at this service, which keeps the files in a folder
//! (`STUDYHALL_IMAGES_DIR`): an upload URL carries a one-time secret that expires; an
//! image is stored under a random name (a new one per upload), checked to be the image
//! type it claims, and served only as that type. With `STUDYHALL_S3_BUCKET` they are
//! presigned S3 URLs instead (`super::s3`).

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use super::model::{self, detail, invalid};
use super::routes::{me, my_profile, success, user_not_found};
use super::s3::S3;
use super::store::SocialStore;
use studyhall_auth::Caller;
use studyhall_core::clock::{Clock, Micros};
use studyhall_core::config::ImageSettings;
use studyhall_core::db::Tx;
use studyhall_core::error::{ApiError, Problem};
use studyhall_core::http::extract::AppQuery;
use studyhall_core::sensitive::DatabaseUrl;
use studyhall_core::sql::Sql;

type Result<T> = std::result::Result<T, ApiError>;

/// The largest image accepted (the PageNow client refuses larger files itself).
pub(crate) const MAX_IMAGE_BYTES: usize = 2 * 1024 * 1024;
/// How long an upload URL works.
const UPLOAD_TTL: Duration = Duration::from_secs(10 * 60);

/// Where the images are: a folder (and the address their URLs start with), or an S3
/// bucket.
#[derive(Clone, Debug)]
pub(crate) struct Images {
    dir: Arc<PathBuf>,
    public_url: Option<Arc<str>>,
    s3: Option<Arc<S3>>,
}

impl Images {
    pub(crate) fn new(
        settings: &ImageSettings,
        database: &DatabaseUrl,
        clock: &Clock,
    ) -> anyhow::Result<Images> {
        let dir = settings.images_dir.clone().unwrap_or_else(|| {
            database.sqlite_file().map_or_else(
                || PathBuf::from("studyhall-images"),
                |file| PathBuf::from(format!("{}.images", file.display())),
            )
        });
        let s3 = S3::from_settings(settings, |name| std::env::var(name).ok(), clock.clone())?;
        Ok(Images {
            dir: Arc::new(dir),
            public_url: settings.public_url.as_deref().map(Arc::from),
            s3: s3.map(Arc::new),
        })
    }

    /// Removes a replaced or deleted image (a failure is logged: the image is no
    /// longer anyone's either way).
    async fn forget(&self, key: &str) {
        match &self.s3 {
            Some(s3) => {
                if let Err(err) = s3.delete(key).await {
                    tracing::warn!(error = %format!("{err:#}"), key, "deleting a replaced profile image from S3 failed");
                }
            }
            None => remove(&self.path(key)).await,
        }
    }

    /// `STUDYHALL_PUBLIC_URL`, else the address the request came to.
    fn base(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.public_url {
            return url.to_string();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .filter(|host| !host.is_empty() && host.chars().all(|c| c.is_ascii_graphic()))
            .unwrap_or("127.0.0.1:8080");
        let https = headers
            .get("x-forwarded-proto")
            .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
        format!("{}://{host}", if https { "https" } else { "http" })
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// An image type a profile may have, by the extension the client names it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Png,
    Jpeg,
    Webp,
}

impl Kind {
    fn from_extension(extension: &str) -> Option<Kind> {
        match extension.to_ascii_lowercase().as_str() {
            "png" => Some(Kind::Png),
            "jpeg" | "jpg" => Some(Kind::Jpeg),
            "webp" => Some(Kind::Webp),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Kind::Png => "image/png",
            Kind::Jpeg => "image/jpeg",
            Kind::Webp => "image/webp",
        }
    }

    /// Whether `bytes` start as a file of this type does.
    fn matches(self, bytes: &[u8]) -> bool {
        match self {
            Kind::Png => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            Kind::Jpeg => bytes.starts_with(b"\xff\xd8\xff"),
            Kind::Webp => bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        }
    }
}

/// The extension a client asked for, checked.
fn extension(extension: Option<&str>) -> Result<(String, Kind)> {
    let extension = extension.unwrap_or_default();
    let kind = Kind::from_extension(extension)
        .ok_or_else(|| invalid("image_ext must be one of png, jpeg, jpg, webp."))?;
    Ok((extension.to_ascii_lowercase(), kind))
}

fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|err| ApiError::from(anyhow::anyhow!("no randomness for an image: {err}")))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn digest(secret: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// The image's type: `png`, `jpeg`, `jpg` or `webp`.
    pub image_ext: Option<String>,
}

// Documentation only: the clients send these, and the stored image's own type is used.
#[derive(IntoParams)]
#[allow(dead_code)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImageQuery {
    /// Accepted as the clients send it; the stored image's own type is used.
    pub image_ext: Option<String>,
}

#[derive(IntoParams)]
#[allow(dead_code)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImagesQuery {
    /// Accepted as the clients send it; each stored image's own type is used.
    pub image_ext_arr: Option<String>,
}

/// A URL to PUT the caller's new profile image to (once, within ten minutes).
#[utoipa::path(get, path = "/users/me/profile-image-upload-url", tag = "social", operation_id = "social_image_upload_url",
    params(UploadQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "The URL to PUT the image to, as a JSON string", body = String, content_type = "application/json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The caller has no profile", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an image type accepted", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn upload_url(
    State(store): State<SocialStore>,
    State(images): State<Images>,
    caller: Caller,
    headers: HeaderMap,
    AppQuery(query): AppQuery<UploadQuery>,
) -> Result<Json<String>> {
    let me = me(caller)?;
    let (extension, kind) = extension(query.image_ext.as_deref())?;
    my_profile(&store, &me).await?;
    if let Some(s3) = &images.s3 {
        // S3 does not tell when the file arrives: the image is the user's from now on,
        // as the original made it.
        let key = format!("profile-images/{}.{extension}", random_hex()?);
        let url = s3.upload_url(&key, kind.content_type(), UPLOAD_TTL).await?;
        let mut tx = store.db().begin_write().await?;
        let old = set_image(
            &mut tx,
            &me.id,
            Some((&extension, &key)),
            store.clock().now(),
        )
        .await?;
        tx.commit().await?;
        if let Some(old) = old {
            images.forget(&old).await;
        }
        return Ok(Json(url));
    }
    let secret = format!("{}{}", random_hex()?, random_hex()?);
    let now = store.clock().now();
    let mut tx = store.db().begin_write().await?;
    Sql::new("DELETE FROM profile_image_uploads WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut tx)
        .await?;
    Sql::new(
        "INSERT INTO profile_image_uploads (token_digest, user_id, extension, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(digest(&secret))
    .bind(&me.id)
    .bind(&extension)
    .bind(now.plus(studyhall_core::clock::duration_micros(UPLOAD_TTL)))
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(Json(format!(
        "{}/users/images/upload/{secret}",
        images.base(&headers)
    )))
}

/// Stores the image an upload URL was made for; the file must be the type named then.
#[utoipa::path(put, path = "/users/images/upload/{secret}", tag = "social", operation_id = "social_image_upload",
    params(("secret" = String, Path, description = "From the upload URL")),
    request_body(content = Vec<u8>, description = "The image file (at most 2 MiB)", content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Stored: it is the user's profile image now"),
        (status = 403, description = "The upload URL is unknown, used or expired", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than 2 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not an image of the type the URL was made for", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn upload(
    State(store): State<SocialStore>,
    State(images): State<Images>,
    Path(secret): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<StatusCode> {
    let forbidden = || {
        detail(
            StatusCode::FORBIDDEN,
            "This upload URL is unknown, used or expired; ask for a new one.",
        )
    };
    let token = digest(&secret);
    let now = store.clock().now();
    let pending: Option<String> = Sql::new(
        "SELECT extension FROM profile_image_uploads WHERE token_digest = $1 AND expires_at > $2",
    )
    .bind(&token)
    .bind(now)
    .fetch_scalar(store.db())
    .await?;
    let Some((extension, kind)) =
        pending.and_then(|ext| Some((ext.clone(), Kind::from_extension(&ext)?)))
    else {
        return Err(forbidden());
    };
    let body = match body {
        Ok(body) if body.len() <= MAX_IMAGE_BYTES => body,
        Err(err) if err.status() != StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::bad_request(format!(
                "Could not read the image: {err}"
            )))
        }
        _ => {
            return Err(detail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "An image may be at most 2 MiB.",
            ))
        }
    };
    if !kind.matches(&body) {
        return Err(detail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("The file is not a {} image.", kind.content_type()),
        ));
    }
    let file = format!("{}.{extension}", random_hex()?);
    write_durably(&images.path(&file), body).await?;
    // The URL is spent in the transaction that makes the image the user's.
    let mut tx = store.db().begin_write().await?;
    let user: Option<String> = Sql::new(
        "DELETE FROM profile_image_uploads WHERE token_digest = $1 AND expires_at > $2 RETURNING user_id",
    )
    .bind(&token)
    .bind(now)
    .fetch_scalar(&mut tx)
    .await?;
    let Some(user) = user else {
        drop(tx);
        remove(&images.path(&file)).await;
        return Err(forbidden());
    };
    let old = set_image(&mut tx, &user, Some((&extension, &file)), now).await?;
    tx.commit().await?;
    if let Some(old) = old {
        images.forget(&old).await;
    }
    Ok(StatusCode::OK)
}

/// Makes `image` (its extension and key) `user`'s, or none; the key it replaces.
async fn set_image(
    tx: &mut Tx,
    user: &str,
    image: Option<(&str, &str)>,
    now: Micros,
) -> std::result::Result<Option<String>, sqlx::Error> {
    let old: Option<Option<String>> =
        Sql::new("SELECT profile_image_key FROM social_users WHERE user_id = $1")
            .bind(user)
            .fetch_scalar(&mut *tx)
            .await?;
    Sql::new(
        "UPDATE social_users SET profile_image_extension = $2, profile_image_uploaded_at = $3,
             profile_image_key = $4 WHERE user_id = $1",
    )
    .bind(user)
    .bind(image.map(|(extension, _)| extension))
    .bind(image.map(|_| now))
    .bind(image.map(|(_, key)| key))
    .execute(tx)
    .await?;
    Ok(old.flatten())
}

/// Writes `bytes` to `path` so that it is whole on disk before it is named there.
async fn write_durably(path: &FsPath, bytes: Bytes) -> Result<()> {
    let (path, partial) = (path.to_owned(), path.with_extension("partial"));
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&partial, &path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(|err| anyhow::anyhow!("storing an image: {err}"))?
    .map_err(|err| anyhow::anyhow!("storing an image: {err}"))?;
    Ok(())
}

async fn remove(path: &FsPath) {
    if let Err(err) = tokio::fs::remove_file(path).await {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(error = %err, file = %path.display(), "removing a replaced profile image failed");
        }
    }
}

/// A profile image, by the name the image URL gives it.
#[utoipa::path(get, path = "/users/images/{file}", tag = "social", operation_id = "social_image",
    params(("file" = String, Path, description = "From an image URL")),
    responses(
        (status = 200, description = "The image, as its own type only", content_type = "image/*"),
        (status = 404, description = "No such image (replaced or deleted)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn image(
    State(images): State<Images>,
    Path(file): Path<String>,
) -> Result<Response> {
    let not_found = || detail(StatusCode::NOT_FOUND, "No such image");
    let (name, extension) = file.split_once('.').ok_or_else(not_found)?;
    let kind = Kind::from_extension(extension).ok_or_else(not_found)?;
    if name.len() != 32
        || !name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(not_found());
    }
    let bytes = match tokio::fs::read(images.path(&file)).await {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(err) => return Err(anyhow::anyhow!("reading an image: {err}").into()),
    };
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(kind.content_type()),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; sandbox"),
        ),
        (
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("inline"),
        ),
        // A name is never reused: a replaced image gets a new one.
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=86400, immutable"),
        ),
    ];
    Ok((headers, bytes).into_response())
}

/// The URL of a user's image, if they have one.
async fn image_url(
    images: &Images,
    headers: &HeaderMap,
    row: &model::UserRow,
) -> Result<Option<String>> {
    let Some(key) = &row.profile_image_key else {
        return Ok(None);
    };
    Ok(Some(match &images.s3 {
        Some(s3) => {
            let kind = row
                .profile_image_extension
                .as_deref()
                .and_then(Kind::from_extension)
                .unwrap_or(Kind::Png);
            s3.show_url(key, kind.content_type()).await?
        }
        None => format!("{}/users/images/{key}", images.base(headers)),
    }))
}

/// A URL to show a user's profile image.
#[utoipa::path(get, path = "/users/id/{user_id}/profile-image-url", tag = "social", operation_id = "social_image_url",
    params(("user_id" = String, Path), ImageQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "The image's URL, as a JSON string", body = String, content_type = "application/json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or no image", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn image_url_of(
    State(store): State<SocialStore>,
    State(images): State<Images>,
    caller: Caller,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> Result<Json<String>> {
    let me = me(caller)?;
    let row = store
        .user(&me.id, &model::user_id(&user_id)?)
        .await?
        .ok_or_else(user_not_found)?;
    image_url(&images, &headers, &row)
        .await?
        .map(Json)
        .ok_or_else(|| detail(StatusCode::NOT_FOUND, "No profile image"))
}

/// URLs to show several users' profile images: `{user_id: url}`, null for a user
/// without one; unknown users left out.
#[utoipa::path(get, path = "/users/ids/{ids}/profile-image-url", tag = "social", operation_id = "social_image_urls",
    params(("ids" = String, Path, description = "Comma-separated user ids (at most 100)"), ImagesQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Each user's image URL", body = Object),
        (status = 400, description = "Too many ids", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad id", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn image_urls_of(
    State(store): State<SocialStore>,
    State(images): State<Images>,
    caller: Caller,
    headers: HeaderMap,
    Path(ids): Path<String>,
) -> Result<Json<serde_json::Map<String, Value>>> {
    let me = me(caller)?;
    let mut urls = serde_json::Map::new();
    for id in model::user_ids(&ids)? {
        if let Some(row) = store.user(&me.id, &id).await? {
            let url = image_url(&images, &headers, &row).await?;
            let url = url.map_or(Value::Null, Value::String);
            urls.insert(row.user_id, url);
        }
    }
    Ok(Json(urls))
}

/// Removes the caller's profile image.
#[utoipa::path(delete, path = "/users/me/profile-image", tag = "social", operation_id = "social_image_delete",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Removed (or there was none)", body = Object, example = json!({"success": true})),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The caller has no profile", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn delete(
    State(store): State<SocialStore>,
    State(images): State<Images>,
    caller: Caller,
) -> Result<Json<Value>> {
    let me = me(caller)?;
    my_profile(&store, &me).await?;
    let mut tx = store.db().begin_write().await?;
    let old = set_image(&mut tx, &me.id, None, store.clock().now()).await?;
    tx.commit().await?;
    if let Some(old) = old {
        images.forget(&old).await;
    }
    Ok(success())
}
