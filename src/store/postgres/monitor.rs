//! Whether the database answers: a probe every second (at once when a call has failed, every
//! 250 ms while it does not answer), and the store's availability set from what it finds.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use postgres::{Client, Config, NoTls};

use super::reason;
use crate::availability::Availability;

/// How often the monitor asks a database that answers, and one that does not.
pub(super) const PROBE_UP: Duration = Duration::from_secs(1);
const PROBE_DOWN: Duration = Duration::from_millis(250);

/// Asks the database whether it answers, every [`PROBE_UP`], at once when poked, and every
/// [`PROBE_DOWN`] while it does not. Ends when the store and its writer are gone.
pub(super) fn start_monitor(
    config: Config,
    database: String,
    availability: Availability,
    pokes: mpsc::Receiver<()>,
) {
    let mut client: Option<Client> = None;
    let mut probe = move || -> Result<(), String> {
        if client.as_ref().is_none_or(Client::is_closed) {
            client = Some(config.connect(NoTls).map_err(|e| reason(&e))?);
        }
        let answered = client
            .as_mut()
            .expect("connected above")
            .simple_query("SELECT 1")
            .map(drop)
            .map_err(|e| reason(&e));
        if answered.is_err() {
            client = None;
        }
        answered
    };
    thread::Builder::new()
        .name("store-monitor".to_owned())
        .spawn(move || loop {
            let wait = if availability.is_up() {
                PROBE_UP
            } else {
                PROBE_DOWN
            };
            if let Err(mpsc::RecvTimeoutError::Disconnected) = pokes.recv_timeout(wait) {
                return;
            }
            // Many failed calls poke at once; one probe answers them all.
            pokes.try_iter().for_each(drop);
            match probe() {
                Ok(()) if !availability.is_up() => {
                    log::info!("{database} answers again");
                    availability.set(true);
                }
                Err(why) if availability.is_up() => {
                    log::warn!(
                        "{database} does not answer ({why}); calls that need it fail until it does"
                    );
                    availability.set(false);
                }
                _ => {}
            }
        })
        .expect("the OS starts a thread");
}
