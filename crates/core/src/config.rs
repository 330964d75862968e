//! Settings: what the server, the worker and the tools are configured with. Every flag
//! has a `STUDYHALL_*` environment fallback; the binary's command line gathers them.

use std::net::SocketAddr;

use anyhow::bail;
use clap::{Args, ValueEnum};

pub use crate::sensitive::{DatabaseUrl, RedisUrl, Secret};

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub database: DatabaseSettings,

    #[command(flatten)]
    pub audit: AuditModules,

    #[command(flatten)]
    pub jobs: JobSettings,
}

#[derive(Debug, Clone, Args)]
pub struct JobSettings {
    /// Worker tasks per process.
    #[arg(long, env = "STUDYHALL_WORKER_CONCURRENCY", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,

    /// Seconds a claimed job is held before another worker may take it over.
    #[arg(long, env = "STUDYHALL_JOB_LEASE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub job_lease_secs: u32,

    /// Attempts before a failing job is dead.
    #[arg(long, env = "STUDYHALL_JOB_MAX_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub job_max_attempts: u32,

    /// How long a succeeded job is kept (`GET /jobs/{id}` answers 404 after): the queue's
    /// tables stay bounded however many jobs run. Dead jobs are kept until retried or
    /// deleted.
    #[arg(long, env = "STUDYHALL_JOB_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub job_retention: std::time::Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        defaults()
    }
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (the `sub` claim, or the configured user claim).
    #[arg(long)]
    pub sub: String,

    /// The `email` claim.
    #[arg(long)]
    pub email: Option<String>,

    /// The `scope` claim: what the token grants, space separated (e.g. `events:read`).
    #[arg(long)]
    pub scope: Option<String>,

    /// Lifetime: seconds, or a duration like 90s, 15m, 1h or 7d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: std::time::Duration,

    #[command(flatten)]
    pub database: DatabaseSettings,

    #[command(flatten)]
    pub auth: AuthSettings,
}

/// A retention period: a duration of at least a second.
fn parse_retention(text: &str) -> Result<std::time::Duration, String> {
    let period = parse_ttl(text)?;
    if period < std::time::Duration::from_secs(1) {
        return Err(format!("`{text}` is shorter than a second"));
    }
    Ok(period)
}

/// A bare number of seconds, or a duration like `90s`, `15m`, `1h 30m` or `7d`.
fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|err| format!("`{text}` is not a duration like 90s, 15m, 1h or 7d: {err}"))
}

#[derive(Debug, Clone, Args)]
pub struct AuthSettings {
    /// How bearer tokens are verified: `hs256` (shared secret), `jwks` (RS256/ES256 keys
    /// from a JWKS URL, e.g. Cognito) or `off` (no token is accepted).
    #[arg(long, env = "STUDYHALL_AUTH", value_enum, default_value_t = AuthMode::Hs256)]
    pub auth: AuthMode,

    /// The hs256 secret (≥ 16 characters). Unset with SQLite: one is generated on first
    /// start and kept beside the database file, readable only by its owner.
    #[arg(long, env = "STUDYHALL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// JWKS URL for `jwks` mode.
    #[arg(long, env = "STUDYHALL_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// Cognito user pool region; with the pool id it sets the JWKS URL and issuer.
    #[arg(long, env = "STUDYHALL_COGNITO_REGION")]
    pub cognito_region: Option<String>,

    /// Cognito user pool id, e.g. `eu-west-1_AbCdEf123`.
    #[arg(long, env = "STUDYHALL_COGNITO_POOL_ID")]
    pub cognito_pool_id: Option<String>,

    /// Required `iss` claim.
    #[arg(long, env = "STUDYHALL_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required audience: the `aud` claim, or Cognito's `client_id` on access tokens.
    #[arg(long, env = "STUDYHALL_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Required Cognito `token_use` claim: `access` or `id`.
    #[arg(long, env = "STUDYHALL_JWT_TOKEN_USE")]
    pub jwt_token_use: Option<String>,

    /// The claim that holds the user id (Cognito setups often use `cognito:username`).
    #[arg(long, env = "STUDYHALL_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,

