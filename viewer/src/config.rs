//! What the viewer keeps between sessions: named stage positions and a few
//! preferences, as small text files in the user's configuration directory.
//!
//! The directory is `$FLAMINGO_VIEWER_CONFIG_DIR` if set (tests, portable
//! installs), else `%APPDATA%\flamingo-viewer` on Windows,
//! `~/Library/Application Support/flamingo-viewer` on macOS and
//! `$XDG_CONFIG_HOME/flamingo-viewer` (default `~/.config/flamingo-viewer`)
//! elsewhere. Files are read once at start and written on a thread of their
//! own (write to a temporary file, then rename), never on the UI thread.

use std::io;
use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender};
use flamingo_client::devices::StagePosition;

/// The environment variable that overrides the configuration directory.
pub const DIR_VAR: &str = "FLAMINGO_VIEWER_CONFIG_DIR";
/// Saved positions, one per line.
pub const POSITIONS_FILE: &str = "positions.tsv";
/// Preferences, `key = value` lines.
pub const PREFS_FILE: &str = "viewer.conf";

/// A named stage position.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedPosition {
    /// The name the user gave it (one line, no tabs).
    pub name: String,
    /// Where.
    pub position: StagePosition,
}

/// Preferences.
#[derive(Clone, Debug, PartialEq)]
pub struct Prefs {
    /// Moves of X, Y or Z further than this (mm) ask for a confirmation.
    pub confirm_mm: f64,
    /// Rotations further than this (degrees) ask for a confirmation.
    pub confirm_deg: f64,
    /// Where files were last opened or saved.
    pub last_dir: Option<PathBuf>,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            confirm_mm: 1.0,
            confirm_deg: 30.0,
            last_dir: None,
        }
    }
}

/// The configuration directory (see the module documentation), if one can
/// be named.
pub fn dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var(DIR_VAR) {
        return Some(d);
    }
    let base = if cfg!(windows) {
        var("APPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library").join("Application Support"))
    } else {
        var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config")))
    };
    base.map(|b| b.join("flamingo-viewer"))
}

/// A name as stored: one line, no tabs, trimmed.
pub fn clean_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The positions file's text.
pub fn format_positions(list: &[SavedPosition]) -> String {
    let mut s = String::from(
        "# flamingo-viewer saved positions: name, x mm, y mm, z mm, r degrees (tab-separated)\n",
    );
    for p in list {
        let q = p.position;
        s.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            clean_name(&p.name),
            q.x_mm,
            q.y_mm,
            q.z_mm,
            q.r_deg
        ));
    }
    s
}

/// Reads the positions file's text; lines that do not parse are reported.
pub fn parse_positions(text: &str) -> (Vec<SavedPosition>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let nums: Vec<f64> = f
            .iter()
            .skip(1)
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .collect();
        if f.len() != 5 || nums.len() != 4 || f[0].trim().is_empty() {
            bad.push(format!("line {}: {line:?}", n + 1));
            continue;
        }
        out.push(SavedPosition {
            name: f[0].trim().to_string(),
            position: StagePosition {
                x_mm: nums[0],
                y_mm: nums[1],
                z_mm: nums[2],
                r_deg: nums[3],
            },
        });
    }
    (out, bad)
}

/// The preferences file's text.
pub fn format_prefs(p: &Prefs) -> String {
    let mut s = format!(
        "# flamingo-viewer preferences\nconfirm_move_mm = {}\nconfirm_rotation_deg = {}\n",
        p.confirm_mm, p.confirm_deg
    );
    if let Some(d) = &p.last_dir {
        s.push_str(&format!("last_dir = {}\n", d.display()));
    }
    s
}

/// Reads the preferences file's text (unknown keys and bad values are
/// ignored: the defaults stay).
pub fn parse_prefs(text: &str) -> Prefs {
    let mut p = Prefs::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        let num = v.parse::<f64>().ok().filter(|x| x.is_finite() && *x > 0.0);
        match (k, num) {
            ("confirm_move_mm", Some(x)) => p.confirm_mm = x,
            ("confirm_rotation_deg", Some(x)) => p.confirm_deg = x,
            ("last_dir", _) if !v.is_empty() => p.last_dir = Some(PathBuf::from(v)),
            _ => {}
        }
    }
    p
}

/// What was read at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Saved positions.
    pub positions: Vec<SavedPosition>,
    /// Preferences.
    pub prefs: Prefs,
    /// Problems worth showing (unreadable lines, unreadable files).
    pub problems: Vec<String>,
    /// Where they were read from.
    pub dir: Option<PathBuf>,
}

