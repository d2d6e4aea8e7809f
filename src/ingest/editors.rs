//! The receiver's copy of the HR editors lists (`hr_editors`), so deciding whether a change
//! counts costs a hash lookup, not a query inside the 5 s reply budget. Reloaded when
//! Postgres says the table changed (`NOTIFY teams_bridge_editors`) and at least every
//! `every`, so a lost notification costs seconds at most.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
    time::Duration,
};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::domain::hr_command::Operation;

/// Webhook → the Entra object ids of its HR editors; a webhook absent here has no list.
pub type Lists = HashMap<String, HashSet<String>>;

/// Whether a message counts as a change: reads and notes always do; a create, update or
/// delete does when the webhook has no list or its sender is on it.
pub fn authorized(list: Option<&HashSet<String>>, operation: Operation, aad: Option<&str>) -> bool {
    match list {
        None => true,
        Some(_) if !operation.is_change() => true,
        Some(list) => aad.is_some_and(|id| list.contains(id)),
    }
}

/// The cached lists, shared by every request.
#[derive(Debug, Default)]
pub struct Editors {
    lists: RwLock<Arc<Lists>>,
}

impl Editors {
    /// The decision for one message.
    pub fn authorized(&self, webhook: &str, operation: Operation, aad: Option<&str>) -> bool {
        let lists = self.snapshot();
        authorized(lists.get(webhook), operation, aad)
    }

    /// The lists as last loaded.
    pub fn snapshot(&self) -> Arc<Lists> {
        self.lists.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the lists.
    pub fn set(&self, lists: Lists) {
        *self.lists.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(lists);
    }

    /// Loads the lists from Postgres.
    pub async fn reload(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        self.set(load(pool).await?);
        Ok(())
    }
}

/// Every webhook's list.
pub async fn load(pool: &PgPool) -> Result<Lists, sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("select webhook, aad_object_id from hr_editors")
            .fetch_all(pool)
            .await?;
    let mut lists = Lists::new();
    for (webhook, id) in rows {
        lists.entry(webhook).or_default().insert(id);
    }
    Ok(lists)
}

/// Keeps `editors` fresh until `shutdown`: on every notification and every `every`. A failed
/// reload keeps the previous lists (and says so) until the next one works.
pub async fn keep_fresh(
    editors: Arc<Editors>,
    pool: PgPool,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut listener = None;
    loop {
        if listener.is_none() {
            listener = listen(&pool).await;
        }
        let woke = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ok = woke => if !ok { listener = None },
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = editors.reload(&pool).await {
            tracing::warn!(error = %e, "could not reload the HR editors lists; keeping the previous ones");
        }
    }
}

async fn listen(pool: &PgPool) -> Option<sqlx::postgres::PgListener> {
    let mut l = sqlx::postgres::PgListener::connect_with(pool).await.ok()?;
    l.listen("teams_bridge_editors").await.ok()?;
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;

    #[test]
    fn no_list_allows_everyone_and_a_list_gates_only_changes() {
        assert!(authorized(None, Update, None));
        let list: HashSet<String> = ["aad-editor".to_string()].into();
        for op in [Create, Update, Delete] {
            assert!(authorized(Some(&list), op, Some("aad-editor")));
            assert!(!authorized(Some(&list), op, Some("aad-other")), "{op}");
            assert!(
                !authorized(Some(&list), op, None),
                "{op}: no id is no editor"
            );
        }
        for op in [Read, Note] {
            assert!(authorized(Some(&list), op, Some("aad-other")), "{op}");
        }
        let empty = HashSet::new();
        assert!(!authorized(Some(&empty), Update, Some("aad-editor")));
    }

    #[test]
    fn the_cache_answers_from_the_lists_it_was_given() {
        let editors = Editors::default();
        assert!(editors.authorized("contoso", Update, Some("x")));
        editors.set([("contoso".to_string(), ["a".to_string()].into())].into());
        assert!(!editors.authorized("contoso", Update, Some("x")));
        assert!(editors.authorized("contoso", Update, Some("a")));
        assert!(editors.authorized("other", Update, Some("x")));
    }
}