    /// The claim listing the caller's groups, which grant like `scope` words do (the
    /// console's groups, `events:read`…): `cognito:groups`, or e.g. `groups` or `roles`
    /// for other identity providers.
    #[arg(
        long,
        env = "STUDYHALL_JWT_GROUPS_CLAIM",
        default_value = "cognito:groups"
    )]
    pub jwt_groups_claim: String,

    /// Least seconds between JWKS refetches caused by tokens with an unknown `kid`.
    #[arg(long, env = "STUDYHALL_JWKS_REFRESH_SECS", default_value_t = 30)]
    pub jwks_refresh_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        defaults()
    }
}

/// `T` with every clap default and nothing from the environment: the defaults live in
/// the `#[arg]` attributes only.
fn defaults<T: Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults")).mut_args(|arg| arg.env(None));
    let parsed = command
        .try_get_matches_from(["defaults"])
        .and_then(|matches| T::from_arg_matches(&matches));
    match parsed {
        Ok(settings) => settings,
        // Only a required argument without a default could fail, and a test of these
        // settings fails first.
        Err(err) => panic!("the settings' defaults do not parse: {err}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    Hs256,
    Jwks,
    Off,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// sqlite://FILE (created if missing) or postgres://USER:PASSWORD@HOST:PORT/DB.
    #[arg(
        long,
        env = "STUDYHALL_DATABASE_URL",
        default_value = "sqlite://studyhall.db"
    )]
    pub database_url: DatabaseUrl,

    /// Connections in the database pool.
    #[arg(long, env = "STUDYHALL_DATABASE_MAX_CONNECTIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,

    /// SQLite: memory for reading the database, in MiB: a mapping of the file, then
    /// page caches for the connections. `0` maps nothing.
    #[arg(long, env = "STUDYHALL_SQLITE_MEMORY_MIB",
          default_value_t = crate::db::DEFAULT_SQLITE_MEMORY_MIB,
          value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    pub sqlite_memory_mib: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,

    /// Address to listen on.
    #[arg(long, env = "STUDYHALL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// On SIGTERM, how long to keep serving (with `/ready` failing and every response
    /// closing its connection) before stopping: the load balancer's deregistration delay
    /// (30 s in deploy/terraform). `0s` stops at once. Ctrl-C never waits.
    #[arg(long, env = "STUDYHALL_SHUTDOWN_DRAIN", default_value = "30s", value_parser = parse_ttl)]
    pub shutdown_drain: std::time::Duration,

    /// The clock every module reads: the system's, or a test's adjustable one.
    #[arg(skip)]
    pub clock: crate::clock::Clock,

    /// Modules to serve (comma separated); all when omitted. The binary limits the
    /// values to the modules it has.
    #[arg(long, env = "STUDYHALL_MODULES", value_delimiter = ',')]
    pub modules: Vec<String>,

    #[command(flatten)]
    pub identity: IdentitySettings,

    #[command(flatten)]
    pub jobs: JobSettings,

    /// Do not run the job worker in this process (run `studyhall worker` instead).
    #[arg(long, env = "STUDYHALL_NO_WORKER", default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_worker: bool,

    #[command(flatten)]
    pub auth: AuthSettings,

    #[command(flatten)]
    pub streams: StreamSettings,

    #[command(flatten)]
    pub audit: AuditSettings,

    #[command(flatten)]
    pub events: EventSettings,

    #[command(flatten)]
    pub console: ConsoleSettings,

    #[command(flatten)]
    pub images: ImageSettings,

    /// Redis (redis://[:PASSWORD@]HOST:PORT[/DB]) for the stream limiter's `redis` backend;
    /// `/ready` checks it when set.
    #[arg(long, env = "STUDYHALL_REDIS_URL")]
    pub redis_url: Option<RedisUrl>,

    /// Bearer token for the admin routes (per-viewer stream limits); they are refused
    /// while it is unset.
    #[arg(long, env = "STUDYHALL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Browser origins allowed to call the API from web pages (comma separated, e.g.
    /// `https://app.example.com`, or `*` for any); none when unset.
    #[arg(long, env = "STUDYHALL_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,
}

