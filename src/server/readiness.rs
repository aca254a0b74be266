//! Readiness: whether this process should receive traffic now.
//!
//! Liveness (`/-/healthy`) needs no state: a process that answers is alive. Readiness is the
//! component's call (a store gateway is ready once its first bucket sync is done, and may go
//! back to not-ready), so it is a shared handle that the component flips and that the HTTP
//! `/-/ready` endpoint (and later the gRPC health service) reads.

use std::borrow::Cow;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// Cheap, cloneable readiness flag with the reason for being not ready. Clones share state.
/// Reading it never waits: probes must answer whatever the component is doing.
#[derive(Clone, Debug)]
pub struct Readiness {
    /// `None` = ready.
    state: Arc<ArcSwap<Option<Cow<'static, str>>>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// Starts not ready, with reason "starting".
    pub fn new() -> Self {
        Self {
            state: Arc::new(ArcSwap::from_pointee(Some(Cow::Borrowed("starting")))),
        }
    }

    /// Marks the process ready.
    pub fn set_ready(&self) {
        if let Some(reason) = &*self.state.swap(Arc::new(None)) {
            tracing::info!(was = %reason, "ready");
        }
    }

    /// Marks the process not ready; `reason` is shown to whoever probes.
    pub fn set_not_ready(&self, reason: impl Into<Cow<'static, str>>) {
        let reason = reason.into();
        let before = self.state.swap(Arc::new(Some(reason.clone())));
        if before.as_deref() != Some(&*reason) {
            tracing::info!(%reason, "not ready");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.state.load().is_none()
    }

    /// `Ok` when ready, else the reason.
    pub fn check(&self) -> Result<(), Cow<'static, str>> {
        match &**self.state.load() {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_and_is_shared_by_clones() {
        let r = Readiness::new();
        let probe = r.clone();
        assert_eq!(probe.check(), Err("starting".into()));
        r.set_ready();
        assert!(probe.is_ready());
        r.set_not_ready(format!("syncing {} blocks", 3));
        assert_eq!(probe.check(), Err("syncing 3 blocks".into()));
        assert!(!probe.is_ready());
    }
}
