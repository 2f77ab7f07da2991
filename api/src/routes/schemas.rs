//! The JSON Schemas (2020-12) of the log's events, served as docs/schemas holds them: one schema
//! per event type and schema version for the payload, and one for a whole event as an export
//! line or an item of `GET /v1/events` carries it. docs/schemas is the one source: the texts are
//! embedded from those files at build time, and tests/tests/event_schemas.rs checks that what is
//! served is exactly what the directory holds and that the schemas agree with `domain::event`.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, Problem};
use crate::extract::PathParam;
use crate::state::AppState;

/// `docs/schemas/event.schema.json`.
const EVENT_SCHEMA: &str = include_str!("../../../docs/schemas/event.schema.json");

/// Declares each payload schema by type and version, embedding
/// `docs/schemas/events/<type>.v<version>.schema.json`.
macro_rules! payload_schemas {
    ($(($event_type:literal, $version:literal)),+ $(,)?) => {
        &[$((
            $event_type,
            $version,
            include_str!(concat!(
                "../../../docs/schemas/events/", $event_type, ".v", $version, ".schema.json"
            )),
        )),+]
    };
}

/// Every payload schema: (type, schema version, the file's text).
const PAYLOAD_SCHEMAS: &[(&str, i16, &str)] = payload_schemas![
    ("AssetDefined", 1),
    ("AccountOpened", 1),
    ("TransactionPosted", 1),
    ("TradeExecuted", 1),
    ("AccountStatusChanged", 1),
    ("AccountLimitsSet", 1),
    ("PendingPosted", 1),
    ("PendingVoided", 1),
    ("PendingExpired", 1),
    ("PeriodClosed", 1),
    ("PeriodReopened", 1),
    ("BookingMethodSet", 1),
    ("PriceMarked", 1),
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(event_schemas))
        .routes(routes!(event_schema))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventSchemasView {
    /// The schema of a whole event (docs/schemas/event.schema.json): the envelope, with the
    /// payload checked against the payload schema its `type` and `schema_version` name. Its
    /// `$ref`s name the payload schemas by their `$id`.
    #[schema(value_type = Object)]
    pub event: Box<RawValue>,
    /// One per event type and schema version the ledger writes or has written.
    pub schemas: Vec<PayloadSchemaView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayloadSchemaView {
    /// The event type (`TransactionPosted`).
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i16,
    /// The payload's JSON Schema (docs/schemas/events/<type>.v<version>.schema.json).
    #[schema(value_type = Object)]
    pub schema: Box<RawValue>,
}

/// A schema text as JSON to serve as it stands.
fn raw(text: &str) -> Result<Box<RawValue>, ApiError> {
    // The texts are the committed files, which a test parses; a file that is not JSON would be
    // a build of a broken checkout, answered as an internal error rather than a panic.
    RawValue::from_string(text.to_owned()).map_err(|e| {
        ApiError::Infrastructure(infrastructure::Error::Corrupt(format!(
            "an embedded event schema is not JSON: {e}"
        )))
    })
}

/// The JSON Schemas (2020-12) of the events: the schema of a whole event (an export line, an
/// item of `GET /v1/events`) and one per event type and schema version for its payload, the
/// texts of docs/schemas. They are the same for every ledger.
#[utoipa::path(
    get, path = "/v1/schemas/events", tag = "events",
    responses((status = 200, body = EventSchemasView), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn event_schemas() -> Result<Json<EventSchemasView>, ApiError> {
    let schemas = PAYLOAD_SCHEMAS
        .iter()
        .map(|&(event_type, schema_version, text)| {
            Ok(PayloadSchemaView {
                event_type: event_type.to_owned(),
                schema_version,
                schema: raw(text)?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(EventSchemasView {
        event: raw(EVENT_SCHEMA)?,
        schemas,
    }))
}

/// The JSON Schema (2020-12) of one event type's payload in one schema version, as
/// docs/schemas/events/<type>.v<version>.schema.json holds it.
#[utoipa::path(
    get, path = "/v1/schemas/events/{type}/{version}", tag = "events",
    params(
        ("type" = String, Path, description = "The event type (`TransactionPosted`)"),
        ("version" = i16, Path, description = "The schema version (`1`)"),
    ),
    responses(
        (status = 200, description = "The payload's JSON Schema", body = Object),
        (status = 404, body = Problem, description = "event_schema_not_found: no such type, or no such version of it"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn event_schema(
    PathParam((event_type, version)): PathParam<(String, String)>,
) -> Result<Response, ApiError> {
    let text = PAYLOAD_SCHEMAS
        .iter()
        .find(|&&(t, v, _)| t == event_type && version.parse::<i16>() == Ok(v))
        .map(|&(_, _, text)| text)
        .ok_or_else(|| ApiError::NotFound {
            code: "event_schema_not_found",
            what: format!("a schema of {event_type:?} version {version:?}"),
        })?;
    Ok(Json(raw(text)?).into_response())
}
