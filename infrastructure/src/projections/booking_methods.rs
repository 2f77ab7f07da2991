//! Booking methods: each account's, stated at opening or changed later, with the position from
//! which it applies. Inline: the writer restores which accounts book by specific lots (their
//! sales must name lots), and the lots projection and reads take each book's method from it.

use domain::{BookingMethod, Event, LedgerState};
use futures_util::TryStreamExt;
use sqlx::PgConnection;

use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::{Error, Result};

pub static BOOKING_METHODS: Table = Table {
    name: "booking_methods",
    columns: &[
        col("position", SqlType::Int8),
        col("account", SqlType::Text),
        col("booking_method", SqlType::Text),
    ],
    on_conflict: OnConflict::Refuse,
};

pub static PROJECTION: Projection = Projection {
    name: "booking_methods",
    tables: &[&BOOKING_METHODS],
    deletes: &[],
    mode: Mode::Inline(project),
    legs: false,
};

/// The method an event sets, and for which account: an opening that states one, or a change.
pub fn method_set(event: &Event) -> Option<(&domain::AccountCode, BookingMethod)> {
    match event {
        Event::AccountOpened(e) => e.booking_method.map(|method| (&e.code, method)),
        Event::BookingMethodSet(e) => Some((&e.account, e.booking_method)),
        _ => None,
    }
}

fn project(applied: &Applied<'_>, _: &LedgerState, out: &mut [TableRows]) {
    let ([methods], Some((account, method))) = (out, method_set(applied.event)) else {
        return;
    };
    methods.push([
        applied.position.into(),
        account.to_string().into(),
        method.as_str().to_owned().into(),
    ]);
}

/// Restores which accounts book by specific lots now (each account's latest method).
pub(crate) async fn restore(conn: &mut PgConnection, state: &mut LedgerState) -> Result<()> {
    let mut latest = sqlx::query_as::<_, (String, String)>(
        "SELECT DISTINCT ON (account) account, booking_method FROM booking_methods
         ORDER BY account, position DESC",
    )
    .fetch(conn);
    while let Some((account, method)) = latest.try_next().await? {
        let method: BookingMethod = method
            .parse()
            .map_err(|e| Error::Corrupt(format!("booking method of {account}: {e}")))?;
        if method == BookingMethod::Specific {
            let code = account
                .parse()
                .map_err(|e| Error::Corrupt(format!("account code {account:?}: {e}")))?;
            state.restore_specific(code);
        }
    }
    Ok(())
}
