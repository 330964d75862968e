//! `studyhall audit …`: the commands an operator and an auditor run.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use futures_util::TryStreamExt;

use super::export::{self, Format, Record};
use super::integrate;
use super::key::{self, AuditKey};
use super::note::Checkpoint;
use super::policy::Policy;
use super::store::{self, Filter};
use super::verify::{Broken, TreeCheck, Verified, Verifier};
use studyhall_core::config::DatabaseSettings;
use studyhall_core::db::Db;
use studyhall_core::sensitive::{DatabaseUrl, Secret};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the public key that verifies this deployment's checkpoints (base64).
    PublicKey(KeyArgs),
    /// Print a new signing key, for STUDYHALL_AUDIT_SIGNING_KEY.
    NewKey,
    /// Verify a store (--database-url), an export file (--file) or an event's receipt
    /// (--proof) with the public key.
    Verify(VerifyArgs),
    /// Write the log, or the events matching the filters, as NDJSON or CSV.
    Export(Box<ExportArgs>),
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(flatten)]
    pub database: DatabaseSettings,

    /// The signing key (else the one generated beside a SQLite database).
    #[arg(long, env = "STUDYHALL_AUDIT_SIGNING_KEY", hide_env_values = true)]
    pub audit_signing_key: Option<Secret>,

    /// Print the key as the C2SP verifier key (`vkey`) of the log's tree checkpoints,
    /// for witnesses (`STUDYHALL_WITNESS_LOGS`) and other verifiers.
    #[arg(long)]
    pub vkey: bool,

    /// The log's origin, as the server has it (default: derived from the key).
    #[arg(long, env = "STUDYHALL_AUDIT_ORIGIN")]
    pub audit_origin: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["database_url", "file", "proof"])))]
pub struct VerifyArgs {
    /// The store to verify (read only).
    #[arg(long)]
    pub database_url: Option<DatabaseUrl>,

    /// The export file to verify (NDJSON or CSV, as `audit export` writes them).
    #[arg(long)]
    pub file: Option<PathBuf>,

    /// An event's receipt to verify (a C2SP tlog-proof, as `GET /api/events/{id}/proof`
    /// answers it).
    #[arg(long)]
    pub proof: Option<PathBuf>,

    /// A tree checkpoint saved earlier (`GET /api/events/log/checkpoint`): the log must
    /// still reach its size with its root, so history before it was neither rewritten
    /// nor cut off, whatever else was changed in the database since.
    #[arg(long)]
    pub trusted_checkpoint: Option<PathBuf>,

    /// A trust policy (C2SP tlog-policy: the logs, the witnesses and the quorum of
    /// cosignatures): a receipt's checkpoint, or a store's newest tree checkpoint, must
    /// meet it.
    #[arg(long)]
    pub policy: Option<PathBuf>,

    /// The deployment's public key, as `studyhall audit public-key` prints it, or a file
    /// holding it.
    #[arg(long, env = "STUDYHALL_AUDIT_PUBLIC_KEY")]
    pub public_key: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub database: DatabaseSettings,

    #[arg(long, value_enum, default_value_t = Format::Ndjson)]
    pub format: Format,

    /// Resume after this event position (the `position` of the last event received).
    #[arg(long, default_value_t = 0)]
    pub after: i64,

    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,

    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub environment: Option<String>,
    #[arg(long)]
    pub component: Option<String>,
    /// Case-sensitive substring of the message.
    #[arg(long)]
    pub message: Option<String>,
    /// Created at or after: MM-DD-YYYY, YYYY-MM-DD or RFC 3339.
    #[arg(long, value_parser = parse_instant)]
    pub from_date: Option<i64>,
    /// Created before: same formats.
    #[arg(long, value_parser = parse_instant)]
    pub to_date: Option<i64>,
}

