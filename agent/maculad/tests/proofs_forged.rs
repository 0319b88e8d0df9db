//! A forged and a replayed proof answer, on three real `maculad` (loopback, private buses, 2 s
//! epochs) and one misbehaving member built in this test from the libraries: an in-process mesh
//! node of the same realm that serves the proof procedure itself. It answers its first capacity
//! challenge honestly, its second with that answer's body altered after signing (forged), its
//! third with the bytes of its first answer (replayed), and honestly again after that. Every real
//! node's ledger records the first as a pass and the two others as `forged` failures, judged by
//! the verifier that sent each challenge, and every node quarantines it (`K = 2`).

use std::sync::{Arc, Mutex};

use macula_core::NodeKey;
use macula_mesh::membership::MembershipConfig;
use macula_mesh::node::Bootstrap;
use macula_mesh::rpc::{ErrorCode, RpcError};
use macula_proof::SignedAnswer;
use macula_proof::driver::Request;
use macula_testkit::check::{ok, wait_until, wait_until_ok};
use macula_testkit::realm::{AgentRealm, Realm, RealmNode as Node};

const PROOFS: &str = "[proofs]\nenabled = true\ncapacity_steps = 65536\ncapacity_segments = 16\n\
    capacity_deadline_ms = 5000\nstorage_deadline_ms = 5000\n\
    [proofs.rewards]\nepoch_s = 2\n\
    [proofs.quarantine]\nmax_failures = 2\nwindow_epochs = 10\nprobation_passes = 100\n";

/// The name the agents serve and call proof challenges under (`maculad/src/proofs.rs`).
const PROC_CHALLENGE: &str = "proofs.challenge";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Answered {
    Honest,
    Forged,
    Replayed,
}

/// One capacity challenge the rogue answered: its epoch, the verifier's node ID, how.
type Log = Arc<Mutex<Vec<(u64, String, Answered)>>>;

fn history(n: &Node, about: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&ok(&n
        .agent
        .ctl(&["proofs", "history", "--node", about, "--json"])))
    .unwrap();
    v.as_array().unwrap().clone()
}

fn quarantined(n: &Node) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&n.agent.ctl(&["proofs", "status", "--json"]))).unwrap();
    v["quarantined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q.as_str().unwrap().to_string())
        .collect()
}

/// Serves `proofs.challenge` on `node` as the rogue: honest, forged, replayed, then honest.
fn serve_rogue(node: &macula_mesh::node::MeshNode, key: Arc<NodeKey>, log: Log) {
    let first: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    node.serve(
        PROC_CHALLENGE,
        Arc::new(move |caller, body| {
            let (key, log, first) = (key.clone(), log.clone(), first.clone());
            Box::pin(async move {
                let bad = |e: String| RpcError::new(ErrorCode::BadRequest, e);
                let req = Request::decode(&body).map_err(|e| bad(e.to_string()))?;
                let Request::Capacity(ch) = &req else {
                    return Err(bad("the rogue holds no shards".into()));
                };
                let answer = macula_proof::capacity::prove(ch).map_err(|e| bad(e.to_string()))?;
                let honest =
                    SignedAnswer::sign(&key, req.kind(), macula_core::wire::encode(&answer));
                let mut log = log.lock().unwrap();
                let how = match log.len() {
                    1 => Answered::Forged,
                    2 => Answered::Replayed,
                    _ => Answered::Honest,
                };
                log.push((req.epoch(), caller.to_string(), how));
                let reply = match how {
                    Answered::Honest => honest.encode(),
                    Answered::Forged => {
                        let mut forged = honest;
                        forged.body[8] ^= 1;
                        forged.encode()
                    }
                    Answered::Replayed => first.lock().unwrap().clone().expect("a first answer"),
                };
                first.lock().unwrap().get_or_insert_with(|| reply.clone());
                Ok(reply)
            })
        }),
    );
}

