//! A writer's answer to one command as HTTP: the status, the body (the view of what was created,
//! or a problem document) and the headers that say where it is in the log and whether it was a
//! replay. Shared by the write routes and their dry runs.

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use infrastructure::{Outcome, Reply};

use crate::error::{ApiError, RETRY_AFTER_S};
use crate::render::committed_view;

pub const LEDGER_POSITION: HeaderName = HeaderName::from_static("ledger-position");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A writer's answer to one command, rendered: what a single POST returns, and what each entry of
/// a batch's results holds.
pub struct RenderedReply {
    pub status: StatusCode,
    /// The encoded JSON body: the view of what was created, or a problem document.
    pub body: Vec<u8>,
    pub position: Option<i64>,
    pub replayed: bool,
}

pub fn render_reply(answer: Result<Reply, infrastructure::Error>) -> RenderedReply {
    let (outcome, replayed) = match answer {
        Ok(reply) => (Ok(reply.outcome), reply.replayed),
        Err(e) => (Err(ApiError::from(e)), false),
    };
    match outcome {
        Ok(Outcome::Accepted(committed)) => RenderedReply {
            status: StatusCode::CREATED,
            body: committed_view(&committed),
            position: Some(committed.position),
            replayed,
        },
        Ok(Outcome::Rejected(rejection)) => problem_reply(ApiError::Rejected(rejection), replayed),
        Err(error) => problem_reply(error, false),
    }
}

fn problem_reply(error: ApiError, replayed: bool) -> RenderedReply {
    let problem = error.problem();
    RenderedReply {
        status: StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body: serde_json::to_vec(&problem).unwrap_or_default(),
        position: None,
        replayed,
    }
}

impl IntoResponse for RenderedReply {
    fn into_response(self) -> Response {
        let content_type = if self.status.is_success() {
            "application/json"
        } else {
            "application/problem+json"
        };
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(position) = self.position {
            headers.insert(LEDGER_POSITION, HeaderValue::from(position));
        }
        if self.replayed {
            headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
        }
        response
    }
}
