//! TEMPORARY: audit API.
use axum::Router;
pub fn routes() -> Router<crate::state::AppState> {
    Router::new()
}
