//! The canonical form of an event and the hash chain over it (README, "Audit log").
//!
//! ```text
//! hash(n) = SHA-256( hash(n-1) as 32 bytes          (32 zero bytes before position 1)
//!                  ‖ field(position) ‖ field(id) ‖ field(created_at)
//!                  ‖ field(component) ‖ field(environment) ‖ field(email)
//!                  ‖ field(message) ‖ field(data) )
//! field(x) = length of x in bytes, u32 big-endian ‖ the UTF-8 bytes of x
//! ```
//!
//! `position` and `created_at` (Unix microseconds) are decimal, `id` is the lowercase
//! hyphenated UUID, and `data` is the JSON text exactly as it was posted and is
//! returned. Hashes are written as 64 lowercase hex digits.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use studyhall_core::clock::Micros;

/// The hash "before" position 1.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One event's chained content.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub position: i64,
    pub id: Uuid,
    pub created_at: Micros,
    pub component: &'a str,
    pub environment: &'a str,
    pub email: &'a str,
    pub message: &'a str,
    pub data: &'a str,
}

impl Entry<'_> {
    /// The chain hash at this entry, following `previous` (hex).
    pub fn link(&self, previous: &str) -> Result<String, BadHash> {
        let mut hasher = Sha256::new();
        hasher.update(decode_hex(previous)?);
        hasher.update(self.canonical());
        Ok(hex(&hasher.finalize()))
    }

    /// The fields, each as `field(x)`: what the chain hashes after the previous hash,
    /// and what the tree's leaf hashes (`tree::leaf_hash`).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.message.len() + self.data.len());
        let mut field = |text: &str| {
            // Fields are bounded far below 4 GiB (the body limit is 1 MiB).
            out.extend_from_slice(&(text.len() as u32).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        };
        field(&self.position.to_string());
        field(
            self.id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer()),
        );
        field(&self.created_at.0.to_string());
        field(self.component);
        field(self.environment);
        field(self.email);
        field(self.message);
        field(self.data);
        out
    }
}

/// A stored hash that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a SHA-256 hash (64 hex digits)")]
pub struct BadHash(pub String);

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits as the 32 bytes they spell.
pub(crate) fn decode_hex(text: &str) -> Result<[u8; 32], BadHash> {
    let bad = || BadHash(text.chars().take(80).collect());
    if text.len() != 64 || !text.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(message: &str) -> Entry<'_> {
        Entry {
            position: 1,
            id: Uuid::from_u128(0x0191e4e4_0000_7000_8000_000000000001),
            created_at: Micros(1_618_531_200_123_456),
            component: "order",
            environment: "production",
            email: "ade@gmail.com",
            message,
            data: r#"{"age": 20}"#,
        }
    }

    #[test]
    fn the_hash_is_the_documented_sha256() {
        // Recomputed by hand from the definition above.
        let mut hasher = Sha256::new();
        hasher.update([0u8; 32]);
        for field in [
            "1",
            "0191e4e4-0000-7000-8000-000000000001",
            "1618531200123456",
            "order",
            "production",
            "ade@gmail.com",
            "order failed",
            r#"{"age": 20}"#,
        ] {
            hasher.update((field.len() as u32).to_be_bytes());
            hasher.update(field.as_bytes());
        }
        let expected = hex(&hasher.finalize());
        assert_eq!(entry("order failed").link(GENESIS).unwrap(), expected);
    }

    #[test]
    fn every_field_and_the_previous_hash_change_the_hash() {
        let base = entry("order failed").link(GENESIS).unwrap();
        assert_ne!(entry("order failed!").link(GENESIS).unwrap(), base);
        let other_previous = "11".repeat(32);
        assert_ne!(entry("order failed").link(&other_previous).unwrap(), base);
        let mut moved = entry("order failed");
        moved.position = 2;
        assert_ne!(moved.link(GENESIS).unwrap(), base);
        // Length prefixes keep field boundaries: moving a character from one field to
        // the next is a different entry.
        let mut shifted = entry("order failed");
        shifted.component = "orde";
        shifted.environment = "rproduction";
        assert_ne!(shifted.link(GENESIS).unwrap(), base);
    }

    #[test]
    fn a_malformed_previous_hash_is_an_error() {
        assert!(entry("x").link("abc").is_err());
        assert!(entry("x").link(&"zz".repeat(32)).is_err());
    }
}
