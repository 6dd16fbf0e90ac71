//! The daemon's core: one engine on one worker thread, a bounded queue of inference requests,
//! and the per-client bookkeeping that guarantees every request exactly one answer.
//!
//! Semantics (the contract in docs/protocol.md):
//! - `Ping`, `Info` and `Cancel` are answered at once, by the thread that read them.
//! - `FillMask` and `Complete` are queued. A client has at most one of them pending: a newer one
//!   *supersedes* the older, which is answered `Error(Superseded)` at once (if it is already
//!   being computed, its result is dropped when it comes).
//! - `Cancel { target }` answers `target` with `Error(Cancelled)` if it is still pending, then
//!   answers the cancel itself with `Cancelled { found }`.
//! - The queue holds at most `capacity` requests (one per client at most); a request that finds
//!   it full is answered `Error(Busy)` at once.
//! - Replies to one client go out in the order they are decided.
//!
//! ```
//! use bertling_kiosk::engine::{Engine, Suggestions};
//! use bertling_kiosk::server::Daemon;
//! use bertling_protocol::{ErrorCode, Info, Request, Response, Suggestion};
//!
//! struct Echo;
//! impl Engine for Echo {
//!     fn info(&self) -> Info {
//!         Info { protocol: 1, model: "echo".try_into().unwrap(), max_text: 256, max_k: 16,
//!                fill_mask: true, complete: false }
//!     }
//!     fn fill_mask(&mut self, text: &str, _k: usize) -> Result<Suggestions, ErrorCode> {
//!         let mut out = Suggestions::new();
//!         out.push(Suggestion { word: bertling_kiosk::engine::word(text), probability: 1.0 }).unwrap();
//!         Ok(out)
//!     }
//! }
//!
//! let daemon = Daemon::start(Box::new(Echo), 8);
//! let (client, replies) = daemon.connect();
//! client.submit(1, Request::Ping);
//! client.submit(2, Request::FillMask { text: "hi [MASK]".try_into().unwrap(), k: 1 });
//! assert_eq!(replies.recv().unwrap(), (1, Response::Pong));
//! let (id, response) = replies.recv().unwrap();
//! assert_eq!(id, 2);
//! assert!(matches!(response, Response::Suggestions(list) if list[0].word == "hi [MASK]"));
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bertling_protocol::{ErrorCode, Info, Request, Response, Text, MAX_K};

use crate::engine::Engine;

/// Default queue capacity.
pub const DEFAULT_CAPACITY: usize = 16;

/// One reply: the request id and the response.
pub type Reply = (u32, Response);

type ClientId = u64;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    FillMask,
    Complete,
}

struct Job {
    client: ClientId,
    id: u32,
    kind: Kind,
    text: Text,
    k: usize,
}

struct Running {
    client: ClientId,
    id: u32,
    /// Already answered (superseded, cancelled, client gone): drop the result.
    answered: bool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    running: Option<Running>,
    clients: HashMap<ClientId, Sender<Reply>>,
    next_client: ClientId,
    shutting_down: bool,
    stats: Stats,
}

/// Counters, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Requests answered with suggestions.
    pub answered: u64,
    /// Requests superseded by a newer one.
    pub superseded: u64,
    /// Requests cancelled.
    pub cancelled: u64,
    /// Requests refused because the queue was full.
    pub busy: u64,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    info: Info,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn send(state: &State, client: ClientId, reply: Reply) {
    if let Some(sender) = state.clients.get(&client) {
        // A closed channel means the client is going away; nothing to deliver to.
        let _ = sender.send(reply);
    }
}

