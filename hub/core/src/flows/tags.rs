//! The tag flow: an NFC tag registered in a client's home (SPEC §6, VIS002 reads the
//! register), from an administrator, case management, an import or a provider's system.
//!
//! A registration is a message like any other: logged with its outcome before the answer.
//! A provider's system may register tags only for its own clients and may not move a tag
//! out of another provider's client's home (see `Flows::register_tag`).

use carehub_model::{ErrorCode, OrgNumber, TagRegistration, ValidationError};

use super::{logged_id, store_unavailable, Flows};
use crate::intake::{Rejection, Sender};
use crate::store::{LogStatus, NewLogEntry, Op, StoreError};

impl Flows {
    /// Registers an NFC tag in a client's home. The registration is a message like any
    /// other: logged (from `source`, `api` or `import`) with its outcome before the answer;
    /// a refusal is logged as rejected with its code.
    ///
    /// A provider's system registers tags for its own clients only (`Flows::may_register`):
    /// a tag decides whose visits VIS002 rejects, so a provider that could hang another
    /// provider's client's tag in its own client's home could have that provider's genuine
    /// visits rejected and unpaid.
    pub(crate) async fn register_tag(
        &self,
        source: &str,
        payload: Vec<u8>,
        parsed: Result<TagRegistration, ValidationError>,
        sender: &Sender,
    ) -> Result<i64, Rejection> {
        let mut entry = NewLogEntry {
            system: source.to_owned(),
            vendor: "carehub".to_owned(),
            direction: "in",
            message_type: "tag_registration".to_owned(),
            content_type: "application/json".to_owned(),
            payload,
            ..NewLogEntry::default()
        };
        let refuse = |mut entry: NewLogEntry, code: ErrorCode, reason: String| async move {
            entry.status = LogStatus::Rejected;
            entry.error_code = Some(code.as_str().to_owned());
            entry.error_message = Some(reason.clone());
            match self.store.commit(vec![Op::AppendLog(entry)]).await {
                Ok(results) => Rejection { code, message: reason, message_id: logged_id(&results) },
                Err(e) => store_unavailable(e),
            }
        };
        let tag = match parsed.and_then(|t| t.validate().map(|_| t)) {
            Ok(t) => t,
            Err(e) => return Err(refuse(entry, e.code, e.reason).await),
        };
        entry.client = Some(tag.client.expose().to_owned());
        entry.canonical = serde_json::to_string(&tag).ok();
        if let Sender::Provider(org) = sender {
            entry.provider = Some(org.as_str().to_owned());
            if let Err(reason) = self.may_register(org, &tag).await? {
                return Err(refuse(entry, ErrorCode::Forbidden, reason).await);
            }
        }
        let mut accepted = entry.clone();
        accepted.status = LogStatus::Accepted;
        match self.store.commit(vec![Op::AppendLog(accepted), Op::RegisterTag(tag)]).await {
            Ok(results) => Ok(logged_id(&results).unwrap_or_default()),
            Err(StoreError::Conflict(why)) => {
                let reason = format!("{why}: a registration cannot start before the tag's latest one");
                Err(refuse(entry, ErrorCode::TagConflict, reason).await)
            }
            Err(e) => Err(store_unavailable(e)),
        }
    }

    /// Whether provider `org` may register `tag`: its client must have an active order at
    /// `org` on the installation day, and the home the tag leaves (its open registration, which
    /// ends the day before) must not be that of another provider's client on that day. A
    /// home whose client has no active order anywhere is no provider's to defend. The reason
    /// when not; `Err` when the store cannot say.
    async fn may_register(&self, org: &OrgNumber, tag: &TagRegistration) -> Result<Result<(), String>, Rejection> {
        let day = tag.installed_on;
        let providers = self.store.client_providers(tag.client.expose(), day).await.map_err(store_unavailable)?;
        if !providers.iter().any(|p| p == org.as_str()) {
            return Ok(Err(format!(
                "provider {org} may register tags only for its own clients: the client has no active order at {org} on {day}"
            )));
        }
        let history = self.store.tags(None, Some(tag.tag_uid.as_str().to_owned())).await.map_err(store_unavailable)?;
        let Some(home) = history.iter().rev().find(|t| t.removed_on.is_none()) else { return Ok(Ok(())) };
        if home.client == tag.client {
            return Ok(Ok(()));
        }
        let theirs = self.store.client_providers(home.client.expose(), day).await.map_err(store_unavailable)?;
        if !theirs.is_empty() && !theirs.iter().any(|p| p == org.as_str()) {
            return Ok(Err(format!(
                "tag {} hangs in the home of another provider's client; provider {org} may not move it \
                 (case management or an administrator may)",
                tag.tag_uid.as_str()
            )));
        }
        Ok(Ok(()))
    }
}
