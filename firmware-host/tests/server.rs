//! The daemon core's semantics, deterministically: an engine that blocks until the test lets it
//! go, so "the model is busy with request N" is a state the test controls, not a timing.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use bertling_kiosk::engine::{word, Engine, Suggestions};
use bertling_kiosk::server::{Daemon, Stats};
use bertling_protocol::{ErrorCode, Info, Request, Response, Suggestion};

/// Reports each text it starts on, then waits for a go before answering it.
struct Gated {
    started: Mutex<Sender<String>>,
    go: Mutex<Receiver<()>>,
}

impl Engine for Gated {
    fn info(&self) -> Info {
        Info {
            protocol: 1,
            model: "gated".try_into().unwrap(),
            max_text: 256,
            max_k: 16,
            fill_mask: true,
            complete: false,
        }
    }

    fn fill_mask(&mut self, text: &str, _k: usize) -> Result<Suggestions, ErrorCode> {
        let _ = self.started.lock().unwrap().send(text.to_string());
        let _ = self.go.lock().unwrap().recv();
        let mut out = Suggestions::new();
        let _ = out.push(Suggestion {
            word: word(text),
            probability: 1.0,
        });
        Ok(out)
    }
}

fn gated(capacity: usize) -> (Daemon, Receiver<String>, Sender<()>) {
    let (started_tx, started) = channel();
    let (go, go_rx) = channel();
    let engine = Gated {
        started: Mutex::new(started_tx),
        go: Mutex::new(go_rx),
    };
    (Daemon::start(Box::new(engine), capacity), started, go)
}

fn fill(text: &str) -> Request {
    Request::FillMask {
        text: text.try_into().unwrap(),
        k: 1,
    }
}

fn words(text: &str) -> Response {
    let mut list = heapless::Vec::new();
    list.push(Suggestion {
        word: word(text),
        probability: 1.0,
    })
    .unwrap();
    Response::Suggestions(list)
}

#[test]
fn a_newer_request_supersedes_the_queued_and_the_running_one() {
    let (daemon, started, go) = gated(4);
    let (client, replies) = daemon.connect();
    client.submit(1, fill("a"));
    assert_eq!(started.recv().unwrap(), "a"); // 1 is running
    client.submit(2, fill("b")); // supersedes the running 1 at once
    assert_eq!(
        replies.recv().unwrap(),
        (1, Response::Error(ErrorCode::Superseded))
    );
    client.submit(3, fill("c")); // supersedes the queued 2
    assert_eq!(
        replies.recv().unwrap(),
        (2, Response::Error(ErrorCode::Superseded))
    );
    go.send(()).unwrap(); // 1 finishes: its result is dropped
    assert_eq!(started.recv().unwrap(), "c"); // 2 never ran
    go.send(()).unwrap();
    assert_eq!(replies.recv().unwrap(), (3, words("c")));
    let stats = daemon.stats();
    assert_eq!(
        stats,
        Stats {
            answered: 1,
            superseded: 2,
            cancelled: 0,
            busy: 0
        }
    );
    assert!(replies.try_recv().is_err());
}

#[test]
fn ping_info_and_bad_k_supersede_nothing() {
    let (daemon, started, go) = gated(4);
    let (client, replies) = daemon.connect();
    client.submit(1, fill("a"));
    assert_eq!(started.recv().unwrap(), "a");
    client.submit(2, Request::Ping);
    client.submit(3, Request::Info);
    client.submit(
        4,
        Request::FillMask {
            text: "x".try_into().unwrap(),
            k: 17,
        },
    );
    assert_eq!(replies.recv().unwrap(), (2, Response::Pong));
    assert!(matches!(replies.recv().unwrap(), (3, Response::Info(i)) if i.model == "gated"));
    assert_eq!(
        replies.recv().unwrap(),
        (4, Response::Error(ErrorCode::BadK))
    );
    go.send(()).unwrap();
    assert_eq!(replies.recv().unwrap(), (1, words("a")));
}