/// Where profile images are kept, and the address their URLs start with.
#[derive(Debug, Clone, Args)]
pub struct ImageSettings {
    /// The folder profile images are stored in and served from (made at the first
    /// upload). By default beside the SQLite file (`studyhall.db.images`), or
    /// `studyhall-images` in the working directory with PostgreSQL. Instances do not
    /// share it: run one instance with it.
    #[arg(long, env = "STUDYHALL_IMAGES_DIR")]
    pub images_dir: Option<std::path::PathBuf>,

    /// The address clients reach this service at (e.g. `https://api.example.com`), which
    /// the image URLs it hands out start with; by default the request's own `Host`, with
    /// `https` when `X-Forwarded-Proto` says so.
    #[arg(long, env = "STUDYHALL_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// Keep profile images in this S3 bucket instead (clients upload to and show them
    /// from presigned URLs; every instance sees them). Credentials: `AWS_ACCESS_KEY_ID`
    /// and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), or the ECS task role.
    #[arg(long, env = "STUDYHALL_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// The bucket's region; by default `AWS_REGION` (which ECS sets).
    #[arg(long, env = "STUDYHALL_S3_REGION")]
    pub s3_region: Option<String>,

    /// An S3-compatible server's address (e.g. `http://127.0.0.1:9000`), which is then
    /// addressed with the bucket in the path; by default AWS's endpoint for the region.
    #[arg(long, env = "STUDYHALL_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
}

/// An absolute `http`/`https` address without a query, kept without a trailing `/`.
fn parse_public_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|err| format!("not an absolute URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(
            "an http or https address without a query or fragment, e.g. https://api.example.com"
                .into(),
        );
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Who may log in to the console at `/console`, and for how long.
#[derive(Debug, Clone, Args)]
pub struct ConsoleSettings {
    /// How long a console login lasts (e.g. `8h`, `30m`).
    #[arg(long, env = "STUDYHALL_CONSOLE_SESSION_TTL", default_value = "8h", value_parser = parse_retention)]
    pub console_session_ttl: std::time::Duration,

    /// A bearer token whose `cognito:groups` or `scope` names this group logs in to the
    /// console as an operator (the admin token always does).
    #[arg(
        long,
        env = "STUDYHALL_CONSOLE_OPERATOR_GROUP",
        default_value = "studyhall-operators"
    )]
    pub console_operator_group: String,

    /// A bearer token whose `cognito:groups` or `scope` names this group logs in to the
    /// console read-only: it sees every page and changes nothing.
    #[arg(
        long,
        env = "STUDYHALL_CONSOLE_READER_GROUP",
        default_value = "studyhall-readers"
    )]
    pub console_reader_group: String,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        defaults()
    }
}

/// `*`, or `scheme://host[:port]` with nothing after it.
fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    let valid = text == "*"
        || (text.split_once("://").is_some_and(|(scheme, host)| {
            matches!(scheme, "http" | "https")
                && !host.is_empty()
                && !host.contains(['/', '?', '#', ' '])
        }));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not an origin: write scheme://host[:port] (no path), or *"
        ))
    }
}

#[derive(Debug, Clone, Args)]
pub struct IdentitySettings {
    /// Accept the gateway's `X-User-Id` / `X-Forwarded-For` headers as the caller's
    /// identity (set false behind a public edge that does not strip them).
    #[arg(long, env = "STUDYHALL_TRUST_IDENTITY_HEADERS", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_identity_headers: bool,

    /// Identify a stream viewer by the connection's peer address when nothing else does.
    #[arg(long, env = "STUDYHALL_TRUST_PEER_ADDR", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_peer_addr: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StreamSettings {
    /// Concurrent streams a viewer may watch (a per-viewer override can be set).
    #[arg(long, env = "STUDYHALL_STREAM_LIMIT", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub stream_limit: u32,

    /// Seconds a stream counts without a heartbeat.
    #[arg(long, env = "STUDYHALL_STREAM_LEASE_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub stream_lease_secs: u32,