fn parse_instant(text: &str) -> Result<i64, String> {
    crate::events::query::parse_date(text)
        .ok_or_else(|| format!("`{text}` is not MM-DD-YYYY, YYYY-MM-DD or an RFC 3339 timestamp"))
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::PublicKey(args) => {
            let database = &args.database.database_url;
            if let (None, Some(file)) = (&args.audit_signing_key, database.sqlite_file()) {
                if !file.exists() {
                    anyhow::bail!(
                        "there is no studyhall database at {}: give the server's --database-url (the generated audit key is kept beside the database file)",
                        std::path::absolute(&file).unwrap_or(file).display()
                    );
                }
            }
            let key = AuditKey::load(args.audit_signing_key.as_ref(), database)?.context(
                "no audit signing key: set STUDYHALL_AUDIT_SIGNING_KEY (generated ones exist only with SQLite)",
            )?;
            if args.vkey {
                let origin = args
                    .audit_origin
                    .clone()
                    .unwrap_or_else(|| key.default_origin());
                print(&crate::note::verifier_key(&origin, &key.public()))?;
            } else {
                print(&key.public_text())?;
            }
        }
        AuditCommand::NewKey => print(&AuditKey::generate()?.private_text())?,
        AuditCommand::Verify(args) => {
            let public = public_key(&args.public_key)?;
            let policy = args.policy.as_deref().map(read_policy).transpose()?;
            if let Some(path) = &args.proof {
                print(&verify_proof(path, &public, policy.as_ref())?)?;
                return Ok(());
            }
            if let (Some(policy), Some(url)) = (&policy, &args.database_url) {
                print(&verify_newest_against(url, policy).await?)?;
            } else if policy.is_some() {
                anyhow::bail!("--policy applies to --proof and --database-url (an export carries no tree checkpoint)");
            }
            let trusted = args
                .trusted_checkpoint
                .as_deref()
                .map(|path| trusted_checkpoint(path, &public))
                .transpose()?;
            let verified = match (&args.database_url, &args.file) {
                (Some(url), _) => verify_store_trusting(url, &public, trusted).await?,
                (None, Some(file)) => verify_file_trusting(file, &public, trusted)?,
                (None, None) => anyhow::bail!("give --database-url, --file or --proof"),
            };
            print(&describe(&verified))?;
        }
        AuditCommand::Export(args) => export_to(&args).await?,
    }
    Ok(())
}

/// A line on standard output; a reader that stops early (`| head`) is not an error.
fn print(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(err).context("writing to standard output")
        }
        _ => Ok(()),
    }
}

fn public_key(text: &str) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let path = std::path::Path::new(text);
    let text = if path.is_file() {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    } else {
        text.to_owned()
    };
    key::parse_public(&text).map_err(anyhow::Error::msg)
}

fn describe(verified: &Verified) -> String {
    let range = match (verified.first, verified.last) {
        (Some(first), Some(last)) => format!(" (positions {first}–{last})"),
        _ => String::new(),
    };
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut text = format!(
        "verified: {}{range}, {}, {} removed by the retention policy",
        plural(verified.events, "event", "events"),
        plural(verified.checkpoints, "checkpoint", "checkpoints"),
        plural(verified.removed.max(0) as u64, "position", "positions"),
    );
    if verified.tree_checkpoints > 0 {
        text.push_str(&format!(
            ", the tree's root at {}",
            plural(verified.tree_checkpoints, "signed size", "signed sizes")
        ));
    }
    if let Some(why) = &verified.tree_unchecked {
        text.push_str(&format!("; the tree was not rebuilt: {why}"));
    }
    if verified.unsigned > 0 {
        text.push_str(&format!(
            "; the last {} events are chained but not yet covered by a checkpoint",
            verified.unsigned
        ));
    }
    text
}

async fn open_existing(url: &DatabaseUrl) -> anyhow::Result<Db> {
    if let Some(file) = url.sqlite_file() {
        if !file.exists() {
            anyhow::bail!("there is no database at {}", file.display());
        }
    }
    Db::connect(url, 2).await
}

