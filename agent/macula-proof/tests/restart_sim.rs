//! Deterministic simulation of a node restarting with a ledger copy shorter than its own chain
//! (its saved copy refused, or records written after the last save), while one member missed
//! the tail of that chain. The restarted node runs what `maculad` runs: `next_pulls` each round,
//! a pull per member (replies of `missing_for`, asked again while `pull_again`), `pulled` when a
//! pull came back complete, and it records as soon as `may_record` says yes — checked after every
//! single pull, the most eager a shell can be. Seeded RNG: realm size, who is behind, how long
//! the lost tail is, the order of the members, whether a saved copy survived, whether one
//! member is not in the membership yet when the node comes back, and whether one never answers.
//!
//! Promised: the restarted node never forks its own chain — every copy ends with the same head,
//! no record is refused anywhere, nobody is taken for an equivocator. The same run with a shell
//! that records after its first complete pull (what `maculad` did before) forks in some seeds,
//! which shows the simulation can fail.

use std::time::Duration;

use macula_core::{NodeId, NodeKey};
use macula_proof::ProofKind;
use macula_proof::book::{PULL_ROUNDS, ProofBook, Seen};
use macula_proof::config::ProofsConfig;
use macula_proof::ledger::{Failure, Outcome, ProofResult};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

fn result(prover: NodeId, epoch: u64, challenge: [u8; 32]) -> ProofResult {
    ProofResult {
        prover,
        kind: ProofKind::Storage,
        epoch,
        challenge,
        outcome: Outcome::Failed(Failure::NoAnswer),
        answer: None,
        reward_micro: 0,
    }
}

struct Realm {
    keys: Vec<NodeKey>,
    books: Vec<ProofBook>,
    rng: StdRng,
    epoch: u64,
}

impl Realm {
    fn new(seed: u64, n: usize) -> Self {
        let keys: Vec<NodeKey> = (0..n)
            .map(|i| NodeKey::from_seed([i as u8 + 1; 32]))
            .collect();
        let books = (0..n).map(|_| ProofBook::new(&cfg())).collect();
        Self {
            keys,
            books,
            rng: StdRng::seed_from_u64(seed),
            epoch: 1,
        }
    }

    fn id(&self, i: usize) -> NodeId {
        self.keys[i].node_id()
    }

    /// `author` records a result about its neighbour and delivers it to everyone but `skip`.
    fn record(&mut self, author: usize, skip: &[usize]) {
        let n = self.keys.len();
        let mut challenge = [0u8; 32];
        self.rng.fill(&mut challenge);
        let prover = self.id((author + 1) % n);
        let rec = self.books[author]
            .record(&self.keys[author], result(prover, self.epoch, challenge))
            .expect("append");
        self.epoch += 1;
        for (i, b) in self.books.iter_mut().enumerate() {
            if i != author && !skip.contains(&i) {
                let got = b.insert(&[rec.encode()]);
                assert!(got.refused.is_empty(), "{:?}", got.refused);
            }
        }
    }

    /// A pull of `from`'s records by `to`, asked again while replies come full: whether it came
    /// back complete, and the records each side refused.
    fn pull(&mut self, to: usize, from: usize) -> bool {
        for _ in 0..PULL_ROUNDS {
            let reply = self.books[from].missing_for(&self.books[to].summary());
            let got = self.books[to].insert(&reply);
            assert!(
                got.refused.is_empty(),
                "node {to} refused records pulled from {from}: {:?}",
                got.refused
            );
            if !ProofBook::pull_again(reply.len(), got.new) {
                return true;
            }
        }
        false
    }
}

fn cfg() -> ProofsConfig {
    ProofsConfig::default()
}

/// How one seed went.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// Every copy has the same head; nothing refused.
    Agreed,
    /// A copy refused a record of the restarted node: it forked its chain.
    Forked(String),
}