    /// Seconds after a lease's expiry during which its stream still counts and a
    /// heartbeat renews it as if on time (for players behind flaky networks).
    #[arg(long, env = "STUDYHALL_STREAM_GRACE_SECS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=3600))]
    pub stream_grace_secs: u32,

    /// Evaluate the policy without applying it: a start at the limit is admitted, and
    /// what the policy would have done is recorded (audit log, metric, the answer's
    /// `dry_run`), for rolling a policy out.
    #[arg(long, env = "STUDYHALL_STREAM_DRY_RUN", default_value_t = false, action = clap::ArgAction::Set)]
    pub stream_dry_run: bool,

    /// What a start at the viewer's limit does: `reject` it (429 with `Retry-After`),
    /// `kick_oldest`: end the viewer's oldest stream and admit the new one, or `ask`: 409
    /// with the active streams, for the viewer to choose one to replace.
    #[arg(long, env = "STUDYHALL_STREAM_POLICY", value_enum, default_value_t = StreamPolicy::Reject)]
    pub stream_policy: StreamPolicy,

    /// Where stream leases live: `sql` (the database) or `redis` (needs STUDYHALL_REDIS_URL).
    #[arg(long, env = "STUDYHALL_STREAMS_BACKEND", value_enum, default_value_t = StreamsBackend::Sql)]
    pub streams_backend: StreamsBackend,
}

#[derive(Debug, Clone, Args)]
pub struct AuditSettings {
    /// The Ed25519 key that signs audit checkpoints: a 32-byte seed in base64 (make one
    /// with `studyhall audit new-key`). With SQLite and none set, one is generated beside
    /// the database file; with PostgreSQL and none set, no checkpoints are signed.
    #[arg(long, env = "STUDYHALL_AUDIT_SIGNING_KEY", hide_env_values = true)]
    pub audit_signing_key: Option<Secret>,

    /// Sign a checkpoint once this many events were chained since the last one…
    #[arg(long, env = "STUDYHALL_AUDIT_CHECKPOINT_EVENTS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_checkpoint_events: u32,

    /// …or once this many seconds have passed since it, if any event was chained.
    #[arg(long, env = "STUDYHALL_AUDIT_CHECKPOINT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub audit_checkpoint_secs: u32,

    /// The log's name in its signed checkpoints (C2SP `origin`, also the signing key's
    /// name): a schema-less URL such as `example.com/studyhall`. Default:
    /// `studyhall.invalid/log/` and 16 hex digits of the public key's hash.
    #[arg(long, env = "STUDYHALL_AUDIT_ORIGIN", value_parser = parse_log_origin)]
    pub audit_origin: Option<String>,

    /// Witnesses asked to cosign each tree checkpoint (C2SP tlog-witness), comma
    /// separated, each `<submission prefix URL> <witness vkey>`.
    #[arg(long, env = "STUDYHALL_AUDIT_WITNESSES", value_delimiter = ',')]
    pub audit_witnesses: Vec<String>,

    /// Act as a witness for other logs: the Ed25519 seed (base64) this deployment
    /// cosigns with at `POST /api/witness/add-checkpoint`.
    #[arg(long, env = "STUDYHALL_WITNESS_KEY", hide_env_values = true)]
    pub witness_key: Option<Secret>,

    /// The witness's name (default `studyhall.invalid/witness/` and 16 hex digits of
    /// its public key's hash).
    #[arg(long, env = "STUDYHALL_WITNESS_NAME", value_parser = parse_log_origin)]
    pub witness_name: Option<String>,

    /// The logs this witness cosigns, comma separated, each as its checkpoint `vkey`
    /// (`studyhall audit public-key --vkey` prints one).
    #[arg(long, env = "STUDYHALL_WITNESS_LOGS", value_delimiter = ',')]
    pub witness_logs: Vec<String>,

    #[command(flatten)]
    pub modules: AuditModules,
}

fn parse_log_origin(text: &str) -> Result<String, String> {
    if text.is_empty()
        || text
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(
            "an origin is a non-empty name without spaces or `+`, e.g. example.com/studyhall"
                .into(),
        );
    }
    Ok(text.to_owned())
}

