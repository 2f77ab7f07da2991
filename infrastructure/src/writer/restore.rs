//! Restoring the writer's decider from the inline projections when it takes over, one restore
//! per projection, and checking that they agree with the log before anything is decided.

use chrono::DateTime;
use sqlx::PgConnection;

use super::decider::Decider;
use super::idempotency;
use crate::projections::{accounts, assets, balances, booking_methods, holds, periods, reversals};
use crate::{event_store, Error, Result};

pub(crate) async fn restore(conn: &mut PgConnection) -> Result<Decider> {
    let last = event_store::last(&mut *conn).await?;
    let log_head = last.map_or(0, |(position, _, _)| position);
    let projection_head: i64 = sqlx::query_scalar("SELECT position FROM projection_head")
        .fetch_one(&mut *conn)
        .await?;
    if projection_head != log_head {
        return Err(Error::Corrupt(format!(
            "the projections reflect position {projection_head} but the log ends at {log_head}; rebuild them from the log"
        )));
    }
    let mut state = domain::LedgerState::new();
    let scales = assets::restore(conn, &mut state).await?;
    accounts::restore(conn, &mut state, &scales).await?;
    balances::restore(conn, &mut state, &scales).await?;
    holds::restore(conn, &mut state).await?;
    reversals::restore(conn, &mut state).await?;
    periods::restore(conn, &mut state).await?;
    booking_methods::restore(conn, &mut state).await?;
    // Read back, the invariants must still hold: every asset's balances sum to zero, and every
    // reservation has both its sides.
    state.check_conservation()?;
    state.check_holds()?;
    state.restore_head(log_head);
    let keys = idempotency::restore(conn).await?;
    Ok(Decider {
        state,
        keys,
        chain_head: last.map_or_else(domain::chain::genesis, |(_, _, hash)| hash),
        next_position: log_head + 1,
        last_recorded_at: last.map_or(DateTime::UNIX_EPOCH, |(_, at, _)| at),
    })
}
