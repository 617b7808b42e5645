//! Which configured app a push is for, and whether its signature is good enough for that app.
//!
//! A push names its app by the key it is signed with (the token's `Username`), by the body's
//! `appKey` (SMS, CDRs), or by its X number (in the pool of one app); with a single app
//! configured, every push is that app's. An app with `verify_push_signature` takes a push only
//! when it is signed with that app's own key and secret: a push signed by another app, or by
//! nobody, is refused (401) once it turns out to be for such an app, so naming an app that
//! does not verify in the header cannot slip a push past one that does.

use time::OffsetDateTime;

use super::signature::{self, Signature};
use crate::config::AppConfig;
use crate::lifecycle::Pool;
use crate::upstream::Secret;

/// One configured app, as pushes see it.
#[derive(Debug)]
pub(super) struct PushApp {
    pub name: String,
    app_key: String,
    /// Never logged.
    secret: Secret,
    /// Refuse pushes not signed with this app's key and secret.
    pub verify: bool,
    /// X mode: what a caller hears when the answer is `close`.
    pub close_hint_tone: Option<String>,
}

/// Every configured app.
#[derive(Debug)]
pub(super) struct PushApps {
    apps: Vec<PushApp>,
}

/// Who signed a push.
#[derive(Debug, Clone, Copy)]
pub(super) enum Signed<'a> {
    /// No signature headers.
    Unsigned,
    /// Headers that cannot be read, or signed with a key no app has: why.
    Unusable(&'static str),
    /// Signed with `app`'s key; `verified` when the app checks signatures (and this one passed).
    By { app: &'a PushApp, verified: bool },
}

impl<'a> Signed<'a> {
    /// The app whose key signed the push, checked or not.
    pub fn app(self) -> Option<&'a PushApp> {
        match self {
            Signed::By { app, .. } => Some(app),
            _ => None,
        }
    }

    /// The app whose signature was checked.
    pub fn verified(self) -> Option<&'a PushApp> {
        match self {
            Signed::By {
                app,
                verified: true,
            } => Some(app),
            _ => None,
        }
    }

    /// Whether a push signed like this may be taken for `target`: always, unless `target`
    /// verifies signatures and this is not its own verified one.
    pub fn admits(self, target: &PushApp) -> Result<(), String> {
        if !target.verify || self.verified().is_some_and(|app| app.name == target.name) {
            return Ok(());
        }
        let why = match self {
            Signed::Unsigned => "it is not signed",
            Signed::Unusable(why) => why,
            Signed::By { .. } => "it is signed with another app's key",
        };
        Err(format!(
            "the push is for app {} which verifies signatures, and {why}",
            target.name
        ))
    }
}

impl PushApps {
    pub fn new(apps: &[AppConfig]) -> PushApps {
        let apps = apps
            .iter()
            .map(|app| PushApp {
                name: app.name.clone(),
                app_key: app.app_key.clone(),
                secret: app.app_secret.clone(),
                verify: app.verify_push_signature,
                close_hint_tone: app.close_hint_tone.clone(),
            })
            .collect();
        PushApps { apps }
    }

    pub fn by_name(&self, name: &str) -> Option<&PushApp> {
        self.apps.iter().find(|app| app.name == name)
    }

    /// The app of `app_key` (never an app without a key).
    pub fn by_key(&self, app_key: &str) -> Option<&PushApp> {
        self.apps
            .iter()
            .find(|app| !app.app_key.is_empty() && app.app_key == app_key)
    }

    /// The app that holds the number `x` (in cluster mode, led here or not).
    pub fn by_number(&self, pool: &Pool, x: &str) -> Option<&PushApp> {
        pool.owner_of_number(x)
            .and_then(|owner| self.by_name(&owner))
    }

    /// The one app, when only one is configured.
    pub fn only(&self) -> Option<&PushApp> {
        match self.apps.as_slice() {
            [app] => Some(app),
            _ => None,
        }
    }

    /// Who signed a push with `signature`, checked at `now` when the signing app verifies
    /// signatures; `Err` (why) when that check fails.
    pub fn signer(
        &self,
        signature: Signature,
        now: OffsetDateTime,
        max_skew_seconds: u64,
    ) -> Result<Signed<'_>, &'static str> {
        let token = match signature {
            Signature::Absent => return Ok(Signed::Unsigned),
            Signature::Malformed(why) => return Ok(Signed::Unusable(why)),
            Signature::Token(token) => token,
        };
        let Some(app) = self.by_key(&token.username) else {
            return Ok(Signed::Unusable("it is signed with a key no app has"));
        };
        if app.verify {
            signature::verify(&token, app.secret.expose(), now, max_skew_seconds)?;
        }
        Ok(Signed::By {
            app,
            verified: app.verify,
        })
    }
}
