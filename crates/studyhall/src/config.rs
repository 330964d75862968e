//! The command line. Every flag has a `STUDYHALL_*` environment fallback; an unknown
//! `STUDYHALL_*` variable or an invalid value stops the program naming it. The settings
//! themselves are `studyhall_core::config`'s.

use anyhow::bail;
use clap::builder::PossibleValuesParser;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use studyhall_core::config::*;

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
    Serve(Box<ServeSettings>),
    /// Apply database migrations and exit.
    Migrate(DatabaseSettings),
    /// Print the OpenAPI 3.1 document.
    Openapi,
    /// Mint a development token signed with the hs256 secret (configured or generated).
    Token(Box<TokenArgs>),
    /// Run background job workers only (deployments that scale them separately).
    Worker(WorkerArgs),
    /// The audit log: print the public key, verify a store or an export, export.
    #[command(subcommand)]
    Audit(studyhall_log::cli::AuditCommand),
    /// Measure a write path without HTTP (the benchmark's store ceiling).
    #[command(hide = true)]
    StoreCeiling(Box<crate::ceiling::CeilingArgs>),
}

/// The command line, with `--modules` limited to the modules this build has.
pub fn command() -> clap::Command {
    let names = crate::MODULES.iter().map(|plugin| plugin.name);
    Cli::command().mut_subcommand("serve", |serve| {
        serve.mut_arg("modules", |arg| {
            arg.value_parser(PossibleValuesParser::new(names))
        })
    })
}

/// Parses the process's arguments; on a mistake, prints clap's message and exits.
pub fn parse() -> Cli {
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|err| err.exit())
}

/// Every `STUDYHALL_*` variable the program reads, from the flags' own definitions.
/// Anything else with the prefix is a typo or a setting this version does not have,
/// and is refused rather than ignored.
fn known_variables() -> Vec<String> {
    fn walk(command: &clap::Command, names: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                names.push(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, names);
        }
    }
    let mut names = Vec::new();
    walk(&command(), &mut names);
    names.sort();
    names.dedup();
    names
}

pub fn check_environment(vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<()> {
    let known = known_variables();
    for (name, _) in vars {
        let ours = name.starts_with("STUDYHALL_") && !name.starts_with("STUDYHALL_TEST_");
        if ours && !known.contains(&name) {
            let closest = known
                .iter()
                .map(|known| (strsim::levenshtein(&name, known), known))
                .min()
                .filter(|(distance, _)| *distance <= 4);
            match closest {
                Some((_, known)) => bail!("unknown setting {name}; did you mean {known}?"),
                None => bail!(
                    "unknown setting {name}; known settings are {}",
                    known.join(", ")
                ),
            }
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
        assert!(err.contains("did you mean STUDYHALL_LISTEN?"), "{err}");
        let far = [(
            "STUDYHALL_SOMETHING_ELSE_ENTIRELY".to_owned(),
            "x".to_owned(),
        )];
        let err = check_environment(far.into_iter()).unwrap_err().to_string();
        assert!(err.contains("known settings are"), "{err}");
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
        command().debug_assert();
    }
}
