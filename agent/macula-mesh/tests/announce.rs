//! `announce::CapacityAnnouncer`: when a storage capacity is worth a metadata rumor.

use std::time::{Duration, Instant};

use macula_mesh::announce::{ANNOUNCE_INTERVAL, Announce, CapacityAnnouncer};
use macula_mesh::membership::Capacity;

const GIB: u64 = 1 << 30;

fn cap(free: u64) -> Capacity {
    Capacity {
        storage_total: GIB,
        storage_free: free,
    }
}

#[test]
fn capacity_is_announced_when_it_moved_enough_and_not_too_often() {
    let shard = 256 << 10;
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut a = CapacityAnnouncer::new(cap(GIB));
    // Less than a shard (and 1 % of 1 GiB is more): not worth a rumor.
    assert_eq!(a.offer(cap(GIB - 1000), shard, t0), Announce::Nothing);
    // A shard's worth: announced at once (nothing announced yet).
    assert_eq!(
        a.offer(cap(GIB - shard), shard, t0),
        Announce::Now(cap(GIB - shard))
    );
    // The next change within the interval waits for its end; later ones only update it.
    assert_eq!(
        a.offer(cap(GIB - 2 * shard), shard, at(1)),
        Announce::Later(ANNOUNCE_INTERVAL - Duration::from_secs(1))
    );
    assert_eq!(
        a.offer(cap(GIB - 3 * shard), shard, at(2)),
        Announce::Nothing
    );
    assert_eq!(a.due(at(5)), Some(cap(GIB - 3 * shard)));
    assert_eq!(a.due(at(5)), None);
    // Held, then back near the announced value: the timer finds nothing to send.
    assert!(matches!(
        a.offer(cap(GIB - 5 * shard), shard, at(6)),
        Announce::Later(_)
    ));
    assert_eq!(
        a.offer(cap(GIB - 3 * shard), shard, at(7)),
        Announce::Nothing
    );
    assert_eq!(a.due(at(10)), None);
    // A quota change always counts; after the interval it goes out at once.
    let bigger = Capacity {
        storage_total: 2 * GIB,
        storage_free: GIB,
    };
    assert_eq!(a.offer(bigger, shard, at(11)), Announce::Now(bigger));
    // With huge shards, 1 % of the quota is the step.
    let mut a = CapacityAnnouncer::new(cap(GIB));
    assert_eq!(
        a.offer(cap(GIB - GIB / 200), 64 * GIB, t0),
        Announce::Nothing
    );
    assert_eq!(
        a.offer(cap(GIB - GIB / 100), 64 * GIB, t0),
        Announce::Now(cap(GIB - GIB / 100))
    );
    // No storage: a zero capacity never changes, never announced.
    let mut a = CapacityAnnouncer::new(Capacity::default());
    assert_eq!(a.offer(Capacity::default(), 0, t0), Announce::Nothing);
}

#[test]
fn the_start_value_is_what_is_announced_first() {
    let t0 = Instant::now();
    let mut a = CapacityAnnouncer::new(cap(GIB));
    assert_eq!(a.announced(), cap(GIB));
    // Held changes are taken into the start value when the mesh starts late.
    a.offer(cap(GIB - GIB / 2), 1, t0);
    assert!(matches!(
        a.offer(cap(GIB - GIB / 4), 1, t0 + Duration::from_secs(1)),
        Announce::Later(_)
    ));
    assert_eq!(a.due(t0 + Duration::from_secs(2)), Some(cap(GIB - GIB / 4)));
    assert_eq!(a.announced(), cap(GIB - GIB / 4));
}
