//! Paging, one way for every list: a limit with a default and a maximum, and opaque
//! keyset cursors naming the last row of the previous page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Rows per page when the request does not say.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most rows one page holds.
pub const MAX_LIMIT: u32 = 1000;

/// The words for a limit out of range.
pub const LIMIT_RULE: &str = "limit must be an integer from 1 to 1000.";
/// The words for a cursor this service did not issue.
pub const CURSOR_RULE: &str = "cursor is not one this service issued.";

/// The page size a request asked for: `DEFAULT_LIMIT` when it did not, an error (say
/// [`LIMIT_RULE`]) outside 1 to `MAX_LIMIT`.
pub fn limit(asked: Option<i64>) -> Result<u32, &'static str> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or(LIMIT_RULE),
    }
}

/// A cursor over the key fields of a row. Fields are joined by `:`; only the last may
/// contain one.
pub fn encode_cursor(fields: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(fields.join(":"))
}

/// The `N` key fields of a cursor [`encode_cursor`] made; `None` for anything else (an
/// empty cursor included: a request without one leaves the parameter out).
pub fn decode_cursor<const N: usize>(cursor: &str) -> Option<[String; N]> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let fields: Vec<String> = text.splitn(N, ':').map(str::to_owned).collect();
    fields.try_into().ok()
}

/// A page out of `rows` fetched with one row more than `limit`: the first `limit`, and
/// the cursor of the last of them if more rows follow.
pub fn page<T>(
    mut rows: Vec<T>,
    limit: usize,
    cursor: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(cursor);
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(limit(Some(1)), Ok(1));
        assert_eq!(limit(Some(1000)), Ok(1000));
        for out in [0, -1, 1001, i64::MAX] {
            assert_eq!(limit(Some(out)), Err(LIMIT_RULE), "{out}");
        }
    }

    #[test]
    fn cursors_round_trip_and_anything_else_is_refused() {
        let cursor = encode_cursor(&["17", "3", "student:with:colons"]);
        assert_eq!(
            decode_cursor::<3>(&cursor),
            Some(["17".into(), "3".into(), "student:with:colons".into()])
        );
        assert_eq!(
            decode_cursor::<3>(&encode_cursor(&["17", "3"])),
            None,
            "too few fields"
        );
        assert_eq!(decode_cursor::<2>("!!!"), None, "not base64");
        assert_eq!(
            decode_cursor::<2>(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])),
            None
        );
        assert_eq!(decode_cursor::<2>(""), None);
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_rows_follow() {
        let (rows, next) = page(vec![1, 2, 3], 3, |n| n.to_string());
        assert_eq!((rows, next), (vec![1, 2, 3], None));
        let (rows, next) = page(vec![1, 2, 3, 4], 3, |n| n.to_string());
        assert_eq!((rows, next), (vec![1, 2, 3], Some("3".into())));
    }
}