#[test]
fn a_forged_and_a_replayed_answer_are_rejected_recorded_and_quarantine_the_prover() {
    // The same realm key twice: one for the agents' certificates, one for the rogue's.
    let realm = Realm::from_seed(0x52);
    let nodes = AgentRealm::new(3)
        .coded(2, 1)
        .realm(Realm::from_seed(0x52))
        .storage_extra(|_| PROOFS.to_string())
        .start();
    let ids: Vec<String> = nodes.iter().map(Node::node_id).collect();
    // Node 0's address, as node 1 knows it.
    let addr: std::net::SocketAddr = nodes[1]
        .peers()
        .iter()
        .find(|p| p["node_id"] == ids[0].as_str())
        .and_then(|p| p["addrs"][0].as_str().map(str::to_string))
        .expect("node 1 knows node 0's address")
        .parse()
        .expect("a socket address");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_rt = rt.enter();
    let key = NodeKey::from_seed([0x77; 32]);
    let rogue_id = key.node_id().to_string();
    let rogue = realm
        .member(0x77)
        .name("rogue")
        .membership(MembershipConfig::lan(4))
        .bootstrap(vec![Bootstrap {
            node: Some(ids[0].parse().unwrap()),
            addr,
        }])
        .start();
    let log: Log = Arc::default();
    serve_rogue(&rogue, Arc::new(key), log.clone());
    wait_until("every agent sees the rogue alive", 30, || {
        nodes.iter().all(|n| n.alive_peers() == 3)
    });

    let took = wait_until("the rogue answered three capacity challenges", 30, || {
        log.lock().unwrap().len() >= 3
    });
    let answered: Vec<(u64, String, Answered)> = log.lock().unwrap()[..3].to_vec();
    println!("answered {answered:?} ({took:?} after it joined)");
    for (epoch, verifier, _) in &answered {
        assert!(
            ids.contains(verifier),
            "epoch {epoch}: challenged by {verifier}, not an agent"
        );
    }

    // Every copy records each answer as judged by the verifier that asked for it.
    let took = wait_until_ok(
        "every ledger copy records the rogue's three answers",
        20,
        || {
            for n in &nodes {
                let h = history(n, &rogue_id);
                for (epoch, verifier, how) in &answered {
                    let rec = h
                        .iter()
                        .find(|e| e["epoch"] == *epoch && e["kind"] == "capacity")
                        .ok_or_else(|| format!("{} has no record of epoch {epoch}", n.name))?;
                    let want_pass = *how == Answered::Honest;
                    if rec["verifier"] != verifier.as_str()
                        || rec["passed"] != want_pass
                        || (!want_pass && rec["failure"] != "forged")
                    {
                        return Err(format!("{}: {how:?} answer recorded as {rec}", n.name));
                    }
                    if !want_pass && rec["reward_micro"] != 0 {
                        return Err(format!("{}: a reward for a {how:?} answer: {rec}", n.name));
                    }
                }
            }
            Ok(())
        },
    );
    println!("recorded on every node {took:?} after the third answer");

    wait_until("every node quarantines the rogue", 20, || {
        nodes.iter().all(|n| quarantined(n).contains(&rogue_id))
    });
    for n in &nodes {
        let balances: serde_json::Value = serde_json::from_str(&ok(&n
            .agent
            .ctl(&["ledger", "--node", &rogue_id, "--json"])))
        .unwrap();
        let b = &balances[0];
        assert!(
            b["failed"].as_u64().unwrap() >= 2 && b["passed"].as_u64().unwrap() >= 1,
            "{}: {b}",
            n.name
        );
        assert_ne!(b["standing"], "active", "{}: {b}", n.name);
        // The honest agents are not charged with anything.
        for id in &ids {
            assert!(
                history(n, id).iter().all(|e| e["passed"] == true),
                "{}: a failure recorded about honest {id}",
                n.name
            );
        }
    }
    drop(rogue);
}
