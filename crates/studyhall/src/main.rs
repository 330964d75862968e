use std::io::Write;

use anyhow::Context;
use tokio::net::TcpListener;

use studyhall::config::{check_environment, AuthMode, Command};
use studyhall::db::Db;
use studyhall::http::telemetry::init_logging;

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("Error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", describe(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: a cause whose words its parent already
/// quotes (sqlx's "error communicating with database: Connection refused", then
/// "Connection refused") is left out.
fn describe(err: &anyhow::Error) -> String {
    let mut said: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !said.last().is_some_and(|parent| parent.contains(&text)) {
            said.push(text);
        }
    }
    let mut out = format!("Error: {}", said.first().map_or("", String::as_str));
    if said.len() > 1 {
        out.push_str("\n\nCaused by:");
        for cause in &said[1..] {
            out.push_str(&format!("\n    {cause}"));
        }
    }
    out
}

async fn run() -> anyhow::Result<()> {
    // A .env file is optional; a malformed one is an error worth stopping for.
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(err) if err.not_found() => {}
        Err(err) => return Err(err).context("reading .env"),
    }
    check_environment(std::env::vars())?;
    let cli = studyhall::config::parse();
    init_logging(cli.log_format);

    match cli.command {
        Command::Serve(settings) => {
            let listener = TcpListener::bind(settings.listen).await.with_context(|| {
                format!("cannot listen on {} (STUDYHALL_LISTEN)", settings.listen)
            })?;
            let app = studyhall::build_app(&settings).await?;
            tracing::info!(
                address = %listener.local_addr()?,
                database = %settings.database.database_url,
                backend = app.db.backend_name(),
                streams_backend = ?settings.streams.streams_backend,
                redis = settings.redis_url.as_ref().map(ToString::to_string),
                "studyhall is listening"
            );
            let (draining, drain) = (app.draining.clone(), settings.shutdown_drain);
            let shutdown = async move {
                if studyhall::stop_signal().await == studyhall::Stop::Terminate {
                    draining.drain_for(drain).await;
                }
                tracing::info!("finishing in-flight requests");
            };
            studyhall::serve(listener, app, shutdown).await?;
            tracing::info!("stopped cleanly");
        }
        Command::Migrate(settings) => {
            let db = Db::connect(&settings.database_url, 1).await?;
            db.migrate().await?;
            db.close().await;
            tracing::info!(database = %settings.database_url, "migrations applied");
        }
        Command::Token(args) => {
            if args.auth.auth != AuthMode::Hs256 {
                anyhow::bail!(
                    "`studyhall token` mints hs256 tokens, but STUDYHALL_AUTH is not hs256"
                );
            }
            // The generated secret lives beside the server's database: minting anywhere
            // else would make a new secret, and a token the server refuses.
            let database = &args.database.database_url;
            if let (None, Some(file)) = (&args.auth.jwt_secret, database.sqlite_file()) {
                if !file.exists() {
                    let absolute = std::path::absolute(&file).unwrap_or(file);
                    anyhow::bail!(
                        "there is no studyhall database at {}: run `studyhall token` where the server runs, or give it the server's --database-url (the generated token secret is kept beside the database file)",
                        absolute.display()
                    );
                }
            }
            let secret = studyhall::auth::hs256_secret(&args.auth, &args.database.database_url)?
                .context(
                "no hs256 secret: set STUDYHALL_JWT_SECRET (generated ones exist only with SQLite)",
            )?;
            let required = studyhall::auth::RequiredClaims::from_settings(&args.auth)?;
            let token = studyhall::auth::mint_hs256_with(
                &secret,
                &required,
                &args.auth.jwt_user_claim,
                &args.sub,
                args.email.as_deref(),
                args.scope.as_deref(),
                args.ttl,
            )?;
            println!("{token}");
        }
        Command::Worker(args) => {
            studyhall::work(&args, studyhall::shutdown_signal()).await?;
            tracing::info!("worker stopped cleanly");
        }
        Command::Audit(command) => studyhall::audit::cli::run(command).await?,
        Command::StoreCeiling(args) => studyhall::ceiling::print(&args).await?,
        Command::Openapi => {
            let doc = studyhall::openapi_document();
            let text = serde_json::to_string_pretty(&doc).context("serialising OpenAPI")?;
            let mut out = std::io::stdout().lock();
            // A reader that stops early (`studyhall openapi | head`) is not an error.
            match writeln!(out, "{text}").and_then(|()| out.flush()) {
                Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(err).context("writing the OpenAPI document");
                }
                _ => {}
            }
        }
    }
    Ok(())
}
