//! Pagination cursors, authenticated. A cursor is `<content hex>.<tag hex>`, where the tag is
//! HMAC-SHA-256 (RFC 2104) under the ledger's cursor key (kept in the database, so cursors survive
//! restarts) over the cursor's content and its scope: the endpoint and the filters of the request
//! that issued it. A cursor that was forged, altered, or issued for another list is refused with
//! 400 before anything of it reaches a query.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// Longer cursors are refused before they are decoded.
const CURSOR_CHARS_MAX: usize = 512;

/// Issues and checks cursors.
#[derive(Clone)]
pub struct Cursors {
    keyed: HmacSha256,
}

impl Cursors {
    /// HMAC takes a key of any length, so this fails only if the `hmac` crate broke its contract.
    pub fn new(key: &[u8; 32]) -> Result<Self, hmac::digest::InvalidLength> {
        Ok(Self {
            keyed: <HmacSha256 as Mac>::new_from_slice(key)?,
        })
    }

    fn tag(&self, scope: &[&str], content: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(b"ledger:cursor:v1");
        for part in scope {
            mac.update(&[0]);
            mac.update(part.as_bytes());
        }
        // Every scope part is free of NUL bytes (codes, ids, validated filters), so the encoding
        // is unambiguous; the length of the content ends it.
        mac.update(&[0xff]);
        mac.update(&(content.len() as u64).to_be_bytes());
        mac.update(content);
        mac
    }

    /// A cursor that resumes a list after `content`, valid only for requests of `scope`.
    /// A page of a list read with one item more than `limit`: the first `limit` items, and the
    /// cursor after the last of them when there was more.
    pub fn page<T>(
        &self,
        scope: &[&str],
        mut items: Vec<T>,
        limit: i64,
        key: impl Fn(&T) -> &str,
    ) -> (Vec<T>, Option<String>) {
        if items.len() as i64 <= limit {
            return (items, None);
        }
        items.truncate(limit as usize);
        let next = items.last().map(|item| self.issue(scope, key(item)));
        (items, next)
    }

    pub fn issue(&self, scope: &[&str], content: &str) -> String {
        let tag = self.tag(scope, content.as_bytes()).finalize().into_bytes();
        format!("{}.{}", hex::encode(content), hex::encode(tag))
    }

    /// The content of a cursor this server issued for `scope`; anything else is a 400.
    pub fn open(&self, scope: &[&str], cursor: &str) -> Result<String, ApiError> {
        let refused = || {
            ApiError::InvalidRequest("cursor is not one this server issued for this list".into())
        };
        if cursor.len() > CURSOR_CHARS_MAX {
            return Err(refused());
        }
        let (content, tag) = cursor.split_once('.').ok_or_else(refused)?;
        let content = hex::decode(content).map_err(|_| refused())?;
        let tag = hex::decode(tag).map_err(|_| refused())?;
        // Compared in constant time.
        self.tag(scope, &content)
            .verify_slice(&tag)
            .map_err(|_| refused())?;
        String::from_utf8(content).map_err(|_| refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_only_unaltered_and_in_its_scope() {
        let cursors = Cursors::new(&[7; 32]).expect("any key length");
        let cursor = cursors.issue(&["accounts", "ali"], "alice:cash");
        assert_eq!(
            cursors.open(&["accounts", "ali"], &cursor).ok().as_deref(),
            Some("alice:cash")
        );
        assert!(cursors.open(&["accounts", "bo"], &cursor).is_err());
        assert!(Cursors::new(&[8; 32])
            .expect("any key length")
            .open(&["accounts", "ali"], &cursor)
            .is_err());
        let (content, tag) = cursor.split_once('.').unwrap_or_default();
        let forged = format!("{}.{tag}", hex::encode("bob:cash"));
        assert!(cursors.open(&["accounts", "ali"], &forged).is_err());
        let mut flipped = content.to_owned();
        flipped.replace_range(0..1, if content.starts_with('6') { "7" } else { "6" });
        assert!(cursors
            .open(&["accounts", "ali"], &format!("{flipped}.{tag}"))
            .is_err());
        for junk in ["", ".", "x.y", "' OR 1=1 --", &"a".repeat(600)] {
            assert!(cursors.open(&["accounts", "ali"], junk).is_err());
        }
    }
}
