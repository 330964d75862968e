//! Exports: the log in chain order as NDJSON or CSV, a page at a time (constant
//! memory), resumable after any event's position. An unfiltered export carries the
//! signed statements too, so the file verifies on its own; reading one back is here
//! as well.

use std::io::BufRead;

use axum::body::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::key::Statement;
use super::store::{self, ChainedEvent, Filter};
use studyhall_core::clock::Micros;
use studyhall_core::db::Db;

/// Events read per page.
const PAGE: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per record, each on its own line.
    #[default]
    Ndjson,
    /// A header row, then one row per record.
    Csv,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }
}

/// One record of an export, flat so that both formats share it. Events fill the
/// event fields, statements the statement fields; `position` and `hash` are always set.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Flat<D> {
    kind: String,
    position: i64,
    hash: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    id: Option<Uuid>,
    /// The list route's form (Unix seconds as text); `created_at_us` is what is hashed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    created_at_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    data: Option<D>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    first_position: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    cutoff_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    chained_by_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    signed_at_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    signature: Option<String>,
}

/// A record read back from an export.
#[derive(Debug)]
pub enum Record {
    Event(ChainedEvent),
    Statement(Statement),
}

impl<D> Flat<D> {
    fn event(event: &ChainedEvent, data: D) -> Flat<D> {
        Flat {
            kind: "event".into(),
            position: event.position,
            hash: event.hash.clone(),
            id: Some(event.id),
            created_at: Some(crate::events::model::seconds_text(event.created_at.0)),
            created_at_us: Some(event.created_at.0),
            component: Some(event.component.clone()),
            environment: Some(event.environment.clone()),
            email: Some(event.email.clone()),
            message: Some(event.message.clone()),
            data: Some(data),
            first_position: None,
            cutoff_us: None,
            chained_by_us: None,
            signed_at_us: None,
            signature: None,
        }
    }

    fn statement(statement: &Statement) -> Flat<D> {
        let (kind, first_position, window, signed_at_us, signature) = match statement {
            Statement::Checkpoint {
                signed_at_us,
                signature,
                ..
            } => ("checkpoint", None, None, signed_at_us, signature),
            Statement::Retention {
                first_position,
                window,
                signed_at_us,
                signature,
                ..
            } => (
                "retention",
                Some(*first_position),
                *window,
                signed_at_us,
                signature,
            ),
        };
        Flat {
            kind: kind.into(),
            position: statement.position(),
            hash: statement.hash().to_owned(),
            id: None,
            created_at: None,
            created_at_us: None,
            component: None,
            environment: None,
            email: None,
            message: None,
            data: None,
            first_position,
            cutoff_us: window.map(|window| window.cutoff_us.0),
            chained_by_us: window.map(|window| window.chained_by_us.0),
            signed_at_us: Some(signed_at_us.0),
            signature: Some(signature.clone()),
        }
    }