#[test]
fn cancel_answers_the_target_then_itself() {
    let (daemon, started, go) = gated(4);
    let (client, replies) = daemon.connect();
    client.submit(1, fill("a"));
    assert_eq!(started.recv().unwrap(), "a");
    client.submit(2, Request::Cancel { target: 1 }); // running
    assert_eq!(
        replies.recv().unwrap(),
        (1, Response::Error(ErrorCode::Cancelled))
    );
    assert_eq!(
        replies.recv().unwrap(),
        (2, Response::Cancelled { found: true })
    );
    client.submit(3, Request::Cancel { target: 1 }); // already answered
    assert_eq!(
        replies.recv().unwrap(),
        (3, Response::Cancelled { found: false })
    );
    client.submit(4, fill("b")); // queued behind the still-running 1
    client.submit(5, Request::Cancel { target: 4 });
    assert_eq!(
        replies.recv().unwrap(),
        (4, Response::Error(ErrorCode::Cancelled))
    );
    assert_eq!(
        replies.recv().unwrap(),
        (5, Response::Cancelled { found: true })
    );
    go.send(()).unwrap(); // 1's result is dropped
    client.submit(6, fill("c"));
    assert_eq!(started.recv().unwrap(), "c");
    go.send(()).unwrap();
    assert_eq!(replies.recv().unwrap(), (6, words("c")));
    assert_eq!(daemon.stats().cancelled, 2);
}

#[test]
fn clients_do_not_supersede_or_cancel_each_other() {
    let (daemon, started, go) = gated(4);
    let (a, a_replies) = daemon.connect();
    let (b, b_replies) = daemon.connect();
    a.submit(1, fill("a"));
    assert_eq!(started.recv().unwrap(), "a");
    b.submit(1, fill("b")); // same id, other client
    b.submit(2, Request::Cancel { target: 1 }); // cancels b's 1, not a's
    assert_eq!(
        b_replies.recv().unwrap(),
        (1, Response::Error(ErrorCode::Cancelled))
    );
    assert_eq!(
        b_replies.recv().unwrap(),
        (2, Response::Cancelled { found: true })
    );
    go.send(()).unwrap();
    assert_eq!(a_replies.recv().unwrap(), (1, words("a")));
}

#[test]
fn a_full_queue_answers_busy_and_shutdown_answers_the_rest() {
    let (daemon, started, go) = gated(2);
    let clients: Vec<_> = (0..4).map(|_| daemon.connect()).collect();
    clients[0].0.submit(1, fill("running"));
    assert_eq!(started.recv().unwrap(), "running");
    clients[1].0.submit(1, fill("q1"));
    clients[2].0.submit(1, fill("q2"));
    clients[3].0.submit(1, fill("q3")); // queue (2) is full
    assert_eq!(
        clients[3].1.recv().unwrap(),
        (1, Response::Error(ErrorCode::Busy))
    );
    // The same client's newer request replaces its own queued one, so it is never busy.
    clients[2].0.submit(2, fill("q2b"));
    assert_eq!(
        clients[2].1.recv().unwrap(),
        (1, Response::Error(ErrorCode::Superseded))
    );
    assert_eq!(daemon.stats().busy, 1);
    // Let the running one finish on a separate thread while the daemon shuts down.
    go.send(()).unwrap();
    assert_eq!(clients[0].1.recv().unwrap(), (1, words("running")));
    drop(go); // the engine now answers at once
    drop(daemon);
    // Everything queued got exactly one answer: computed or ShuttingDown.
    for (client, replies) in &clients[1..3] {
        let _ = client;
        let (_, response) = replies.recv().unwrap();
        assert!(
            matches!(
                response,
                Response::Suggestions(_) | Response::Error(ErrorCode::ShuttingDown)
            ),
            "{response:?}"
        );
        assert!(replies.try_recv().is_err());
    }
}

#[test]
fn a_client_that_goes_away_is_not_answered_and_does_not_block_others() {
    let (daemon, started, go) = gated(4);
    let (gone, gone_replies) = daemon.connect();
    gone.submit(1, fill("gone"));
    assert_eq!(started.recv().unwrap(), "gone");
    drop(gone);
    let (other, replies) = daemon.connect();
    other.submit(1, fill("other"));
    go.send(()).unwrap();
    assert_eq!(started.recv().unwrap(), "other");
    go.send(()).unwrap();
    assert_eq!(replies.recv().unwrap(), (1, words("other")));
    assert!(gone_replies.try_recv().is_err());
}
