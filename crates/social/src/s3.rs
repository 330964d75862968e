//! Profile images in an S3 bucket (`STUDYHALL_S3_BUCKET`), as the user-api kept them:
//! the client PUTs the file straight to a presigned URL and shows it from another, so
//! every instance sees the same images. URLs are signed (AWS Signature V4, by
//! `rusty-s3`) at the service clock's time, with the credentials of the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or, on ECS, of
//! the task role, fetched from the container credentials endpoint and renewed before
//! they expire.

use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde::Deserialize;
use tokio::sync::Mutex;

use studyhall_core::clock::{Clock, Micros};
use studyhall_core::config::ImageSettings;

/// How long a URL to show an image works.
const SHOW_FOR: Duration = Duration::from_secs(3600);
/// Where ECS serves a task role's credentials (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`).
const ECS_CREDENTIALS: &str = "http://169.254.170.2";
/// Renew temporary credentials this long before they expire.
const RENEW_BEFORE_US: i64 = 5 * 60 * 1_000_000;

#[derive(Debug)]
pub(crate) struct S3 {
    bucket: Bucket,
    credentials: Source,
    clock: Clock,
    http: reqwest::Client,
}

/// Where the signing credentials come from.
#[derive(Debug)]
enum Source {
    Fixed(Credentials),
    /// The ECS task role: the endpoint's path, and the last credentials with their expiry.
    Ecs(String, Mutex<Option<(Credentials, Micros)>>),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EcsCredentials {
    access_key_id: String,
    secret_access_key: String,
    token: String,
    expiration: String,
}

impl S3 {
    /// The bucket of `STUDYHALL_S3_BUCKET`, if set, with its credentials from `env`.
    pub(crate) fn from_settings(
        settings: &ImageSettings,
        env: impl Fn(&str) -> Option<String>,
        clock: Clock,
    ) -> anyhow::Result<Option<S3>> {
        let Some(name) = settings.s3_bucket.clone() else {
            return Ok(None);
        };
        let region = settings
            .s3_region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .ok_or_else(|| {
                anyhow::anyhow!("STUDYHALL_S3_BUCKET needs STUDYHALL_S3_REGION (or AWS_REGION)")
            })?;
        let (endpoint, style) = match &settings.s3_endpoint {
            // An S3-compatible server: buckets in the path.
            Some(endpoint) => (endpoint.clone(), UrlStyle::Path),
            None if region == "us-east-1" => {
                ("https://s3.amazonaws.com".to_owned(), UrlStyle::VirtualHost)
            }
            None => (
                format!("https://s3.{region}.amazonaws.com"),
                UrlStyle::VirtualHost,
            ),
        };
        let endpoint = endpoint
            .parse()
            .map_err(|err| anyhow::anyhow!("STUDYHALL_S3_ENDPOINT {endpoint}: {err}"))?;
        let bucket = Bucket::new(endpoint, style, name, region)
            .map_err(|err| anyhow::anyhow!("STUDYHALL_S3_BUCKET: {err}"))?;
        let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(key), Some(secret)) => Source::Fixed(match env("AWS_SESSION_TOKEN") {
                Some(token) => Credentials::new_with_token(key, secret, token),
                None => Credentials::new(key, secret),
            }),
            _ => match env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
                Some(path) => Source::Ecs(path, Mutex::new(None)),
                None => anyhow::bail!(
                    "STUDYHALL_S3_BUCKET needs credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an ECS task role"
                ),
            },
        };
        Ok(Some(S3 {
            bucket,
            credentials,
            clock,
            http: reqwest::Client::new(),
        }))
    }

    async fn credentials(&self) -> anyhow::Result<Credentials> {
        let (path, cached) = match &self.credentials {
            Source::Fixed(credentials) => return Ok(credentials.clone()),
            Source::Ecs(path, cached) => (path, cached),
        };
        let mut cached = cached.lock().await;
        let now = self.clock.now();
        if let Some((credentials, expires)) = cached.as_ref() {
            if now.plus(RENEW_BEFORE_US) < *expires {
                return Ok(credentials.clone());
            }
        }
        let fetched: EcsCredentials = self
            .http
            .get(format!("{ECS_CREDENTIALS}{path}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let expires = time::OffsetDateTime::parse(
            &fetched.expiration,
            &time::format_description::well_known::Rfc3339,
        )
        .map(Micros::from)
        .map_err(|err| {
            anyhow::anyhow!(
                "the task role's credentials expire at {:?}: {err}",
                fetched.expiration
            )
        })?;
        let credentials = Credentials::new_with_token(
            fetched.access_key_id,
            fetched.secret_access_key,
            fetched.token,
        );
        *cached = Some((credentials.clone(), expires));
        Ok(credentials)
    }

    fn signed_at(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_microsecond(self.clock.now().0)
            .unwrap_or_else(|_| jiff::Timestamp::now())
    }

    /// A URL to PUT `key` to within `valid`, as `content_type` with a private ACL (the
    /// headers the PageNow client sends, signed so that S3 holds it to them).
    pub(crate) async fn upload_url(
        &self,
        key: &str,
        content_type: &str,
        valid: Duration,
    ) -> anyhow::Result<String> {
        let credentials = self.credentials().await?;
        let mut action = self.bucket.put_object(Some(&credentials), key);
        action.headers_mut().insert("content-type", content_type);
        action.headers_mut().insert("x-amz-acl", "private");
        Ok(action.sign_with_time(valid, &self.signed_at()).to_string())
    }

    /// A URL to show `key` for an hour, served as `content_type`, inline.
    pub(crate) async fn show_url(&self, key: &str, content_type: &str) -> anyhow::Result<String> {
        let credentials = self.credentials().await?;
        let mut action = self.bucket.get_object(Some(&credentials), key);
        action
            .query_mut()
            .insert("response-content-type", content_type);
        action
            .query_mut()
            .insert("response-content-disposition", "inline");
        Ok(action
            .sign_with_time(SHOW_FOR, &self.signed_at())
            .to_string())
    }

    /// Deletes `key` (a missing one is no error).
    pub(crate) async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let credentials = self.credentials().await?;
        let action = self.bucket.delete_object(Some(&credentials), key);
        let url = action.sign_with_time(Duration::from_secs(60), &self.signed_at());
        self.http
            .delete(url.as_str())
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(bucket: &str, region: &str, endpoint: Option<&str>) -> ImageSettings {
        ImageSettings {
            images_dir: None,
            public_url: None,
            s3_bucket: Some(bucket.into()),
            s3_region: Some(region.into()),
            s3_endpoint: endpoint.map(str::to_owned),
        }
    }

    /// The example of AWS's documentation, "Authenticating Requests: Using Query
    /// Parameters (AWS Signature Version 4)": the same key, bucket, object and time
    /// must give the same URL, signature included.
    #[tokio::test]
    async fn a_url_is_signed_as_the_published_aws_example_signs_it() {
        let env = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("AKIAIOSFODNN7EXAMPLE".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned()),
            _ => None,
        };
        let (clock, hand) = Clock::adjustable();
        hand.set(Micros(1_369_353_600_000_000)); // Fri, 24 May 2013 00:00:00 GMT
        let settings = settings("examplebucket", "us-east-1", None);
        let s3 = S3::from_settings(&settings, env, clock).unwrap().unwrap();
        let credentials = s3.credentials().await.unwrap();
        let url = s3
            .bucket
            .get_object(Some(&credentials), "test.txt")
            .sign_with_time(Duration::from_secs(86400), &s3.signed_at());
        assert_eq!(
            url.as_str(),
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[tokio::test]
    async fn uploads_sign_the_headers_the_client_sends_and_views_name_the_type() {
        let env = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("AKIAIOSFODNN7EXAMPLE".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_owned()),
            "AWS_SESSION_TOKEN" => Some("session".to_owned()),
            _ => None,
        };
        let s3 = S3::from_settings(
            &settings("pictures", "eu-west-1", None),
            env,
            Clock::system(),
        )
        .unwrap()
        .unwrap();
        let put = s3
            .upload_url(
                "profile-images/a.png",
                "image/png",
                Duration::from_secs(600),
            )
            .await
            .unwrap();
        assert!(
            put.starts_with("https://pictures.s3.eu-west-1.amazonaws.com/profile-images/a.png?"),
            "{put}"
        );
        assert!(
            put.contains("X-Amz-SignedHeaders=content-type%3Bhost%3Bx-amz-acl"),
            "{put}"
        );
        assert!(
            put.contains("X-Amz-Expires=600") && put.contains("X-Amz-Security-Token=session"),
            "{put}"
        );
        let get = s3
            .show_url("profile-images/a.png", "image/png")
            .await
            .unwrap();
        assert!(
            get.contains("response-content-type=image%2Fpng") && get.contains("X-Amz-Expires=3600"),
            "{get}"
        );
        // An S3-compatible server is addressed by path.
        let minio = S3::from_settings(
            &settings("pictures", "us-east-1", Some("http://127.0.0.1:9000")),
            env,
            Clock::system(),
        )
        .unwrap()
        .unwrap();
        let url = minio.show_url("k.png", "image/png").await.unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:9000/pictures/k.png?"),
            "{url}"
        );
    }

    #[test]
    fn a_bucket_without_a_region_or_credentials_is_refused_at_start() {
        let none = |_: &str| None;
        let mut missing_region = settings("b", "r", None);
        missing_region.s3_region = None;
        let err = S3::from_settings(&missing_region, none, Clock::system()).unwrap_err();
        assert!(err.to_string().contains("STUDYHALL_S3_REGION"), "{err}");
        let err = S3::from_settings(&settings("b", "eu-west-1", None), none, Clock::system())
            .unwrap_err();
        assert!(err.to_string().contains("credentials"), "{err}");
        let unset = ImageSettings {
            s3_bucket: None,
            ..settings("b", "r", None)
        };
        assert!(S3::from_settings(&unset, none, Clock::system())
            .unwrap()
            .is_none());
    }
}
