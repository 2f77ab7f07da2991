//! Assets and their scales. Inline: every decision needs an asset's scale. Read: the assets and
//! an asset's scale.

use std::collections::HashMap;

use domain::{AssetCode, Event, LedgerState, Scale};
use sqlx::PgConnection;

use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::reads::{AtPosition, ReadStore};
use crate::{Error, Result};

pub static ASSETS: Table = Table {
    name: "assets",
    columns: &[
        col("code", SqlType::Text),
        col("scale", SqlType::Int2),
        col("position", SqlType::Int8),
    ],
    on_conflict: OnConflict::Refuse,
};

pub static PROJECTION: Projection = Projection {
    name: "assets",
    tables: &[&ASSETS],
    deletes: &[],
    mode: Mode::Inline(project),
    legs: false,
};

fn project(applied: &Applied<'_>, _: &LedgerState, out: &mut [TableRows]) {
    if let (Event::AssetDefined(a), [assets]) = (applied.event, out) {
        assets.push([
            a.asset.as_str().into(),
            (a.scale.get() as i16).into(),
            applied.position.into(),
        ]);
    }
}

/// Restores every asset into `state`; returns the scales by code, for the restores after it.
pub(crate) async fn restore(
    conn: &mut PgConnection,
    state: &mut LedgerState,
) -> Result<HashMap<String, Scale>> {
    let mut scales = HashMap::new();
    let assets: Vec<(String, i16)> = sqlx::query_as("SELECT code, scale FROM assets")
        .fetch_all(conn)
        .await?;
    for (code, scale) in assets {
        let asset = AssetCode::try_from(code.clone()).map_err(corrupt)?;
        let scale = Scale::try_from(scale as u32).map_err(corrupt)?;
        state.restore_asset(asset, scale)?;
        scales.insert(code, scale);
    }
    Ok(scales)
}

/// A stored value the domain's types refuse: the projection was not written by this ledger.
pub(crate) fn corrupt(e: domain::ValueError) -> Error {
    Error::Corrupt(e.to_string())
}

/// The scale of `asset`, which a stored row names.
pub(crate) fn scale_of(scales: &HashMap<String, Scale>, asset: &str, what: &str) -> Result<Scale> {
    scales
        .get(asset)
        .copied()
        .ok_or_else(|| Error::Corrupt(format!("{what} in undefined asset {asset}")))
}

#[derive(Debug, Clone)]
pub struct AssetRecord {
    pub code: String,
    pub scale: i16,
    pub position: i64,
}

impl ReadStore {
    pub async fn assets(&self) -> Result<AtPosition<Vec<AssetRecord>>> {
        let (mut tx, position) = self.snapshot().await?;
        let rows: Vec<(String, i16, i64)> =
            sqlx::query_as("SELECT code, scale, position FROM assets ORDER BY code")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let value = rows
            .into_iter()
            .map(|(code, scale, position)| AssetRecord {
                code,
                scale,
                position,
            })
            .collect();
        Ok(AtPosition { value, position })
    }

    /// An asset's scale, if it is defined.
    pub async fn asset_scale(&self, code: &str) -> Result<Option<i16>> {
        Ok(
            sqlx::query_scalar("SELECT scale FROM assets WHERE code = $1")
                .bind(code)
                .fetch_optional(self.pool())
                .await?,
        )
    }
}
