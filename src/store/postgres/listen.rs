//! Revocations that every replica enforces within moments: each replica's writer notifies in
//! the revocation's own transaction, and each replica listens, reading them all again whenever
//! it (re)connects and every few seconds, in case a notification was missed.

use std::sync::Weak;
use std::thread;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator as _;
use postgres::{Client, Config, NoTls};

use super::monitor::PROBE_UP;
use super::{load_revocations, reason};
use crate::store::batch::DatabaseFailure;
use crate::store::durable::hold_all;
use crate::store::memory::MemoryRevocations;
use crate::time::unix_now;

/// The channel replicas tell each other of revocations on (`NOTIFY`): `EXPIRES_AT TOKEN_ID`,
/// or an empty payload for "read them all again".
pub(super) const REVOCATIONS: &str = "mrmat_revocations";

/// How often the listener reads every revocation again, in case it missed a notification.
/// (It also reads them all each time it connects: nothing is sent to a listener that is away.)
const RESYNC: Duration = Duration::from_secs(10);

/// The longest notification payload PostgreSQL takes is 8000 bytes; a longer one is sent empty.
pub(super) const MAX_PAYLOAD: usize = 7999;

/// Listens for the revocations other replicas (and this one) store, and enforces them here
/// within moments: a token revoked through any replica is refused by every one. `listening` has
/// already run LISTEN, before the revocations were first loaded, so none falls between the two.
/// Whenever it listens again (after losing the connection: nothing is sent to a listener that is
/// away) it reads them all again at once, and also every [`RESYNC`], so a missed notification is
/// made good. Ends when the store is gone.
pub(super) fn start_listener(
    config: Config,
    database: String,
    listening: Client,
    revocations: Weak<MemoryRevocations>,
) {
    thread::Builder::new()
        .name("store-listener".to_owned())
        .spawn(move || {
            let mut client = Some(listening);
            let mut resync_at = Instant::now() + RESYNC;
            loop {
                let Some(in_memory) = revocations.upgrade() else {
                    return;
                };
                if client.as_ref().is_none_or(Client::is_closed) {
                    match listen(&config) {
                        Ok(listening) => {
                            client = Some(listening);
                            resync_at = Instant::now();
                        }
                        Err(why) => {
                            log::debug!("cannot listen for revocations on {database}: {why}");
                            client = None;
                            drop(in_memory);
                            thread::sleep(PROBE_UP);
                            continue;
                        }
                    }
                }
                let listening = client.as_mut().expect("connected above");
                if Instant::now() >= resync_at {
                    match load_revocations(listening) {
                        Ok(revoked) => {
                            hold_all(&in_memory, revoked);
                            resync_at = Instant::now() + RESYNC;
                        }
                        Err(e) => {
                            log::debug!("cannot read revocations from {database}: {}", reason(&e));
                            client = None;
                            continue;
                        }
                    }
                }
                let mut notifications = listening.notifications();
                let mut arrived = notifications.timeout_iter(PROBE_UP);
                let now = unix_now();
                while let Ok(Some(notification)) = arrived.next() {
                    match parse_revocation(notification.payload()) {
                        Some((token_id, expires_at)) => {
                            if let Err(e) = in_memory.hold(token_id, expires_at, now) {
                                log::warn!("a revocation stored by a replica is not enforced: {e}");
                            }
                        }
                        // Too long to send: read them all.
                        None => resync_at = Instant::now(),
                    }
                }
            }
        })
        .expect("the OS starts a thread");
}

/// The token id and expiry a notification's `EXPIRES_AT TOKEN_ID` payload names; None for an
/// empty payload ("read them all again").
fn parse_revocation(payload: &str) -> Option<(&str, i64)> {
    let (expires_at, token_id) = payload.split_once(' ')?;
    Some((token_id, expires_at.parse().ok()?))
}

/// A connection listening on the [`REVOCATIONS`] channel.
pub(super) fn listen(config: &Config) -> Result<Client, DatabaseFailure> {
    let failed = |e: postgres::Error| DatabaseFailure::from(reason(&e));
    let mut client = config.connect(NoTls).map_err(failed)?;
    client
        .batch_execute(&format!("LISTEN {REVOCATIONS}"))
        .map_err(failed)?;
    Ok(client)
}
