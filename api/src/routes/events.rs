use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::books::Book;
use crate::error::{ApiError, Problem};
use crate::extract::Params;
use crate::render::event_view;
use crate::routes::write::at_position;
use crate::state::AppState;
use crate::views::EventPage;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Events with a position greater than this; 0 (the start) when absent.
    pub after: Option<i64>,
    /// 1 to 1000 (anything else is a 400, never clamped); 100 when absent.
    pub limit: Option<i64>,
    pub min_position: Option<i64>,
}

/// The raw log in position order. Positions have no gaps, so `after` = the last position seen
/// never skips an event.
#[utoipa::path(
    get, path = "/v1/events", tag = "events", params(EventParams),
    responses((status = 200, body = EventPage), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn list_events(
    State(state): State<AppState>,
    book: Book,
    Params(params): Params<EventParams>,
) -> Result<Response, ApiError> {
    let limit = state.page_size(params.limit)?;
    let after = params.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::InvalidRequest(format!(
            "after {after} is negative"
        )));
    }
    let page = book
        .reads_at(params.min_position)
        .events(after, limit)
        .await?;
    let next_after = page.value.last().map_or(after, |e| e.position);
    let items = page
        .value
        .into_iter()
        .map(event_view)
        .collect::<infrastructure::Result<_>>()?;
    Ok(at_position(page.position, EventPage { items, next_after }))
}
