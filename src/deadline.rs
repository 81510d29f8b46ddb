//! Optional deadlines for `select!` loops: a branch that fires at an instant, or never.

use tokio::time::Instant;

/// Completes at `deadline`, or never when there is none.
pub async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