/// Runs one seed. `eager`: the shell records after its first complete pull (the old rule).
fn run(seed: u64, eager: bool) -> Ending {
    let mut pick = StdRng::seed_from_u64(seed);
    let n = pick.random_range(3..=6);
    let mut realm = Realm::new(seed, n);
    let restarter = pick.random_range(0..n);
    let behind = (restarter + pick.random_range(1..n)) % n;
    // Some history everyone has: an epoch in which every member verified someone (as in a realm
    // running proofs), then more records.
    for a in 0..n {
        realm.record(a, &[]);
    }
    for _ in 0..pick.random_range(0..20) {
        let a = pick.random_range(0..n);
        realm.record(a, &[]);
    }
    let saved = pick
        .random_bool(0.5)
        .then(|| realm.books[restarter].unsaved().expect("a ledger").bytes);
    // The tail of the restarter's chain `behind` never got (it was away, or its copy was cut).
    for _ in 0..pick.random_range(1..6) {
        realm.record(restarter, &[behind]);
    }
    // The restart: the saved copy (older than the chain) or nothing.
    let mut book = ProofBook::new(&cfg());
    if let Some(bytes) = &saved {
        book.restore(bytes).expect("restore");
    }
    realm.books[restarter] = book;

    let me = realm.id(restarter);
    let mut order: Vec<usize> = (0..n).filter(|i| *i != restarter).collect();
    order.shuffle(&mut pick);
    // The worst case for the old rule: the member that is behind answers first.
    if pick.random_bool(0.5) {
        order.retain(|i| *i != behind);
        order.insert(0, behind);
    }
    // One member (not the one behind) is not in the membership yet for the first rounds.
    let late = pick.random_bool(0.3).then(|| order[order.len() - 1]);
    let late = late.filter(|l| *l != behind);
    // In realms of 4 or more, one member that holds the tail may never answer a pull (a rogue,
    // or overloaded); another member still holds the tail.
    let silent = (n >= 4 && pick.random_bool(0.3))
        .then(|| {
            order
                .iter()
                .copied()
                .find(|i| *i != behind && Some(*i) != late)
        })
        .flatten();
    let case = format!(
        "{n} nodes, node {restarter} restarted with {} copy, node {behind} behind, replies in \
         order {order:?}, not in the membership at first: {late:?}, \
         never answers: {silent:?}",
        if saved.is_some() { "an old" } else { "no" }
    );
    let mut t = Duration::ZERO;
    for round in 0..10 {
        let visible: Vec<usize> = order
            .iter()
            .copied()
            .filter(|i| Some(*i) != late || round >= 2)
            .collect();
        let mut members: Vec<NodeId> = visible.iter().map(|i| realm.id(*i)).collect();
        members.push(me);
        let peers: Vec<(NodeId, Seen)> = visible
            .iter()
            .map(|i| (realm.id(*i), Seen::Alive))
            .collect();
        // Pull in the order the replies come back (`order`), not `next_pulls`' own order.
        let due = realm.books[restarter].next_pulls(&me, &members);
        let mut due: Vec<usize> = visible
            .iter()
            .copied()
            .filter(|i| due.contains(&realm.id(*i)))
            .collect();
        due.sort_by_key(|i| order.iter().position(|o| o == i));
        for from in due {
            if Some(from) == silent {
                let from = realm.id(from);
                realm.books[restarter].pull_failed(from, true);
            } else if realm.pull(restarter, from) {
                let from = realm.id(from);
                realm.books[restarter].pulled(from);
            }
            let may = if eager {
                true
            } else {
                realm.books[restarter].may_record(&me, &peers, t)
            };
            if may {
                return match finish(realm, restarter) {
                    Ending::Forked(why) => Ending::Forked(format!("{case}: {why}")),
                    agreed => agreed,
                };
            }
        }
        t += Duration::from_secs(5);
    }
    panic!("seed {seed}: {case}: never caught up");
}

/// The restarted node records, everyone exchanges everything: did anyone refuse anything?
fn finish(mut realm: Realm, restarter: usize) -> Ending {
    let n = realm.keys.len();
    let mut challenge = [0u8; 32];
    realm.rng.fill(&mut challenge);
    let prover = realm.id((restarter + 1) % n);
    let epoch = realm.epoch;
    let rec = realm.books[restarter]
        .record(&realm.keys[restarter], result(prover, epoch, challenge))
        .expect("append");
    for i in 0..n {
        if i == restarter {
            continue;
        }
        let got = realm.books[i].insert(&[rec.encode()]);
        if !got.refused.is_empty() {
            return Ending::Forked(format!("node {i}: {:?}", got.refused));
        }
    }
    // Anti-entropy both ways until nothing moves.
    for _ in 0..3 {
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    let reply = realm.books[b].missing_for(&realm.books[a].summary());
                    let got = realm.books[a].insert(&reply);
                    if !got.refused.is_empty() {
                        return Ending::Forked(format!("node {a}: {:?}", got.refused));
                    }
                }
            }
        }
    }
    let head = realm.books[0].ledger().head();
    for (i, b) in realm.books.iter().enumerate() {
        assert_eq!(b.ledger().head(), head, "node {i}'s copy differs");
        assert_eq!(
            b.ledger().equivocators().count(),
            0,
            "node {i} saw equivocation"
        );
    }
    Ending::Agreed
}

#[test]
fn a_restarted_node_never_forks_its_chain_when_a_member_missed_its_tail() {
    for seed in 0..300 {
        assert_eq!(run(seed, false), Ending::Agreed, "seed {seed}");
    }
}

#[test]
fn recording_after_the_first_complete_pull_forks_in_some_seeds() {
    let forked = (0..300)
        .filter(|s| matches!(run(*s, true), Ending::Forked(_)))
        .count();
    assert!(
        forked > 0,
        "the old rule never forked: the simulation shows nothing"
    );
    eprintln!("the old rule forked in {forked} of 300 seeds");
}