/// The running daemon core. Dropping it answers everything still queued with
/// `Error(ShuttingDown)` and stops the worker.
pub struct Daemon {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Daemon {
    /// Starts the worker thread around `engine`, with a queue of `capacity` (at least 1).
    pub fn start(engine: Box<dyn Engine>, capacity: usize) -> Daemon {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            info: engine.info(),
            capacity: capacity.max(1),
        });
        let worker_shared = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("bertling-worker".into())
            .spawn(move || work(&worker_shared, engine))
            .expect("spawning the worker thread");
        Daemon {
            shared,
            worker: Some(worker),
        }
    }

    /// What the engine serves.
    pub fn info(&self) -> &Info {
        &self.shared.info
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats
    }

    /// A new client and the channel its replies arrive on.
    pub fn connect(&self) -> (Client, Receiver<Reply>) {
        let (sender, receiver) = channel();
        let mut state = self.shared.lock();
        let id = state.next_client;
        state.next_client += 1;
        state.clients.insert(id, sender);
        drop(state);
        (
            Client {
                shared: Arc::clone(&self.shared),
                id,
            },
            receiver,
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.shutting_down = true;
        while let Some(job) = state.queue.pop_front() {
            send(
                &state,
                job.client,
                (job.id, Response::Error(ErrorCode::ShuttingDown)),
            );
        }
        drop(state);
        self.shared.work.notify_all();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn work(shared: &Shared, mut engine: Box<dyn Engine>) {
    loop {
        let mut state = shared.lock();
        let job = loop {
            if state.shutting_down {
                return;
            }
            if let Some(job) = state.queue.pop_front() {
                break job;
            }
            state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
        };
        state.running = Some(Running {
            client: job.client,
            id: job.id,
            answered: false,
        });
        drop(state);
        let result = match job.kind {
            Kind::FillMask => engine.fill_mask(&job.text, job.k),
            Kind::Complete => engine.complete(&job.text, job.k),
        };
        let mut state = shared.lock();
        let running = state.running.take();
        if running.is_some_and(|r| !r.answered) {
            let response = match result {
                Ok(list) => {
                    state.stats.answered += 1;
                    Response::Suggestions(list)
                }
                Err(code) => Response::Error(code),
            };
            send(&state, job.client, (job.id, response));
        }
    }
}

/// One client (a serial port, a socket connection, the terminal): submits requests; its replies
/// arrive on the receiver [`Daemon::connect`] returned. Dropping it withdraws its pending
/// request without an answer (there is no one left to answer).
pub struct Client {
    shared: Arc<Shared>,
    id: ClientId,
}

impl Client {
    /// Handles one request; its answer (exactly one) goes to this client's reply channel.
    pub fn submit(&self, id: u32, request: Request) {
        let mut state = self.shared.lock();
        match request {
            Request::Ping => send(&state, self.id, (id, Response::Pong)),
            Request::Info => send(
                &state,
                self.id,
                (id, Response::Info(self.shared.info.clone())),
            ),
            Request::FillMask { text, k } => self.enqueue(&mut state, id, Kind::FillMask, text, k),
            Request::Complete { text, k } => self.enqueue(&mut state, id, Kind::Complete, text, k),
            Request::Cancel { target } => {
                let found =
                    self.withdraw(&mut state, |job_id| job_id == target, ErrorCode::Cancelled);
                if found {
                    state.stats.cancelled += 1;
                }
                send(&state, self.id, (id, Response::Cancelled { found }));
            }
        }
    }

    /// Answers `id` with `code` (for frames that decoded to an id but not to a request).
    pub fn reject(&self, id: u32, code: ErrorCode) {
        let state = self.shared.lock();
        send(&state, self.id, (id, Response::Error(code)));
    }

    fn enqueue(&self, state: &mut State, id: u32, kind: Kind, text: Text, k: u8) {
        let k = usize::from(k);
        if k == 0 || k > MAX_K {
            send(state, self.id, (id, Response::Error(ErrorCode::BadK)));
            return;
        }
        if state.shutting_down {
            send(
                state,
                self.id,
                (id, Response::Error(ErrorCode::ShuttingDown)),
            );
            return;
        }
        if self.withdraw(state, |_| true, ErrorCode::Superseded) {
            state.stats.superseded += 1;
        }
        if state.queue.len() >= self.shared.capacity {
            state.stats.busy += 1;
            send(state, self.id, (id, Response::Error(ErrorCode::Busy)));
            return;
        }
        state.queue.push_back(Job {
            client: self.id,
            id,
            kind,
            text,
            k,
        });
        self.shared.work.notify_one();
    }

    /// Answers this client's pending request (queued, or running and not yet answered) with
    /// `code` if `which` accepts its id; returns whether there was one.
    fn withdraw(&self, state: &mut State, which: impl Fn(u32) -> bool, code: ErrorCode) -> bool {
        if let Some(at) = state
            .queue
            .iter()
            .position(|job| job.client == self.id && which(job.id))
        {
            if let Some(job) = state.queue.remove(at) {
                send(state, self.id, (job.id, Response::Error(code)));
                return true;
            }
        }
        let client = self.id;
        let mut answered = None;
        if let Some(running) = state.running.as_mut() {
            if running.client == client && !running.answered && which(running.id) {
                running.answered = true;
                answered = Some(running.id);
            }
        }
        if let Some(id) = answered {
            send(state, client, (id, Response::Error(code)));
            return true;
        }
        false
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let client = self.id;
        state.queue.retain(|job| job.client != client);
        if let Some(running) = state.running.as_mut() {
            if running.client == client {
                running.answered = true;
            }
        }
        state.clients.remove(&client);
    }
}
