//! `/metrics` (Prometheus text format): on its own listener when `VESTIBULE_METRICS_BIND` is
//! set, and on the main port only with `Authorization: Bearer $VESTIBULE_METRICS_TOKEN`;
//! otherwise the main port answers 404 as for any unknown page.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};

use crate::domain::token::constant_time_eq;
use crate::state::AppState;

/// Registers `/metrics` on the main port.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(on_main_port);
}

/// The exposition (database gauges read now), or 503 when the database cannot be read.
pub async fn exposition(state: &AppState) -> HttpResponse {
    let metrics = state.metrics.clone();
    match crate::db::with_conn(&state.pool, move |c| metrics.render(c)).await {
        Ok(text) => HttpResponse::Ok().content_type(crate::metrics::CONTENT_TYPE).body(text),
        Err(e) => {
            tracing::error!(error = %e, "metrics: the database could not be read");
            HttpResponse::ServiceUnavailable().content_type("text/plain; charset=utf-8").body("database unavailable\n")
        }
    }
}

#[get("/metrics")]
async fn on_main_port(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(token) = state.settings.metrics_token.as_deref() else {
        return HttpResponse::NotFound().finish();
    };
    let sent = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(sent.trim().as_bytes(), token.as_bytes()) {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
            .content_type("text/plain; charset=utf-8")
            .body("a valid bearer token is needed\n");
    }
    exposition(&state).await
}

/// The handler of the metrics listener (no token: whoever reaches the address may read).
pub async fn on_metrics_listener(state: web::Data<AppState>) -> HttpResponse {
    exposition(&state).await
}
