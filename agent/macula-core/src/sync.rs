//! One way to take a `std::sync` lock in every crate: a poisoned lock is recovered, never a
//! second panic.
//!
//! A lock is poisoned when a thread panicked while holding it. That panic is already reported
//! where it happened (a worker's last error, the log); what the lock guards stays as the
//! panicking holder left it, and every other user — another worker, a D-Bus call — carries on
//! with it instead of panicking in turn and taking down subsystems that had nothing to do with
//! the bug. Every `Mutex` and `RwLock` of the workspace is taken through [`Locked`]; a test in
//! `macula-core` (`tests/one_lock_policy.rs`) checks that no source file takes one otherwise.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Taking a lock, recovering it when poisoned.
pub trait Locked {
    type Guard<'a>
    where
        Self: 'a;
    /// The lock's guard (`Mutex::lock`, `RwLock::write`).
    fn locked(&self) -> Self::Guard<'_>;
}

impl<T: ?Sized> Locked for Mutex<T> {
    type Guard<'a>
        = MutexGuard<'a, T>
    where
        T: 'a;
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: ?Sized> Locked for RwLock<T> {
    type Guard<'a>
        = RwLockWriteGuard<'a, T>
    where
        T: 'a;
    fn locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Shared access to an `RwLock`, recovering it when poisoned.
pub trait ReadLocked<T: ?Sized> {
    /// The lock's shared guard (`RwLock::read`).
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
}

impl<T: ?Sized> ReadLocked<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_is_recovered_with_its_data() {
        let m = Arc::new(Mutex::new(1));
        let rw = Arc::new(RwLock::new(1));
        let (m2, rw2) = (m.clone(), rw.clone());
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            let _w = rw2.write().unwrap();
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && rw.is_poisoned());
        *m.locked() += 1;
        assert_eq!(*m.locked(), 2);
        *rw.locked() += 1;
        assert_eq!(*rw.read_locked(), 2);
    }
}
