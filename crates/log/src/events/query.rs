//! What a read of the log asks for, validated: the filters, a list's bounded limit,
//! decoded cursor and instants, an export's range, a checkpoint page; and the page a
//! list answers.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::model::{fail, validation_error, Event};
use crate::store::Filter;
use studyhall_core::clock::Micros;
use studyhall_core::error::ApiError;
use studyhall_core::page;

/// The filters of `GET /api/events` and `GET /api/events/export`, as sent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Exact email.
    pub email: Option<String>,
    /// Exact environment.
    pub environment: Option<String>,
    /// Exact component.
    pub component: Option<String>,
    /// Case-sensitive substring of the message.
    pub message: Option<String>,
    /// Events created at or after: `MM-DD-YYYY`, `YYYY-MM-DD` (midnight UTC) or RFC 3339.
    pub from_date: Option<String>,
    /// Events created before: same formats as `from_date`.
    pub to_date: Option<String>,
}

impl FilterParams {
    /// The filter, with every invalid parameter named in `errors`.
    fn parse(self, errors: &mut Map<String, Value>) -> Filter {
        let from = parse_instant(errors, "from_date", self.from_date.as_deref());
        let to = parse_instant(errors, "to_date", self.to_date.as_deref());
        if let (Some(from), Some(to)) = (from, to) {
            if from >= to {
                fail::<()>(
                    errors,
                    "to_date",
                    "to_date must be later than from_date.".into(),
                );
            }
        }
        let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
        Filter {
            email: non_empty(self.email),
            environment: non_empty(self.environment),
            component: non_empty(self.component),
            message: non_empty(self.message),
            from,
            to,
        }
    }
}

/// The paging parameters of `GET /api/events`, as sent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 1000; default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// `next_cursor` from the previous page, unchanged (base64url); anything else is a 400.
    #[param(pattern = "^\\s*[A-Za-z0-9_-]*\\s*$")]
    pub cursor: Option<String>,
    /// `asc` (oldest first, default, as the original listed them) or `desc`.
    #[param(pattern = "^(asc|desc)$")]
    pub order: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// A position in the (created_at, id) order: the last event of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: Micros,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        page::encode_cursor(&[
            &self.created_at.0.to_string(),
            &self.id.simple().to_string(),
        ])
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let [micros, id] = page::decode_cursor(text)?;
        Some(Cursor {
            created_at: Micros(micros.parse().ok()?),
            id: Uuid::try_parse(&id).ok()?,
        })
    }
}

/// A validated list request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Filter,
    pub limit: u32,
    pub after: Option<Cursor>,
    pub descending: bool,
}

impl ListQuery {
    pub fn parse(filter: FilterParams, params: ListParams) -> Result<ListQuery, ApiError> {
        let mut errors = Map::new();
        let filter = filter.parse(&mut errors);
        let asked = params.limit.as_deref().map(str::trim);
        let limit = match asked.map(|text| text.parse::<i64>().map_err(|_| page::LIMIT_RULE)) {
            None => page::limit(None),
            Some(number) => number.and_then(|n| page::limit(Some(n))),
        };
        let limit = limit.unwrap_or_else(|rule| {
            fail(&mut errors, "limit", rule.into()).unwrap_or(page::DEFAULT_LIMIT)
        });
        let descending = match params.order.as_deref().map(str::trim) {
            Some("desc") => true,
            None | Some("asc") => false,
            Some(_) => fail(
                &mut errors,
                "order",
                "order must be `asc` or `desc`.".into(),
            )
            .unwrap_or(true),
        };
        let after = match params.cursor.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Cursor::decode(text).or_else(|| {
                fail(
                    &mut errors,
                    "cursor",
                    "cursor is not one this service issued; pass next_cursor unchanged.".into(),
                )
            }),
        };
        if !errors.is_empty() {
            return Err(validation_error(errors));
        }
        Ok(ListQuery {
            filter,
            limit,
            after,
            descending,
        })
    }
}

/// The options of `GET /api/events/export`, as sent (its filters are [`FilterParams`]).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `ndjson` (default) or `csv`.
    #[param(pattern = "^(ndjson|csv)$")]
    pub format: Option<String>,
    /// Resume after this chain position: the `position` of the last event received.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
}

/// A validated export request.
#[derive(Debug, Clone)]
pub struct ExportQuery {
    pub filter: Filter,
    pub format: crate::export::Format,
    pub after: i64,
}

impl ExportQuery {
    pub fn parse(filter: FilterParams, params: ExportParams) -> Result<ExportQuery, ApiError> {
        use crate::export::Format;
        let mut errors = Map::new();
        let filter = filter.parse(&mut errors);
        let format = match params.format.as_deref().map(str::trim) {
            None | Some("ndjson") => Format::Ndjson,
            Some("csv") => Format::Csv,
            Some(_) => fail(
                &mut errors,
                "format",
                "format must be `ndjson` or `csv`.".into(),
            )
            .unwrap_or_default(),
        };
        let after = match params.after.as_deref().map(str::trim) {
            None => 0,
            Some(text) => text.parse::<i64>().ok().filter(|after| *after >= 0).or_else(|| {
                fail(
                    &mut errors,
                    "after",
                    "after must be a chain position (a whole number, 0 or more): the `position` of the last event received.".into(),
                )
            }).unwrap_or(0),
        };
        if !errors.is_empty() {
            return Err(validation_error(errors));
        }
        Ok(ExportQuery {
            filter,
            format,
            after,
        })
    }
}