/// A checkpoint note the auditor kept, if the key signed it.
fn trusted_checkpoint(
    path: &std::path::Path,
    public: &ed25519_dalek::VerifyingKey,
) -> anyhow::Result<Checkpoint> {
    let note =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Checkpoint::open_any(&note, public).map_err(|err| {
        anyhow::anyhow!(
            "{} is not a checkpoint this key signed: {err}",
            path.display()
        )
    })
}

/// Verifies a store as it is, without changing it.
pub async fn verify_store(
    url: &DatabaseUrl,
    public: &ed25519_dalek::VerifyingKey,
) -> anyhow::Result<Verified> {
    verify_store_trusting(url, public, None).await
}

/// [`verify_store`], also against a checkpoint the auditor kept.
pub async fn verify_store_trusting(
    url: &DatabaseUrl,
    public: &ed25519_dalek::VerifyingKey,
    trusted: Option<Checkpoint>,
) -> anyhow::Result<Verified> {
    let db = open_existing(url).await?;
    let result = verify_db(&db, public, trusted).await;
    db.close().await;
    result
}

/// The tree checks of a store: its base and every signed tree checkpoint, each
/// signature verified.
async fn tree_check(
    db: &Db,
    public: &ed25519_dalek::VerifyingKey,
    trusted: Option<Checkpoint>,
) -> anyhow::Result<TreeCheck> {
    let base = integrate::grown(db).await.context("reading the tree")?.base;
    let mut roots = std::collections::BTreeMap::new();
    for (size, note) in integrate::checkpoint_notes(db)
        .await
        .context("reading the tree checkpoints")?
    {
        let checkpoint = Checkpoint::open_any(&note, public)
            .ok()
            .filter(|checkpoint| checkpoint.size == size)
            .ok_or_else(|| Broken {
                position: base + size as i64,
                reason: format!(
                    "the tree checkpoint at size {size} does not verify with this public key (forged or altered)"
                ),
            })?;
        roots.insert(size, checkpoint.root);
    }
    Ok(TreeCheck {
        base,
        roots,
        trusted,
    })
}

pub async fn verify_db(
    db: &Db,
    public: &ed25519_dalek::VerifyingKey,
    trusted: Option<Checkpoint>,
) -> anyhow::Result<Verified> {
    let statements = crate::statements::statements(db, i64::MIN, i64::MAX, i64::MAX)
        .await
        .context("reading the signed statements")?;
    let tree = tree_check(db, public, trusted).await?;
    let mut verifier = Verifier::new(public, statements)?.with_tree(tree);
    let mut after = i64::MIN;
    loop {
        let page = store::chained_after(db, after, 1000, &Filter::default())
            .await
            .context("reading the events")?;
        for event in &page {
            verifier.event(event)?;
        }
        match page.last() {
            Some(last) => after = last.position,
            None => break,
        }
    }
    let unchained = store::unchained(db).await?;
    if unchained > 0 {
        tracing::info!(
            unchained,
            "events stored but not chained yet are not verified"
        );
    }
    Ok(verifier.finish()?)
}

/// Verifies an export file: two passes, statements first, so memory stays bounded by
/// the statements, not the events.
pub fn verify_file(
    path: &std::path::Path,
    public: &ed25519_dalek::VerifyingKey,
) -> anyhow::Result<Verified> {
    verify_file_trusting(path, public, None)
}

