//! Material that is rebuilt when its files change (polled) or on SIGHUP.
//! New connections use the new material; existing ones keep theirs. A
//! broken new file keeps the old material and logs an error.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use tracing::{error, info};

type Stamp = Option<(i64, i64, u64, u64)>;

fn stamp(p: &PathBuf) -> Stamp {
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.mtime(), m.mtime_nsec(), m.len(), m.ino()))
}

type Builder<T> = Box<dyn Fn() -> Result<T, String> + Send + Sync>;

pub struct Reloadable<T> {
    name: String,
    files: Vec<PathBuf>,
    build: Builder<T>,
    current: RwLock<Arc<T>>,
    stamps: Mutex<Vec<Stamp>>,
}

/// Anything the reload loop can refresh.
pub trait Reload: Send + Sync {
    /// Rebuilds if a file changed (or always, with `force`).
    fn reload(&self, force: bool);
}

impl<T: Send + Sync> Reloadable<T> {
    /// Builds the first version; failing here is a start-up error.
    pub fn new(name: impl Into<String>, files: Vec<PathBuf>, build: Builder<T>) -> Result<Arc<Self>, String> {
        let name = name.into();
        let first = build().map_err(|e| format!("{name}: {e}"))?;
        let stamps = files.iter().map(stamp).collect();
        Ok(Arc::new(Reloadable {
            name,
            files,
            build,
            current: RwLock::new(Arc::new(first)),
            stamps: Mutex::new(stamps),
        }))
    }

    pub fn current(&self) -> Arc<T> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl<T: Send + Sync> Reload for Reloadable<T> {
    fn reload(&self, force: bool) {
        let now: Vec<Stamp> = self.files.iter().map(stamp).collect();
        {
            let mut s = match self.stamps.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if !force && *s == now {
                return;
            }
            *s = now;
        }
        match (self.build)() {
            Ok(v) => {
                match self.current.write() {
                    Ok(mut g) => *g = Arc::new(v),
                    Err(p) => *p.into_inner() = Arc::new(v),
                }
                info!(material = %self.name, "reloaded; new connections use it");
            }
            Err(e) => {
                error!(material = %self.name, error = %e, "reload failed; keeping the previous material")
            }
        }
    }
}