/// Query parameters of `GET /api/events/checkpoints`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckpointParams {
    /// Statements after this position (default 0: from the start).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
    /// Page size, 1 to 1000; default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

impl CheckpointParams {
    /// (after, limit), validated.
    pub fn parse(&self) -> Result<(i64, u32), ApiError> {
        let mut errors = Map::new();
        let after = match self.after.as_deref().map(str::trim) {
            None => 0,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .or_else(|| {
                    fail(
                        &mut errors,
                        "after",
                        "after must be a chain position (a whole number, 0 or more).".into(),
                    )
                })
                .unwrap_or(0),
        };
        let limit = match self.limit.as_deref().map(str::trim) {
            None => page::limit(None),
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| page::LIMIT_RULE)
                .and_then(|n| page::limit(Some(n))),
        }
        .unwrap_or_else(|rule| {
            fail(&mut errors, "limit", rule.into()).unwrap_or(page::DEFAULT_LIMIT)
        });
        if !errors.is_empty() {
            return Err(validation_error(errors));
        }
        Ok((after, limit))
    }
}

/// The chain's state and a page of its signed statements.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointPage {
    /// The last chained position and its hash.
    pub head: crate::store::Head,
    /// Events stored but not chained yet (listed all the same; chained within seconds).
    pub unchained: i64,
    /// The Ed25519 public key that verifies the signatures (base64); null when this
    /// deployment signs no checkpoints (PostgreSQL without STUDYHALL_AUDIT_SIGNING_KEY).
    pub public_key: Option<String>,
    /// Checkpoints and retention markers, by position.
    #[schema(value_type = Vec<Object>)]
    pub checkpoints: Vec<crate::key::Statement>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<i64>,
}

fn parse_instant(errors: &mut Map<String, Value>, field: &str, value: Option<&str>) -> Option<i64> {
    let text = value.map(str::trim).filter(|t| !t.is_empty())?;
    match parse_date(text) {
        Some(instant) => Some(instant),
        None => fail(
            errors,
            field,
            format!(
                "{field} must be MM-DD-YYYY, YYYY-MM-DD or an RFC 3339 timestamp; got `{text}`."
            ),
        ),
    }
}

/// The seed's `MM-DD-YYYY`, ISO `YYYY-MM-DD` (both midnight UTC), or RFC 3339, as Unix
/// microseconds.
pub fn parse_date(text: &str) -> Option<i64> {
    let us_date = format_description!("[month]-[day]-[year]");
    // The original's own documented example is `2-13-2020`.
    let us_date_unpadded = format_description!("[month padding:none]-[day padding:none]-[year]");
    let iso_date = format_description!("[year]-[month]-[day]");
    let instant = if let Ok(date) = Date::parse(text, &us_date) {
        date.midnight().assume_utc()
    } else if let Ok(date) = Date::parse(text, &us_date_unpadded) {
        date.midnight().assume_utc()
    } else if let Ok(date) = Date::parse(text, &iso_date) {
        date.midnight().assume_utc()
    } else {
        OffsetDateTime::parse(text, &Rfc3339).ok()?
    };
    Some(studyhall_core::clock::micros(instant))
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_date_formats_agree() {
        let midnight = 1_618_531_200_000_000; // 2021-04-16T00:00:00Z
        assert_eq!(parse_date("04-16-2021"), Some(midnight));
        assert_eq!(parse_date("4-16-2021"), Some(midnight));
        let february_13 = 1_581_552_000_000_000; // 2020-02-13T00:00:00Z, the original's example
        assert_eq!(parse_date("2-13-2020"), Some(february_13));
        assert_eq!(parse_date("2021-04-16"), Some(midnight));
        assert_eq!(parse_date("2021-04-16T00:00:00Z"), Some(midnight));
        assert_eq!(
            parse_date("2021-04-16T02:00:00.5+02:00"),
            Some(midnight + 500_000)
        );
        for bad in [
            "16-04-2021",
            "2021-13-01",
            "yesterday",
            "2021-04-16T00:00:00",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            created_at: Micros(1_618_531_200_123_456),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("not-a-cursor"), None);
        assert_eq!(Cursor::decode(""), None);
    }

    #[test]
    fn list_parameters_are_bounded() {
        let parse = |limit: &str| {
            ListQuery::parse(
                FilterParams::default(),
                ListParams {
                    limit: Some(limit.into()),
                    ..Default::default()
                },
            )
        };
        assert_eq!(parse("1000").unwrap().limit, 1000);
        for bad in ["0", "1001", "-1", "ten", "1.5"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let reversed = FilterParams {
            from_date: Some("2021-04-17".into()),
            to_date: Some("2021-04-16".into()),
            ..Default::default()
        };
        assert!(ListQuery::parse(reversed, ListParams::default()).is_err());
    }
}
