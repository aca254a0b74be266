//! The process plumbing every stele server shares (store, sidecar, querier): listen
//! addresses, the HTTP endpoint, readiness, shutdown, the runtime's watchdog. The StoreAPI's
//! gRPC services are the contract's, in `storeapi::server`.
//!
//! - [`addr`]: Thanos-style listen addresses (`:10902`, `0.0.0.0:10902`).
//! - [`http`]: the HTTP endpoint with `/metrics`, `/-/healthy`, `/-/ready`.
//! - [`readiness`]: the shared ready/not-ready handle the component flips.
//! - [`shutdown`]: SIGTERM/SIGINT as one trigger all servers drain on.
//! - [`watchdog`]: how late the async workers are, and a warning when one is blocked.
//!
//! A component wires them like this:
//!
//! ```no_run
//! # async fn run() -> Result<(), stele::server::ServerError> {
//! use stele::metrics::Metrics;
//! use stele::server::{parse_listen_addr, HttpServer, HttpState, Readiness, Shutdown};
//!
//! let shutdown = Shutdown::on_signals()?;
//! let state = HttpState::new("store", Metrics::new(), Readiness::new());
//! let http = HttpServer::bind(parse_listen_addr(":10902")?, state.clone())?;
//! let serving = http.serve_on_own_thread(shutdown.clone())?;
//! // ... register metrics, sync the bucket, then:
//! state.readiness.set_ready();
//! serving.await?;
//! # Ok(()) }
//! ```

pub(crate) mod addr;
mod error;
pub(crate) mod http;
pub(crate) mod readiness;
pub(crate) mod shutdown;
pub(crate) mod watchdog;

pub use addr::parse_listen_addr;
pub use error::ServerError;
pub use http::{HttpServer, HttpState};
pub use readiness::Readiness;
pub use shutdown::Shutdown;
pub use watchdog::Watchdog;