/// [`verify_file`], also against a checkpoint the auditor kept (the tree is rebuilt
/// from the file's events when its leaves start at position 1).
pub fn verify_file_trusting(
    path: &std::path::Path,
    public: &ed25519_dalek::VerifyingKey,
    trusted: Option<Checkpoint>,
) -> anyhow::Result<Verified> {
    let open = || -> anyhow::Result<_> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        export::read(std::io::BufReader::new(file)).map_err(anyhow::Error::msg)
    };
    let mut statements = Vec::new();
    for record in open()? {
        if let Record::Statement(statement) = record.map_err(anyhow::Error::msg)? {
            statements.push(statement);
        }
    }
    // Only an export of the whole log carries its checkpoints; a filtered one is a
    // selection of events, whose positions skip those the filter left out.
    let whole = !statements.is_empty();
    let mut verifier = Verifier::new(public, statements)?;
    if let Some(trusted) = trusted {
        verifier = verifier.with_tree(TreeCheck {
            trusted: Some(trusted),
            ..TreeCheck::default()
        });
    }
    for record in open()? {
        if let Record::Event(event) = record.map_err(anyhow::Error::msg)? {
            verifier.event(&event).map_err(|broken| {
                if whole {
                    anyhow::Error::new(broken)
                } else {
                    anyhow::anyhow!(
                        "{} is not a whole log: it holds no checkpoint, and its events skip positions \
                         ({broken}). A filtered export is a selection of events and cannot be verified; \
                         verify an export without filters, or the database itself.",
                        path.display()
                    )
                }
            })?;
        }
    }
    Ok(verifier.finish()?)
}

fn read_policy(path: &std::path::Path) -> anyhow::Result<Policy> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Policy::parse(&text).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))
}

/// Checks a store's newest tree checkpoint against `policy`.
async fn verify_newest_against(url: &DatabaseUrl, policy: &Policy) -> anyhow::Result<String> {
    let db = open_existing(url).await?;
    let newest = integrate::latest_checkpoint(&db).await;
    db.close().await;
    let (size, _, note) =
        newest?.context("the store has no tree checkpoint to hold to the policy")?;
    policy
        .check(&note)
        .map_err(|why| anyhow::anyhow!("the newest tree checkpoint (size {size}): {why}"))?;
    Ok(format!(
        "the newest tree checkpoint (size {size}) meets the policy"
    ))
}

/// Verifies a receipt (and, with a policy, its checkpoint's cosignatures); what it
/// proves, in a sentence.
pub fn verify_proof(
    path: &std::path::Path,
    public: &ed25519_dalek::VerifyingKey,
    policy: Option<&Policy>,
) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let receipt = crate::receipt::Receipt::parse(&text)
        .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
    let checkpoint = receipt
        .verify(public)
        .map_err(|err| anyhow::anyhow!("{} does not verify: {err}", path.display()))?;
    let described = match crate::receipt::fields(&receipt.entry).as_deref() {
        Some([position, id, _, component, environment, email, message, _]) => format!(
            "event {id} at position {position} ({component}/{environment}, {email}: {message:?})"
        ),
        _ => format!("entry {}", receipt.index),
    };
    if let Some(policy) = policy {
        policy
            .check(&receipt.note)
            .map_err(|why| anyhow::anyhow!("{} does not meet the policy: {why}", path.display()))?;
    }
    Ok(format!(
        "verified: {described} is entry {} of the log {} at size {}, signed by this key{}",
        receipt.index,
        checkpoint.origin,
        checkpoint.size,
        if policy.is_some() {
            " and cosigned as the policy requires"
        } else {
            ""
        }
    ))
}

async fn export_to(args: &ExportArgs) -> anyhow::Result<()> {
    let db = open_existing(&args.database.database_url).await?;
    let filter = Filter {
        email: args.email.clone(),
        environment: args.environment.clone(),
        component: args.component.clone(),
        message: args.message.clone(),
        from: args.from_date,
        to: args.to_date,
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut chunks = std::pin::pin!(export::export(db.clone(), filter, args.after, args.format));
    while let Some(chunk) = chunks.try_next().await.context("reading the events")? {
        match out.write_all(&chunk) {
            // A reader that stops early (`| head`) is not an error.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => break,
            other => other.context("writing the export")?,
        }
    }
    out.flush().ok();
    db.close().await;
    Ok(())
}