/// Reads both files from `dir` (missing files are empty, not errors).
pub fn load(dir: Option<&Path>) -> Loaded {
    let mut l = Loaded {
        dir: dir.map(Path::to_path_buf),
        ..Loaded::default()
    };
    let Some(dir) = dir else {
        l.problems
            .push("no configuration directory (set FLAMINGO_VIEWER_CONFIG_DIR): saved positions are not kept".into());
        return l;
    };
    let read = |name: &str| match std::fs::read_to_string(dir.join(name)) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", dir.join(name).display())),
    };
    match read(POSITIONS_FILE) {
        Ok(Some(t)) => {
            let (p, bad) = parse_positions(&t);
            l.positions = p;
            for b in bad {
                l.problems.push(format!("{POSITIONS_FILE}: skipped {b}"));
            }
        }
        Ok(None) => {}
        Err(e) => l.problems.push(e),
    }
    match read(PREFS_FILE) {
        Ok(Some(t)) => l.prefs = parse_prefs(&t),
        Ok(None) => {}
        Err(e) => l.problems.push(e),
    }
    l
}

/// Writes `text` to `dir/name` through a temporary file and a rename, so a
/// crash never leaves half a file.
pub fn write_atomic(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(name))
}

/// A write for the store thread.
pub enum Write {
    /// Replace the positions file.
    Positions(Vec<SavedPosition>),
    /// Replace the preferences file.
    Prefs(Prefs),
}

/// The thread that writes the files; its outcomes (errors) come back on
/// `results`.
pub struct Store {
    tx: Option<Sender<Write>>,
    /// Error messages of failed writes; `Ok(file)` for each written file.
    pub results: Receiver<Result<&'static str, String>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Store {
    /// Starts the writer for `dir` (`None`: nothing is written, each write
    /// reports why).
    pub fn start(dir: Option<PathBuf>, wake: impl Fn() + Send + 'static) -> Store {
        let (tx, rx) = crossbeam_channel::unbounded::<Write>();
        let (rtx, results) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name("viewer-store".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Only the newest of each kind matters.
                    let mut positions = None;
                    let mut prefs = None;
                    for w in std::iter::once(first).chain(rx.try_iter()) {
                        match w {
                            Write::Positions(p) => positions = Some(p),
                            Write::Prefs(p) => prefs = Some(p),
                        }
                    }
                    let texts = [
                        positions.map(|p| (POSITIONS_FILE, format_positions(&p))),
                        prefs.map(|p| (PREFS_FILE, format_prefs(&p))),
                    ];
                    for (name, text) in texts.into_iter().flatten() {
                        let r = match &dir {
                            Some(d) => write_atomic(d, name, &text).map(|()| name).map_err(|e| {
                                format!("cannot save {}: {e}", d.join(name).display())
                            }),
                            None => Err(format!(
                                "{name} not saved: no configuration directory (set {DIR_VAR})"
                            )),
                        };
                        let _ = rtx.send(r);
                        wake();
                    }
                }
            })
            .ok();
        Store {
            tx: Some(tx),
            results,
            handle,
        }
    }

    /// Queues a write (never blocks).
    pub fn write(&self, w: Write) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(w);
        }
    }

    /// Ends the writer after its queued writes (at exit).
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(x: f64) -> StagePosition {
        StagePosition {
            x_mm: x,
            y_mm: 12.5,
            z_mm: 20.25,
            r_deg: -30.0,
        }
    }

    #[test]
    fn positions_round_trip_and_bad_lines_are_reported() {
        let list = vec![
            SavedPosition {
                name: "cell A".into(),
                position: pos(8.0),
            },
            SavedPosition {
                name: "tab\there".into(),
                position: pos(0.125),
            },
        ];
        let text = format_positions(&list);
        let (back, bad) = parse_positions(&text);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], list[0]);
        assert_eq!(back[1].name, "tab here");
        assert_eq!(back[1].position, pos(0.125));
        let (p, bad) = parse_positions("x\t1\t2\n\nok\t1\t2\t3\t4\nnan\tNaN\t1\t2\t3\n");
        assert_eq!(p.len(), 1);
        assert_eq!(bad.len(), 2);
    }

    #[test]
    fn prefs_round_trip_and_ignore_nonsense() {
        let p = Prefs {
            confirm_mm: 2.5,
            confirm_deg: 10.0,
            last_dir: Some(PathBuf::from("/data/today")),
        };
        assert_eq!(parse_prefs(&format_prefs(&p)), p);
        let q = parse_prefs("confirm_move_mm = -3\nconfirm_rotation_deg = x\nother = 1\n");
        assert_eq!(q, Prefs::default());
    }

    #[test]
    fn the_store_writes_files_that_load_back() {
        let dir =
            std::env::temp_dir().join(format!("flamingo-viewer-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::start(Some(dir.clone()), || {});
        let list = vec![SavedPosition {
            name: "origin".into(),
            position: pos(1.0),
        }];
        store.write(Write::Positions(list.clone()));
        store.write(Write::Prefs(Prefs {
            confirm_mm: 3.0,
            ..Prefs::default()
        }));
        store.finish();
        let l = load(Some(&dir));
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.positions, list);
        assert_eq!(l.prefs.confirm_mm, 3.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
