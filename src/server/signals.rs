//! The server's life as a process: serve until SIGINT or SIGTERM, drain, then shut down
//! gracefully; SIGHUP loads the token service's key set again.

use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use super::{start, RunningServer, ServerConfig, ServerError};

/// Runs the server until SIGINT or SIGTERM, then shuts it down gracefully. SIGHUP loads the
/// token service's key set again.
pub fn run(config: &ServerConfig) -> Result<(), ServerError> {
    // The process's whole allowance of open files, as Go's runtime takes it: the soft limit
    // (1,024 on Debian) is below what the HTTP ports' connection cap and the gRPC port hold.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        log::warn!("cannot raise the limit on open files: {error}");
    }
    // Installed before the server starts, so a signal sent as soon as it answers is not lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(ServerError::Signals)?;
    let signals_handle = signals.handle();
    let (signal_tx, signal_rx) = mpsc::channel();
    thread::spawn(move || {
        for signal in signals.forever() {
            if signal_tx.send(signal).is_err() {
                break;
            }
        }
    });
    let server = start(config)?;
    let first = loop {
        match signal_rx.recv() {
            Ok(SIGHUP) => server.reload_keys(),
            Ok(signal) => break signal_name(signal),
            Err(_) => break "a signal",
        }
    };
    server.begin_drain();
    if !config.drain_delay.is_zero() {
        drain(&server, config, first, &signal_rx);
    }
    log::info!("{first} received; finishing calls in flight and shutting down");
    let clean = server.shutdown(config.shutdown_grace);
    signals_handle.close();
    if clean {
        log::info!("shut down");
    } else {
        log::warn!("shut down after cancelling calls that outlived the grace period");
    }
    Ok(())
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Keeps serving, NOT_SERVING, for the drain delay; a second SIGINT or SIGTERM cuts it short.
fn drain(
    server: &RunningServer,
    config: &ServerConfig,
    first: &str,
    signals: &mpsc::Receiver<i32>,
) {
    log::info!(
        "{first} received; reporting NOT_SERVING for {:?} before closing the listener",
        config.drain_delay
    );
    let until = Instant::now() + config.drain_delay;
    while let Ok(signal) = signals.recv_timeout(until.saturating_duration_since(Instant::now())) {
        if signal == SIGHUP {
            server.reload_keys();
            continue;
        }
        log::info!(
            "{} received; cutting the drain delay short",
            signal_name(signal)
        );
        break;
    }
}
