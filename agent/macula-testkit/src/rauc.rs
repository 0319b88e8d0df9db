//! A stand-in for RAUC's D-Bus service (`de.pengutronix.rauc.Installer` at `/`) on a private
//! bus of its own, which an agent reaches as its system bus (`DBUS_SYSTEM_BUS_ADDRESS`, see
//! [`FakeRauc::env`]): it reports a booted slot and a last error and marks the booted slot good.
//! It installs nothing (RAUC itself runs in the QEMU tests, `tests/qemu/`).

use std::collections::HashMap;

use crate::DbusDaemon;

struct Installer {
    booted: String,
    last_error: String,
}

#[zbus::interface(name = "de.pengutronix.rauc.Installer")]
impl Installer {
    fn install_bundle(
        &self,
        _source: &str,
        _args: HashMap<String, zbus::zvariant::OwnedValue>,
    ) -> zbus::fdo::Result<()> {
        Err(zbus::fdo::Error::NotSupported(
            "the test's RAUC installs nothing".into(),
        ))
    }

    fn mark(&self, _state: &str, _slot: &str) -> (String, String) {
        ("rootfs.0".into(), "marked slot rootfs.0 as good".into())
    }

    fn get_slot_status(&self) -> Vec<(String, HashMap<String, zbus::zvariant::OwnedValue>)> {
        ["A", "B"]
            .iter()
            .enumerate()
            .map(|(i, boot)| {
                let booted = *boot == self.booted;
                let fields = [
                    ("bootname", *boot),
                    ("state", if booted { "booted" } else { "inactive" }),
                    ("boot-status", "good"),
                ];
                let map = fields
                    .iter()
                    .map(|(k, v)| {
                        let v = zbus::zvariant::Value::from(*v)
                            .try_to_owned()
                            .expect("a string value");
                        (k.to_string(), v)
                    })
                    .collect();
                (format!("rootfs.{i}"), map)
            })
            .collect()
    }

    fn get_primary(&self) -> String {
        self.booted.clone()
    }

    #[zbus(property)]
    fn operation(&self) -> String {
        "idle".into()
    }

    #[zbus(property)]
    fn last_error(&self) -> String {
        self.last_error.clone()
    }

    #[zbus(property)]
    fn progress(&self) -> (i32, String, i32) {
        (0, String::new(), 0)
    }

    #[zbus(property)]
    fn compatible(&self) -> String {
        "macula-test".into()
    }

    #[zbus(property)]
    fn boot_slot(&self) -> String {
        self.booted.clone()
    }
}

/// What RAUC's own policy file allows: RAUC owns its name, and callers may call it.
const POLICY: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy context="default">
    <allow own="de.pengutronix.rauc"/>
    <allow send_destination="de.pengutronix.rauc"/>
  </policy>
</busconfig>
"#;

/// RAUC on a bus of its own, serving until dropped.
pub struct FakeRauc {
    bus: DbusDaemon,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeRauc {
    /// RAUC that booted slot `booted` (`A` or `B`) and whose last operation left `last_error`
    /// (`""`: succeeded).
    pub fn start(booted: &str, last_error: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let policy = dir.path().join("rauc.conf");
        std::fs::write(&policy, POLICY).expect("write the RAUC bus policy");
        let bus = DbusDaemon::start_with_policy(&policy);
        let address = bus.address().to_owned();
        let installer = Installer {
            booted: booted.into(),
            last_error: last_error.into(),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let conn = zbus::connection::Builder::address(address.as_str())
                    .expect("the bus address")
                    .name("de.pengutronix.rauc")
                    .expect("the RAUC name")
                    .serve_at("/", installer)
                    .expect("the installer object")
                    .build()
                    .await
                    .expect("RAUC on its bus");
                ready_tx.send(()).expect("the test waits");
                let _ = stopped.await;
                drop(conn);
            });
        });
        ready_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the fake RAUC came up");
        Self {
            bus,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The environment that makes an agent find this RAUC (its system bus).
    pub fn env(&self) -> (String, String) {
        (
            "DBUS_SYSTEM_BUS_ADDRESS".into(),
            self.bus.address().to_owned(),
        )
    }
}

impl Drop for FakeRauc {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
