//! The fixed pool of worker threads, fed by a bounded crossbeam channel. A full channel is
//! reported back to the accept loop, which then answers `421 4.3.2` instead of queueing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use super::conn::Conn;

/// Worker threads and the queue in front of them.
pub struct Pool {
    tx: Option<Sender<Conn>>,
    done_rx: Receiver<()>,
    workers: Vec<JoinHandle<()>>,
    busy: Arc<AtomicUsize>,
    /// Sessions running plus waiting at which new connections are refused.
    limit: usize,
}

impl Pool {
    /// Starts `workers` threads that run `handler` for each connection; up to `queue`
    /// accepted connections may wait for a free worker. With `queue == 0` a connection is
    /// only accepted when a worker is free.
    pub fn start(
        workers: usize,
        queue: usize,
        handler: Arc<dyn Fn(Conn) + Send + Sync>,
    ) -> std::io::Result<Pool> {
        // The channel never fills by itself: admission is decided in `submit` from the
        // number of running plus waiting sessions, so a worker that is between two
        // sessions still counts as free.
        let limit = workers + queue;
        let (tx, rx) = bounded::<Conn>(limit);
        let (done_tx, done_rx) = bounded::<()>(workers);
        let busy = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let rx = rx.clone();
            let done_tx = done_tx.clone();
            let handler = Arc::clone(&handler);
            let busy = Arc::clone(&busy);
            let h = thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    for conn in rx.iter() {
                        busy.fetch_add(1, Ordering::SeqCst);
                        handler(conn);
                        busy.fetch_sub(1, Ordering::SeqCst);
                    }
                    let _ = done_tx.send(());
                })?;
            handles.push(h);
        }
        Ok(Pool {
            tx: Some(tx),
            done_rx,
            workers: handles,
            busy,
            limit,
        })
    }

    /// Hands a connection to a worker, or gives it back when every worker is busy and the
    /// queue is full.
    pub fn submit(&self, conn: Conn) -> Result<(), Conn> {
        let Some(tx) = &self.tx else { return Err(conn) };
        if self.busy() + tx.len() >= self.limit {
            return Err(conn);
        }
        match tx.try_send(conn) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(c)) | Err(TrySendError::Disconnected(c)) => Err(c),
        }
    }

    /// Number of workers running a session right now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// Stops taking connections and waits up to `deadline` for running sessions to end.
    /// Returns true when every worker finished in time.
    pub fn finish(mut self, deadline: Duration) -> bool {
        self.tx = None;
        let end = Instant::now() + deadline;
        let mut finished = 0;
        while finished < self.workers.len() {
            let left = end.saturating_duration_since(Instant::now());
            match self.done_rx.recv_timeout(left) {
                Ok(()) => finished += 1,
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if finished == self.workers.len() {
            for h in self.workers.drain(..) {
                let _ = h.join();
            }
            true
        } else {
            false
        }
    }
}