    fn into_record(
        self,
        data: impl FnOnce(D) -> Result<Box<RawValue>, String>,
    ) -> Result<Record, String> {
        let missing = |field: &str| {
            format!(
                "the {} record at position {} has no `{field}`",
                self.kind, self.position
            )
        };
        match self.kind.as_str() {
            "event" => {
                let created_at_us = self.created_at_us.ok_or_else(|| missing("created_at_us"))?;
                // The list route's form is not hashed; it must say the same as what is.
                let said = crate::events::model::seconds_text(created_at_us);
                if self.created_at.as_ref().is_some_and(|text| *text != said) {
                    return Err(format!(
                        "the event at position {} says created_at {:?} but its hashed created_at_us is {created_at_us} ({said}): the file was edited",
                        self.position,
                        self.created_at.unwrap_or_default()
                    ));
                }
                Ok(Record::Event(ChainedEvent {
                    position: self.position,
                    id: self.id.ok_or_else(|| missing("id"))?,
                    created_at: Micros(created_at_us),
                    component: self.component.clone().ok_or_else(|| missing("component"))?,
                    environment: self
                        .environment
                        .clone()
                        .ok_or_else(|| missing("environment"))?,
                    email: self.email.clone().ok_or_else(|| missing("email"))?,
                    message: self.message.clone().ok_or_else(|| missing("message"))?,
                    data: data(self.data.ok_or_else(|| missing("data"))?)?,
                    hash: self.hash,
                }))
            }
            "checkpoint" => Ok(Record::Statement(Statement::Checkpoint {
                position: self.position,
                signed_at_us: Micros(self.signed_at_us.ok_or_else(|| missing("signed_at_us"))?),
                signature: self.signature.clone().ok_or_else(|| missing("signature"))?,
                hash: self.hash,
            })),
            "retention" => Ok(Record::Statement(Statement::Retention {
                first_position: self
                    .first_position
                    .ok_or_else(|| missing("first_position"))?,
                position: self.position,
                window: self
                    .cutoff_us
                    .zip(self.chained_by_us)
                    .map(|(cutoff, chained_by)| crate::key::Window {
                        cutoff_us: Micros(cutoff),
                        chained_by_us: Micros(chained_by),
                    }),
                signed_at_us: Micros(self.signed_at_us.ok_or_else(|| missing("signed_at_us"))?),
                signature: self.signature.clone().ok_or_else(|| missing("signature"))?,
                hash: self.hash,
            })),
            other => Err(format!(
                "unknown record kind `{other}` at position {}",
                self.position
            )),
        }
    }
}

/// Where an export stands between pages.
struct Cursor {
    db: Db,
    filter: Filter,
    format: Format,
    /// Events and statements up to here are written.
    after: i64,
    header: bool,
    /// Resuming after a position: its statements are sent again.
    resumed: bool,
    done: bool,
}

/// [`export`] as a file download: NDJSON or CSV with its name.
pub fn download(db: Db, filter: Filter, after: i64, format: Format) -> axum::response::Response {
    use axum::response::IntoResponse;
    let disposition = format!("attachment; filename=\"events.{}\"", format.extension());
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                format.content_type().to_owned(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        axum::body::Body::from_stream(export(db, filter, after, format)),
    )
        .into_response()
}

/// The export as chunks of text, one page of events (with the statements up to its
/// last position) per chunk. `after`: resume after this event position.
pub fn export(
    db: Db,
    filter: Filter,
    after: i64,
    format: Format,
) -> impl Stream<Item = Result<Bytes, sqlx::Error>> + Send + 'static {
    let cursor = Cursor {
        db,
        filter,
        format,
        after,
        header: format == Format::Csv,
        resumed: after > 0,
        done: false,
    };
    futures_util::stream::try_unfold(cursor, |mut cursor| async move {
        if cursor.done {
            return Ok(None);
        }
        let events = store::chained_after(&cursor.db, cursor.after, PAGE, &cursor.filter).await?;
        cursor.done = (events.len() as i64) < PAGE;
        let Some(last) = events.last().map(|event| event.position) else {
            // Nothing more (a CSV still gets its header).
            let chunk = if std::mem::take(&mut cursor.header) {
                encode(&cursor, &[], &[], true)?
            } else {
                Vec::new()
            };
            return Ok(Some((Bytes::from(chunk), cursor)));
        };
        // Statements ride along with the whole log only: a filtered export cannot
        // verify on its own. Each follows the event at its position; a resumed export
        // starts with the statements at the resumed position again, so an interrupted
        // download never misses one (a repeated statement is harmless).
        let statements = if cursor.filter.is_everything() {
            let from = if std::mem::take(&mut cursor.resumed) {
                cursor.after - 1
            } else {
                cursor.after
            };
            crate::statements::statements(&cursor.db, from, last, i64::MAX).await?
        } else {
            Vec::new()
        };
        let header = std::mem::take(&mut cursor.header);
        let chunk = encode(&cursor, &events, &statements, header)?;
        cursor.after = last;
        Ok(Some((Bytes::from(chunk), cursor)))
    })
}

