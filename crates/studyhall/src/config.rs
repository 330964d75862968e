//! Command line and settings. Every flag has a `STUDYHALL_*` environment fallback; an
//! unknown `STUDYHALL_*` variable or an invalid value stops the program naming it.

use std::net::SocketAddr;

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::db::{mask_password, DatabaseUrl};

#[derive(Debug, Parser)]
#[command(
    name = "studyhall",
    version,
    about = "Activity events, learning stats, grades, stream limits and social profiles in one service."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log output format.
    #[arg(long, env = "STUDYHALL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeSettings),
    /// Apply database migrations and exit.
    Migrate(DatabaseSettings),
    /// Print the OpenAPI 3.1 document.
    Openapi,
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
}

#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,

    /// Address to listen on.
    #[arg(long, env = "STUDYHALL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Modules to serve (comma separated); all when omitted.
    #[arg(long, env = "STUDYHALL_MODULES", value_enum, value_delimiter = ',')]
    pub modules: Vec<Module>,

    #[command(flatten)]
    pub identity: IdentitySettings,

    #[command(flatten)]
    pub streams: StreamSettings,

    /// Redis (redis://[:PASSWORD@]HOST:PORT[/DB]) for the stream limiter's `redis` backend;
    /// `/ready` checks it when set.
    #[arg(long, env = "STUDYHALL_REDIS_URL")]
    pub redis_url: Option<RedisUrl>,

    /// Bearer token for the admin routes (per-viewer stream limits); they are refused
    /// while it is unset.
    #[arg(long, env = "STUDYHALL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
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

    /// Where stream leases live: `sql` (the database) or `redis` (needs STUDYHALL_REDIS_URL).
    #[arg(long, env = "STUDYHALL_STREAMS_BACKEND", value_enum, default_value_t = StreamsBackend::Sql)]
    pub streams_backend: StreamsBackend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamsBackend {
    Sql,
    Redis,
}

/// A secret whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < 16 {
            return Err("must be at least 16 characters".into());
        }
        Ok(Secret(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A Redis URL whose `Debug`/`Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for RedisUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split("://").next() {
            Some("redis" | "rediss") if s.contains("://") => Ok(RedisUrl(s.to_owned())),
            _ => Err("use redis://HOST:PORT or rediss://HOST:PORT".into()),
        }
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&mask_password(&self.0))
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

impl ServeSettings {
    /// Settings for a server on `database_url` with every default, as tests and tools
    /// build them.
    pub fn new(database_url: DatabaseUrl) -> Self {
        ServeSettings {
            database: DatabaseSettings {
                database_url,
                database_max_connections: 10,
            },
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            modules: Vec::new(),
            identity: IdentitySettings {
                trust_identity_headers: true,
                trust_peer_addr: false,
            },
            streams: StreamSettings {
                stream_limit: 3,
                stream_lease_secs: 60,
                streams_backend: StreamsBackend::Sql,
            },
            redis_url: None,
            admin_token: None,
        }
    }

    /// Cross-setting rules clap cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.streams.streams_backend == StreamsBackend::Redis && self.redis_url.is_none() {
            bail!("STUDYHALL_STREAMS_BACKEND=redis needs STUDYHALL_REDIS_URL");
        }
        Ok(())
    }

    pub fn serves(&self, module: Module) -> bool {
        self.modules.is_empty() || self.modules.contains(&module)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Module {
    Events,
    Stats,
    Streams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Every `STUDYHALL_*` variable the program reads. Anything else with the prefix is a
/// typo or a setting this version does not have, and is refused rather than ignored.
const KNOWN_VARIABLES: &[&str] = &[
    "STUDYHALL_DATABASE_URL",
    "STUDYHALL_DATABASE_MAX_CONNECTIONS",
    "STUDYHALL_LISTEN",
    "STUDYHALL_MODULES",
    "STUDYHALL_LOG_FORMAT",
    "STUDYHALL_TRUST_IDENTITY_HEADERS",
    "STUDYHALL_TRUST_PEER_ADDR",
    "STUDYHALL_STREAM_LIMIT",
    "STUDYHALL_STREAM_LEASE_SECS",
    "STUDYHALL_STREAMS_BACKEND",
    "STUDYHALL_REDIS_URL",
    "STUDYHALL_ADMIN_TOKEN",
];

pub fn check_environment(vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<()> {
    for (name, _) in vars {
        let ours = name.starts_with("STUDYHALL_") && !name.starts_with("STUDYHALL_TEST_");
        if ours && !KNOWN_VARIABLES.contains(&name.as_str()) {
            bail!(
                "unknown setting {name}; known settings are {}",
                KNOWN_VARIABLES.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_studyhall_variable_is_named_in_the_error() {
        let vars = [("STUDYHALL_LISTN".to_owned(), "x".to_owned())];
        let err = check_environment(vars.into_iter()).unwrap_err().to_string();
        assert!(err.contains("STUDYHALL_LISTN"), "{err}");
    }

    #[test]
    fn known_and_test_variables_pass() {
        let vars = [
            ("STUDYHALL_LISTEN".to_owned(), "x".to_owned()),
            ("STUDYHALL_TEST_POSTGRES_URL".to_owned(), "x".to_owned()),
            ("PATH".to_owned(), "x".to_owned()),
        ];
        assert!(check_environment(vars.into_iter()).is_ok());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
