//! The state file: atomic saves, refusals of damaged files, the lock.

mod worlds;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use env_qemu_core::state::State;
use env_qemu_core::store::{FileStore, StateStore, StoreError};
use worlds::*;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "env-qemu-store-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn state() -> State {
    State::new("net:[1]".into(), request("eth0"), rich())
}

#[test]
fn save_load_remove_round_trip() {
    let dir = temp_dir("rt");
    let store = FileStore::new(dir.join("state.json"));
    assert!(store.load().unwrap().is_none());
    store.save(&state()).unwrap();
    assert_eq!(store.load().unwrap(), Some(state()));
    // No temp file is left beside it.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    store.remove().unwrap();
    store.remove().unwrap();
    assert!(store.load().unwrap().is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn truncated_and_garbage_files_are_refused_with_the_path() {
    let dir = temp_dir("bad");
    let path = dir.join("state.json");
    let store = FileStore::new(&path);
    store.save(&state()).unwrap();
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() / 2]).unwrap();
    let e = store.load().unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");
    std::fs::write(&path, b"\x00\x01garbage").unwrap();
    assert!(matches!(
        store.load().unwrap_err(),
        StoreError::Corrupt { .. }
    ));
    // Valid JSON of the wrong shape is corrupt too, not a silent default.
    std::fs::write(&path, br#"{"version":1,"netns":"x"}"#).unwrap();
    assert!(matches!(
        store.load().unwrap_err(),
        StoreError::Corrupt { .. }
    ));
    std::fs::write(&path, br#"{"version":99}"#).unwrap();
    assert!(matches!(
        store.load().unwrap_err(),
        StoreError::Version { found: 99, .. }
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_lock_serialises_read_modify_write() {
    let dir = temp_dir("lock");
    let store = Arc::new(FileStore::new(dir.join("state.json")));
    store.save(&state()).unwrap();
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let _guard = store.lock().unwrap();
                let mut s = store.load().unwrap().unwrap();
                // Widen the race window: without the lock, updates would be lost.
                std::thread::sleep(Duration::from_millis(5));
                s.taps.push(env_qemu_core::plan::TapRecord {
                    name: n(&format!("tap{i}")),
                    mtu: 1500,
                    up: false,
                });
                store.save(&s).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(store.load().unwrap().unwrap().taps.len(), threads);
    std::fs::remove_dir_all(dir).unwrap();
}