#[derive(Debug, Clone, Args)]
pub struct AuditModules {
    /// Modules whose decisions are recorded in the event log (comma separated):
    /// `streams`, `social`, `jobs`, `auth`, `console` (logins and logouts), or `none`.
    #[arg(long, env = "STUDYHALL_AUDIT_MODULES", value_delimiter = ',',
          default_value = "streams,social,jobs,auth,console",
          value_parser = clap::builder::PossibleValuesParser::new(["streams", "social", "jobs", "auth", "console", "none"]))]
    pub audit_modules: Vec<String>,

    /// Chain events as they are stored (the default). `false` stores them outside the
    /// chain and leaves them there: for the benchmark's chain-off measurement only.
    #[arg(long, env = "STUDYHALL_AUDIT_CHAIN", default_value_t = true, hide = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub audit_chain: bool,
}

impl AuditModules {
    /// Whether `module`'s decisions are recorded.
    pub fn audits(&self, module: &str) -> bool {
        self.audit_modules.iter().any(|name| name == module)
    }
}

impl Default for AuditModules {
    fn default() -> Self {
        defaults()
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        defaults()
    }
}

#[derive(Debug, Clone, Args)]
pub struct EventSettings {
    /// Who may list and export events: `open` (anyone), `token` (a token whose `scope` or
    /// `cognito:groups` names `events:read`, or the admin token) or `admin`.
    #[arg(long, env = "STUDYHALL_EVENTS_READ", value_enum, default_value_t = ReadAccess::Open)]
    pub events_read: ReadAccess,

    /// Who may post events: `open` (anyone) or `token` (a token whose `scope` or
    /// `cognito:groups` names `events:write`, or the admin token).
    #[arg(long, env = "STUDYHALL_EVENTS_WRITE", value_enum, default_value_t = WriteAccess::Open)]
    pub events_write: WriteAccess,

    /// Remove events older than this (e.g. `400d`, `12h`), in the background, each
    /// removal leaving a signed marker so the log still verifies; kept forever when
    /// unset. Needs a signing key.
    #[arg(long, env = "STUDYHALL_EVENTS_RETENTION", value_parser = parse_retention)]
    pub events_retention: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadAccess {
    Open,
    Token,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteAccess {
    Open,
    Token,
}

/// What a start at the viewer's limit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamPolicy {
    /// Refuse the new stream: 429, nothing stored.
    Reject,
    /// End the viewer's oldest stream (its next heartbeat answers 410) and admit the new one.
    #[value(name = "kick_oldest", alias = "kick-oldest")]
    KickOldest,
    /// Refuse with 409 listing the active streams, so the application can ask the
    /// viewer which one to stop (and start again with `replace`).
    Ask,
}

impl StreamPolicy {
    /// The name it is configured by.
    pub fn name(self) -> &'static str {
        match self {
            StreamPolicy::Reject => "reject",
            StreamPolicy::KickOldest => "kick_oldest",
            StreamPolicy::Ask => "ask",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamsBackend {
    Sql,
    Redis,
}

impl ServeSettings {
    /// Settings for a server on `database_url` with every default, as tests and tools
    /// build them.
    pub fn new(database_url: DatabaseUrl) -> Self {
        let mut settings: ServeSettings = defaults();
        settings.database.database_url = database_url;
        settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        settings
    }

    /// Cross-setting rules clap cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.streams.streams_backend == StreamsBackend::Redis && self.redis_url.is_none() {
            bail!("STUDYHALL_STREAMS_BACKEND=redis needs STUDYHALL_REDIS_URL");
        }
        Ok(())
    }

    /// Whether the module named `module` is served.
    pub fn serves(&self, module: &str) -> bool {
        self.modules.is_empty() || self.modules.iter().any(|name| name == module)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetimes_parse() {
        assert_eq!(parse_ttl("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_ttl("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_ttl("2h").unwrap().as_secs(), 7200);
        assert_eq!(parse_ttl("7d").unwrap().as_secs(), 604_800);
        assert_eq!(parse_ttl("1h 30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_ttl("120").unwrap().as_secs(), 120);
        assert!(parse_ttl("1 fortnight").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
