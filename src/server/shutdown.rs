//! Graceful shutdown shared by every server in the process.
//!
//! [`Shutdown::on_signals`] turns the first SIGTERM or SIGINT into a [`Shutdown`] trigger: each
//! server (HTTP, gRPC) waits on a clone, stops accepting, and drains its in-flight requests,
//! all at the same time. A second signal exits at once, for the operator whose drain hangs.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use super::ServerError;

/// A cloneable shutdown trigger. Clones share one state: triggering any of them releases every
/// [`Shutdown::wait`] future, including ones created later.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A trigger fired only by [`Shutdown::trigger`] (tests, or a component that fails and
    /// must take the other servers down with it).
    pub fn new() -> Self {
        Self::default()
    }

    /// A trigger fired by the first SIGTERM or SIGINT (Ctrl-C). Installs the handlers before
    /// returning, so a signal that arrives afterwards is never lost, and spawns the task that
    /// waits for them; call it inside the Tokio runtime. From then on those signals no longer
    /// kill the process by default: the second one calls `exit(128 + signo)`.
    pub fn on_signals() -> Result<Self, ServerError> {
        let shutdown = Self::new();
        let signals = Signals::install()?;
        tokio::spawn(watch_signals(signals, shutdown.clone()));
        Ok(shutdown)
    }

    /// Starts the shutdown. Idempotent.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown is triggered (at once if it already was). Owns its state, so it
    /// can be handed to `axum::serve(..).with_graceful_shutdown` or tonic's
    /// `serve_with_shutdown`, which need `'static` futures.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }
}

async fn watch_signals(mut signals: Signals, shutdown: Shutdown) {
    let first = signals.next().await;
    tracing::info!(
        signal = first.name,
        "received signal, shutting down gracefully; send it again to exit at once"
    );
    shutdown.trigger();
    let second = signals.next().await;
    tracing::warn!(
        signal = second.name,
        "received second signal, exiting without draining"
    );
    // The shell's convention for "killed by signal n".
    std::process::exit(128 + second.number);
}

#[derive(Debug, Clone, Copy)]
struct Received {
    name: &'static str,
    number: i32,
}

#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Result<Self, ServerError> {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).map_err(|source| ServerError::Signal {
            signal: "SIGTERM",
            source,
        })?;
        let int = signal(SignalKind::interrupt()).map_err(|source| ServerError::Signal {
            signal: "SIGINT",
            source,
        })?;
        Ok(Self { term, int })
    }

    async fn next(&mut self) -> Received {
        tokio::select! {
            Some(()) = self.term.recv() => Received { name: "SIGTERM", number: libc::SIGTERM },
            Some(()) = self.int.recv() => Received { name: "SIGINT", number: libc::SIGINT },
            // Both streams closed: no signal can arrive any more.
            else => std::future::pending().await,
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Result<Self, ServerError> {
        Ok(Self)
    }

    async fn next(&mut self) -> Received {
        if let Err(source) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %source, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        Received {
            name: "Ctrl-C",
            number: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn trigger_releases_every_waiter_even_late_ones() {
        let s = Shutdown::new();
        let early = tokio::spawn(s.clone().wait());
        assert!(!s.is_triggered());
        s.clone().trigger();
        tokio::time::timeout(Duration::from_secs(5), early)
            .await
            .unwrap()
            .unwrap();
        assert!(s.is_triggered());
        tokio::time::timeout(Duration::from_secs(5), s.wait())
            .await
            .unwrap();
    }

    /// The only test that sends a real signal to the test process: one SIGTERM, which the
    /// handler installed by `on_signals` turns into a trigger (a second would exit).
    #[cfg(unix)]
    #[tokio::test]
    async fn sigterm_triggers_shutdown() {
        let s = Shutdown::on_signals().unwrap();
        assert!(!s.is_triggered());
        // SAFETY: kill with our own pid and a signal whose handler is installed above.
        let rc = unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        assert_eq!(rc, 0);
        tokio::time::timeout(Duration::from_secs(10), s.wait())
            .await
            .expect("SIGTERM did not trigger shutdown");
    }
}
