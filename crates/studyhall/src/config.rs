//! Command line and settings. Every flag has a `STUDYHALL_*` environment fallback; an
//! unknown `STUDYHALL_*` variable or an invalid value stops the program naming it.

use std::net::SocketAddr;

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::db::DatabaseUrl;

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
        }
    }

    pub fn serves(&self, module: Module) -> bool {
        self.modules.is_empty() || self.modules.contains(&module)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Module {
    Events,
    Stats,
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
