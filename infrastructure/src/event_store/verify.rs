//! Verifying the log: recomputing the hash chain over the whole log, or over the part between two
//! checkpoints an auditor kept, and reporting the first position where it breaks.

use domain::chain::{self, Hash};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use super::{hash_at, page, Link, PAGE_EVENTS};
use crate::{Error, Result};

/// What walking the chain found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChainReport {
    /// Events whose hash was recomputed and matched, from position 1.
    pub events_verified: i64,
    /// The last position of the log.
    pub head_position: i64,
    /// The hash stored with the last event (hex), or the genesis hash for an empty log.
    pub head_hash: String,
    /// The first position where the chain breaks: an altered, missing or misplaced event.
    pub first_broken_position: Option<i64>,
    pub problem: Option<String>,
    /// Events written before migration 0013 whose stored form differs from their hashed form
    /// only in how numbers of equal value are written (`respelled`): a known defect of that
    /// writer, proven not to be an alteration, listed up to `RESPELLED_LISTED_MAX`.
    pub stored_form_differs: Vec<StoredFormDiffers>,
    /// How many such events there are in all.
    pub stored_form_differs_count: i64,
}

/// Events of the known defect listed one by one in a report; the count covers them all.
pub const RESPELLED_LISTED_MAX: usize = 100;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoredFormDiffers {
    pub position: i64,
    /// `stored form differs from hashed form: …`, with the numbers as stored and as hashed.
    pub cause: String,
}

impl ChainReport {
    fn respelled(&mut self, position: i64, cause: String) {
        self.stored_form_differs_count += 1;
        if self.stored_form_differs.len() < RESPELLED_LISTED_MAX {
            self.stored_form_differs
                .push(StoredFormDiffers { position, cause });
        }
    }

    pub fn intact(&self) -> bool {
        self.first_broken_position.is_none()
    }
}

/// Recomputes the chain from the genesis hash over the whole log, in position order, and
/// reports the first position where it breaks. `progress(done, total)` is called per page.
pub async fn verify_chain(pool: &PgPool, progress: impl FnMut(i64, i64)) -> Result<ChainReport> {
    let mut conn = pool.acquire().await?;
    verify_chain_on(&mut conn, progress).await
}

/// `verify_chain` on one connection, which may be inside a transaction (an import checks what
/// it wrote before committing).
pub(crate) async fn verify_chain_on(
    conn: &mut PgConnection,
    progress: impl FnMut(i64, i64),
) -> Result<ChainReport> {
    verify_chain_visiting(conn, progress, |_| Ok(())).await
}

/// `verify_chain_on`, handing `visit` every event whose link verified, in position order: one
/// pass for the checks that read the events themselves (`audit::verify_closes`).
pub(crate) async fn verify_chain_visiting(
    conn: &mut PgConnection,
    mut progress: impl FnMut(i64, i64),
    mut visit: impl FnMut(&super::StoredEvent) -> Result<()>,
) -> Result<ChainReport> {
    let head_position: i64 = sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
        .fetch_one(&mut *conn)
        .await?;
    let mut previous: Hash = chain::genesis();
    let mut report = ChainReport {
        events_verified: 0,
        head_position,
        head_hash: chain::to_hex(&previous),
        first_broken_position: None,
        problem: None,
        stored_form_differs: Vec::new(),
        stored_form_differs_count: 0,
    };
    let mut expected_position = 1;
    'pages: while expected_position <= head_position {
        let rows = page(&mut *conn, expected_position - 1, PAGE_EVENTS).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let stored_hash = chain::to_hex_slice(&row.hash);
            report.head_hash = stored_hash.clone();
            if row.position != expected_position {
                report.first_broken_position = Some(expected_position);
                report.problem = Some(format!(
                    "position {expected_position} is missing (the next event is at {})",
                    row.position
                ));
                break 'pages;
            }
            let link = row.link(&previous);
            if let Some(problem) = link.problem(row.position) {
                report.first_broken_position = Some(row.position);
                report.problem = Some(problem);
                break 'pages;
            }
            previous = match link {
                Link::Respelled(head, cause) => {
                    report.respelled(row.position, cause);
                    head
                }
                Link::Intact(head) | Link::Broken(head) | Link::NotCanonical(head) => head,
            };
            visit(&row)?;
            report.events_verified += 1;
            expected_position += 1;
        }
        progress(report.events_verified, head_position);
    }
    Ok(report)
}

/// Whether the log still extends an earlier checkpoint: the stored hash at `from` is the one the
/// auditor kept, and recomputing the chain from it over (from, to] arrives at the stored hash at
/// `to` (and at `to_hash`, when the auditor kept that too).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Consistency {
    pub consistent: bool,
    pub from: i64,
    pub to: i64,
    /// The first position where the log disagrees with the checkpoints or with itself.
    pub first_broken_position: Option<i64>,
    pub problem: Option<String>,
}

pub async fn consistency(
    pool: &PgPool,
    from: i64,
    from_hash: Option<&str>,
    to: i64,
    to_hash: Option<&str>,
) -> Result<Consistency> {
    let report = Consistency {
        consistent: true,
        from,
        to,
        first_broken_position: None,
        problem: None,
    };
    let broken = |mut report: Consistency, at: i64, problem: String| {
        report.consistent = false;
        report.first_broken_position = Some(at);
        report.problem = Some(problem);
        Ok(report)
    };
    let Some(start) = hash_at(pool, from).await? else {
        return broken(report, from, format!("position {from} is not in the log"));
    };
    if let Some(expected) = from_hash {
        if chain::to_hex_slice(&start) != expected.to_ascii_lowercase() {
            return broken(
                report,
                from,
                format!("the hash at {from} is not the checkpoint's: the history up to it was rewritten"),
            );
        }
    }
    let mut previous: Hash = start
        .try_into()
        .map_err(|_| Error::Corrupt(format!("the hash at {from} is not 32 bytes")))?;
    let mut expected_position = from + 1;
    while expected_position <= to {
        let rows = page(
            pool,
            expected_position - 1,
            PAGE_EVENTS.min(to - expected_position + 1),
        )
        .await?;
        if rows.is_empty() {
            return broken(
                report,
                expected_position,
                format!("position {expected_position} is missing"),
            );
        }
        for row in rows {
            if row.position != expected_position {
                return broken(
                    report,
                    expected_position,
                    format!("position {expected_position} is missing"),
                );
            }
            let link = row.link(&previous);
            if let Some(problem) = link.problem(row.position) {
                return broken(report, row.position, problem);
            }
            let (Link::Intact(head)
            | Link::Respelled(head, _)
            | Link::Broken(head)
            | Link::NotCanonical(head)) = link;
            previous = head;
            expected_position += 1;
        }
    }
    if let Some(expected) = to_hash {
        if chain::to_hex(&previous) != expected.to_ascii_lowercase() {
            return broken(
                report,
                to,
                format!("the hash at {to} is not the checkpoint's"),
            );
        }
    }
    Ok(report)
}
