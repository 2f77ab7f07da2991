//! `GET /v1/events/stream`: the log as Server-Sent Events, catching up from a position and then
//! following new events as they commit. Positions have no gaps, so resuming from the last `id`
//! (`Last-Event-ID`) never skips or repeats an event.
//!
//! Memory is bounded per client: a producer task reads the log a page at a time into a channel
//! of `stream_buffer_events`; when a client stops reading for `stream_stall_max`, the producer
//! stops and the client receives an `error` event saying why, then the end of the stream.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::books::Book;
use crate::error::{ApiError, Problem};
use crate::extract::Params;
use crate::render::event_view;
use crate::state::AppState;

/// Events read from the database per query.
const PAGE_EVENTS: i64 = 500;
/// How often a caught-up stream looks for new events when no local writer tells it.
const IDLE_POLL: Duration = Duration::from_millis(250);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Start after this position (0, the beginning, when absent). A `Last-Event-ID` header wins.
    pub after: Option<i64>,
}

/// Follow the log: every event after `after` (or `Last-Event-ID`), then each new one as it
/// commits. Each SSE message has `id` = position, `event` = the event type, and `data` = the event
/// as `GET /v1/events` shows it. A client that stops reading is disconnected with an `error`
/// message (`consumer_too_slow`); reconnect with `Last-Event-ID` to resume.
#[utoipa::path(
    get, path = "/v1/events/stream", tag = "events", params(StreamParams),
    responses(
        (status = 200, content_type = "text/event-stream", description = "Server-Sent Events"),
        (status = "4XX", body = Problem), (status = 503, body = Problem)
    )
)]
async fn stream_events(
    State(state): State<AppState>,
    book: Book,
    headers: HeaderMap,
    Params(params): Params<StreamParams>,
) -> Result<Response, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::InvalidRequest("Last-Event-ID is not a position".into()))
        })
        .transpose()?;
    let after = last_event_id.or(params.after).unwrap_or(0);
    if after < 0 {
        return Err(ApiError::InvalidRequest(format!(
            "after {after} is negative"
        )));
    }
    let permit = state
        .streams()
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Infrastructure(infrastructure::Error::Overloaded))?;
    let limits = state.limits();
    let (sender, receiver) = mpsc::channel(limits.stream_buffer_events);
    let too_slow = Arc::new(AtomicBool::new(false));
    let stall_max = limits.stream_stall_max;
    tokio::spawn({
        let too_slow = too_slow.clone();
        async move {
            produce(state, book, after, sender, stall_max, too_slow).await;
            drop(permit);
        }
    });
    Ok(Sse::new(consume(receiver, too_slow))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Reads the log into the channel until the client goes away or stops reading.
async fn produce(
    state: AppState,
    book: Book,
    mut after: i64,
    sender: mpsc::Sender<SseEvent>,
    stall_max: Duration,
    too_slow: Arc<AtomicBool>,
) {
    let mut committed = book.writer().watch_committed();
    let mut closing = state.watch_closing();
    loop {
        if *closing.borrow_and_update() {
            return;
        }
        let page = match book.reads().events(after, PAGE_EVENTS).await {
            Ok(page) => page.value,
            Err(e) => {
                let _ = sender
                    .send(SseEvent::default().event("error").data(format!(
                        r#"{{"code":"database_unavailable","detail":"{}"}}"#,
                        "the database is unavailable; reconnect with Last-Event-ID"
                    )))
                    .await;
                tracing::warn!(error = %e, "event stream stopped");
                return;
            }
        };
        if page.is_empty() {
            // Caught up: wait for a commit (or poll, when another process is the writer).
            tokio::select! {
                _ = sender.closed() => return,
                _ = closing.changed() => return,
                changed = committed.changed() => {
                    if changed.is_err() {
                        // The writer is gone (shutting down): nothing will wake us; poll.
                        tokio::time::sleep(IDLE_POLL).await;
                    }
                }
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        for stored in page {
            let position = stored.position;
            let event_type = stored.event_type.clone();
            // An event that cannot be shown ends the stream rather than sending an empty message
            // the client would take for the event.
            let Ok(data) = event_view(stored).and_then(|view| {
                serde_json::to_string(&view)
                    .map_err(|e| infrastructure::Error::Corrupt(e.to_string()))
            }) else {
                return;
            };
            let message = SseEvent::default()
                .id(position.to_string())
                .event(event_type)
                .data(data);
            let sent = tokio::select! {
                sent = tokio::time::timeout(stall_max, sender.send(message)) => sent,
                _ = closing.changed() => return,
            };
            match sent {
                Ok(Ok(())) => after = position,
                // The client went away.
                Ok(Err(_)) => return,
                Err(_) => {
                    too_slow.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }
}

/// The client's side: what the producer sent, then, if the producer gave up on a client that did
/// not read, one `error` message saying so.
fn consume(
    receiver: mpsc::Receiver<SseEvent>,
    too_slow: Arc<AtomicBool>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(Some(receiver), move |receiver| {
        let too_slow = too_slow.clone();
        async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Some(message) => Some((Ok(message), Some(receiver))),
                None if too_slow.load(Ordering::Acquire) => Some((
                    Ok(SseEvent::default().event("error").data(
                        r#"{"code":"consumer_too_slow","detail":"this client did not read its events in time; reconnect with Last-Event-ID to resume"}"#,
                    )),
                    None,
                )),
                None => None,
            }
        }
    })
}
