//! Postgres `NOTIFY teams_bridge_outbox` as wake-ups, so a relay running in another process
//! than the receiver still starts within milliseconds of a commit.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::handoff::Handoff;

/// Listens until `shutdown`, reconnecting after a lost connection.
pub(crate) async fn forward_notifications(
    pool: PgPool,
    wake: Arc<Handoff>,
    shutdown: CancellationToken,
) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        if listener.listen("teams_bridge_outbox").await.is_err() {
            continue;
        }
        loop {
            tokio::select! {
                n = listener.recv() => match n {
                    Ok(_) => wake.wake(),
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
