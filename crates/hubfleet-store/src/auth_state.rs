//! Each user's `auth_state`: an opaque, already-encrypted blob (the authenticator seals it; the
//! store never sees it in clear). Deleted with the user.

use crate::error::StoreError;
use crate::store::{Store, dispatch};

impl Store {
    /// Stores (`Some`) or removes (`None`) the user's sealed auth state.
    pub async fn set_auth_state(
        &self,
        user_id: i64,
        sealed: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        dispatch!(self, write, |pool| {
            match &sealed {
                Some(bytes) => {
                    sqlx::query(
                        "INSERT INTO auth_states (user_id, sealed) VALUES ($1, $2) \
                         ON CONFLICT (user_id) DO UPDATE SET sealed = excluded.sealed",
                    )
                    .bind(user_id)
                    .bind(bytes.as_slice())
                    .execute(pool)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM auth_states WHERE user_id = $1")
                        .bind(user_id)
                        .execute(pool)
                        .await?;
                }
            }
            Ok(())
        })
    }

    /// The user's sealed auth state, if any.
    pub async fn get_auth_state(&self, user_id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        dispatch!(self, read, |pool| {
            let sealed: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT sealed FROM auth_states WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(pool)
                    .await?;
            Ok(sealed)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use hubfleet_types::UserName;

    #[tokio::test]
    async fn stores_replaces_and_removes_sealed_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        let user = store
            .create_user(&UserName::parse("alice").unwrap(), false)
            .await
            .unwrap();
        assert_eq!(store.get_auth_state(user.id).await.unwrap(), None);
        store
            .set_auth_state(user.id, Some(vec![1, 2, 3]))
            .await
            .unwrap();
        store
            .set_auth_state(user.id, Some(vec![4, 5]))
            .await
            .unwrap();
        assert_eq!(
            store.get_auth_state(user.id).await.unwrap(),
            Some(vec![4, 5])
        );
        store.set_auth_state(user.id, None).await.unwrap();
        assert_eq!(store.get_auth_state(user.id).await.unwrap(), None);
    }
}