fn encode(
    cursor: &Cursor,
    events: &[ChainedEvent],
    statements: &[Statement],
    header: bool,
) -> Result<Vec<u8>, sqlx::Error> {
    let mut lines = Vec::new();
    let mut pending = statements.iter().peekable();
    let mut records: Vec<Flat<&RawValue>> = Vec::with_capacity(events.len() + statements.len());
    for event in events {
        while let Some(statement) = pending.next_if(|s| s.position() < event.position) {
            records.push(Flat::statement(statement));
        }
        records.push(Flat::event(event, &*event.data));
        while let Some(statement) = pending.next_if(|s| s.position() == event.position) {
            records.push(Flat::statement(statement));
        }
    }
    records.extend(pending.map(Flat::statement));
    let failed = |err: String| sqlx::Error::Protocol(format!("encoding the export: {err}"));
    match cursor.format {
        Format::Ndjson => {
            for record in &records {
                serde_json::to_writer(&mut lines, record).map_err(|err| failed(err.to_string()))?;
                lines.push(b'\n');
            }
        }
        Format::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(&mut lines);
            if header {
                writer
                    .write_record(CSV_HEADER)
                    .map_err(|err| failed(err.to_string()))?;
            }
            for record in &records {
                let text = |value: Option<String>| value.unwrap_or_default();
                let number = |value: Option<i64>| value.map(|n| n.to_string()).unwrap_or_default();
                let row = [
                    record.kind.clone(),
                    record.position.to_string(),
                    record.hash.clone(),
                    text(record.id.map(|id| id.to_string())),
                    text(record.created_at.clone()),
                    number(record.created_at_us),
                    text(record.component.clone()),
                    text(record.environment.clone()),
                    text(record.email.clone()),
                    text(record.message.clone()),
                    text(record.data.map(|data| data.get().to_owned())),
                    number(record.first_position),
                    number(record.cutoff_us),
                    number(record.chained_by_us),
                    number(record.signed_at_us),
                    text(record.signature.clone()),
                ];
                writer
                    .write_record(&row)
                    .map_err(|err| failed(err.to_string()))?;
            }
            writer.flush().map_err(|err| failed(err.to_string()))?;
        }
    }
    Ok(lines)
}

const CSV_HEADER: [&str; 16] = [
    "kind",
    "position",
    "hash",
    "id",
    "created_at",
    "created_at_us",
    "component",
    "environment",
    "email",
    "message",
    "data",
    "first_position",
    "cutoff_us",
    "chained_by_us",
    "signed_at_us",
    "signature",
];

/// Reads an export back, NDJSON or CSV (told apart by the first byte), record by
/// record.
pub fn read(
    reader: impl BufRead + 'static,
) -> Result<Box<dyn Iterator<Item = Result<Record, String>>>, String> {
    let mut reader = reader;
    let first = reader
        .fill_buf()
        .map_err(|err| format!("reading the export: {err}"))?
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .copied();
    if first == Some(b'{') {
        let records = serde_json::Deserializer::from_reader(reader)
            .into_iter::<Flat<Box<RawValue>>>()
            .map(|flat| {
                flat.map_err(|err| format!("line {}: not an export record: {err}", err.line()))
                    .and_then(|flat| flat.into_record(Ok))
            });
        return Ok(Box::new(records));
    }
    let records = csv::ReaderBuilder::new()
        .from_reader(reader)
        .into_deserialize::<Flat<String>>()
        .map(|flat| {
            flat.map_err(|err| format!("not an export row: {err}"))
                .and_then(|flat| {
                    flat.into_record(|text| {
                        RawValue::from_string(text)
                            .map_err(|err| format!("`data` is not JSON: {err}"))
                    })
                })
        });
    Ok(Box::new(records))
}
