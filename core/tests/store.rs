//! The state file: atomic saves, refusals of damaged files, the lock.

mod worlds;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use env_qemu_core::op::{LinkChange, Op};
use env_qemu_core::state::{JournalEntry, State};
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

fn entry(step: usize) -> JournalEntry {
    JournalEntry {
        command: "start".into(),
        round: 1,
        step,
        of: 3,
        op: Op::LinkSet {
            name: n("eth0"),
            change: LinkChange::Up,
        },
    }
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn journal_entries_append_beside_the_state_and_load_merges_them() {
    let dir = temp_dir("journal");
    let store = FileStore::new(dir.join("state.json"));
    store.save(&state()).unwrap();
    store.append(&entry(1)).unwrap();
    store.append(&entry(2)).unwrap();
    assert_eq!(names(&dir), vec!["state.json", "state.json.journal"]);
    let loaded = store.load().unwrap().unwrap();
    assert_eq!(loaded.journal, vec![entry(1), entry(2)]);
    // The state file itself was written once: appends do not rewrite it.
    let on_disk: State =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    assert!(on_disk.journal.is_empty());
    // A save keeps the caller's journal and drops the appended entries.
    let mut next = loaded;
    next.journal.clear();
    store.save(&next).unwrap();
    assert_eq!(names(&dir), vec!["state.json"]);
    assert!(store.load().unwrap().unwrap().journal.is_empty());
    // Loading then saving unchanged keeps an interrupted command's journal.
    store.append(&entry(1)).unwrap();
    let interrupted = store.load().unwrap().unwrap();
    store.save(&interrupted).unwrap();
    assert_eq!(store.load().unwrap().unwrap().journal, vec![entry(1)]);
    // Clearing the journal keeps the saved state as it is.
    store.save(&next).unwrap();
    store.append(&entry(1)).unwrap();
    store.clear_journal().unwrap();
    assert_eq!(names(&dir), vec!["state.json"]);
    assert_eq!(store.load().unwrap(), Some(next));
    // Remove takes the journal too.
    store.append(&entry(2)).unwrap();
    store.remove().unwrap();
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    assert!(store.load().unwrap().is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_torn_last_journal_line_is_ignored() {
    let dir = temp_dir("torn");
    let store = FileStore::new(dir.join("state.json"));
    store.save(&state()).unwrap();
    store.append(&entry(1)).unwrap();
    store.append(&entry(2)).unwrap();
    // A process killed inside the third write: half a line, no newline.
    let journal = store.journal_path();
    let line = serde_json::to_string(&entry(3)).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap();
    std::io::Write::write_all(&mut f, &line.as_bytes()[..line.len() / 2]).unwrap();
    drop(f);
    let loaded = store.load().unwrap().unwrap();
    assert_eq!(loaded.journal, vec![entry(1), entry(2)]);
    assert_eq!(loaded.phase, state().phase);
    // The next command's save starts a clean journal.
    store.save(&state()).unwrap();
    store.append(&entry(1)).unwrap();
    assert_eq!(store.load().unwrap().unwrap().journal, vec![entry(1)]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A state file written before routes had `pref`, `expires` and `metrics` still loads:
/// its routes get medium, never, none, which is what they had.
#[test]
fn a_state_file_from_before_route_attributes_loads() {
    let dir = temp_dir("old-routes");
    let path = dir.join("state.json");
    let mut json: serde_json::Value = serde_json::to_value(state()).unwrap();
    let routes = json["pre"]["net"]["routes"].as_array_mut().unwrap();
    assert!(!routes.is_empty());
    for r in routes {
        let r = r.as_object_mut().unwrap();
        for gone in ["pref", "expires", "metrics"] {
            assert!(r.remove(gone).is_some(), "{gone} is saved today");
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let store = FileStore::new(path);
    assert_eq!(store.load().unwrap(), Some(state()));
    std::fs::remove_dir_all(dir).unwrap();
}
