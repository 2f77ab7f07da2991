//! The web console at `/console`: plain HTML, CSS and ES modules from `api/console/`, embedded in
//! the binary at compile time (`build.rs`). Every path under `/console` that is not one of its
//! files is one of its pages and gets `index.html`; the page's script reads the path, so any view
//! can be bookmarked and shared. The console is static: it holds no secret and reads the ledger
//! through the same `/v1` API, with the user's key, as any other client.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/console_files.rs"));
}

/// Where the console's files are served from under `/console`.
const STATIC_PREFIX: &str = "static/";

/// Nothing is loaded from anywhere but this server, no inline script runs, and no other site may
/// frame the console (a framed console could be clicked through by another page).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// Where the files come from: those embedded, or a folder read at each request
/// (`--console-dir`, to work on the console without rebuilding the binary).
#[derive(Clone)]
enum Files {
    Embedded,
    Dir(Arc<PathBuf>),
}

impl Files {
    async fn get(&self, path: &str) -> Option<Cow<'static, [u8]>> {
        // Only plain names below the root: no `..`, no absolute paths, no empty segments.
        if path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == ".." || s.contains('\\'))
        {
            return None;
        }
        match self {
            Self::Embedded => embedded::FILES
                .iter()
                .find(|(name, _)| *name == path)
                .map(|(_, bytes)| Cow::Borrowed(*bytes)),
            Self::Dir(root) => tokio::fs::read(root.join(path)).await.ok().map(Cow::Owned),
        }
    }
}

/// The console's routes, to merge beside the API's. `dir`: serve from this folder instead of
/// the embedded files.
pub fn router(dir: Option<PathBuf>) -> Router {
    let files = dir.map_or(Files::Embedded, |d| Files::Dir(Arc::new(d)));
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/{*path}", get(file_or_page))
        .with_state(files)
}

async fn index(State(files): State<Files>) -> Response {
    serve(&files, "index.html").await
}

async fn file_or_page(State(files): State<Files>, Path(path): Path<String>) -> Response {
    match path.strip_prefix(STATIC_PREFIX) {
        Some(file) => serve(&files, file).await,
        None => serve(&files, "index.html").await,
    }
}

async fn serve(files: &Files, path: &str) -> Response {
    let Some(bytes) = files.get(path).await else {
        return crate::error::ApiError::RouteNotFound.into_response();
    };
    let mut response = (StatusCode::OK, Body::from(bytes)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The files change with the binary: a browser asks again rather than run an old script
    // against a new API.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_is_embedded_with_its_index_and_scripts() {
        let names: Vec<&str> = embedded::FILES.iter().map(|(n, _)| *n).collect();
        assert!(names.contains(&"index.html"), "{names:?}");
        assert!(names.contains(&"app.js"), "{names:?}");
        for name in names {
            assert_ne!(content_type(name), "application/octet-stream", "{name}");
        }
    }

    #[tokio::test]
    async fn paths_outside_the_console_are_not_files() {
        let files = Files::Dir(Arc::new(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("console"),
        ));
        assert!(files.get("index.html").await.is_some());
        for path in ["../Cargo.toml", "/etc/passwd", "a//b", "./index.html", ""] {
            assert!(files.get(path).await.is_none(), "{path}");
        }
    }
}
