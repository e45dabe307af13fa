//! The `flamingo` tool's settings outside the command line, so that a lab
//! PC needs no `--addr` on every command: the environment variable
//! `FLAMINGO_ADDR`, and a small config file of `key = value` lines (`addr`,
//! `timeout`) at a fixed place per operating system. The command line wins,
//! then `FLAMINGO_ADDR`, then the file, then the default.
//!
//! The file's place comes from environment variables only (no dependency):
//! `FLAMINGO_CONFIG` if set, else `%APPDATA%\flamingo\config.txt` on
//! Windows, `~/Library/Application Support/flamingo/config.txt` on macOS,
//! and `$XDG_CONFIG_HOME/flamingo/config.txt` (default `~/.config`)
//! elsewhere.
//!
//! Include it with `#[path = "support/cli_config.rs"] mod cli_config;`
//! (after `cli_args`).
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flamingo_client::Error;

use crate::cli_args::{parse_addr, parse_secs, Global, Source};

/// The variable that names the config file.
pub const CONFIG_ENV: &str = "FLAMINGO_CONFIG";
/// The variable that gives the microscope's address.
pub const ADDR_ENV: &str = "FLAMINGO_ADDR";

/// The config file's path, from the environment (`env` looks a variable
/// up); `None` if no variable says where the user's settings live.
pub fn config_path(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = set(CONFIG_ENV) {
        return Some(p);
    }
    let dir = if cfg!(windows) {
        set("APPDATA")?
    } else if cfg!(target_os = "macos") {
        set("HOME")?.join("Library").join("Application Support")
    } else {
        match set("XDG_CONFIG_HOME") {
            Some(d) => d,
            None => set("HOME")?.join(".config"),
        }
    };
    Some(dir.join("flamingo").join("config.txt"))
}

/// What a config file sets, with the line of each value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileSettings {
    /// `addr = HOST:PORT`.
    pub addr: Option<(String, usize)>,
    /// `timeout = SECS`.
    pub timeout: Option<(Duration, usize)>,
}

/// An invalid argument's words, without the "invalid argument: " prefix.
fn what(e: Error) -> String {
    match e {
        Error::InvalidArgument { what } => what,
        e => e.to_string(),
    }
}

/// Parses a config file's text; `path` names it in errors.
pub fn parse_file(text: &str, path: &Path) -> Result<FileSettings, Error> {
    let mut out = FileSettings::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad =
            |why: String| Error::invalid(format!("config file {} line {n}: {why}", path.display()));
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| bad(format!("{line:?} is not a `key = value` line")))?;
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "addr" => {
                let a = parse_addr(value).map_err(|e| bad(what(e)))?;
                out.addr = Some((a, n));
            }
            "timeout" => {
                let t = parse_secs("timeout", value, false).map_err(|e| bad(what(e)))?;
                out.timeout = Some((t, n));
            }
            other => {
                return Err(bad(format!(
                    "unknown setting {other:?}; the settings are addr and timeout"
                )))
            }
        }
    }
    Ok(out)
}

/// Reads the config file at `path`; `None` if there is none.
pub fn read_file(path: &Path) -> Result<Option<FileSettings>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => parse_file(&String::from_utf8_lossy(&bytes), path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::invalid(format!(
            "cannot read config file {}: {e}",
            path.display()
        ))),
    }
}

/// Fills in the address and timeout that the command line did not give:
/// `FLAMINGO_ADDR`, then the config file. Errors (`InvalidArgument`, exit
/// code 2) name the variable or the file and line.
pub fn apply(g: &mut Global, env: &dyn Fn(&str) -> Option<OsString>) -> Result<(), Error> {
    if g.addr_from == Source::Default {
        if let Some(v) = env(ADDR_ENV).filter(|v| !v.is_empty()) {
            let v = v.to_string_lossy();
            g.addr = parse_addr(v.trim()).map_err(|e| {
                Error::invalid(format!("the environment variable {ADDR_ENV}: {}", what(e)))
            })?;
            g.addr_from = Source::Env(ADDR_ENV);
        }
    }
    if g.addr_from != Source::Default && g.timeout_from != Source::Default {
        return Ok(());
    }
    let Some(path) = config_path(env) else {
        return Ok(());
    };
    let Some(file) = read_file(&path)? else {
        return Ok(());
    };
    if let (Source::Default, Some((addr, line))) = (&g.addr_from, file.addr) {
        g.addr = addr;
        g.addr_from = Source::File(path.clone(), line);
    }
    if let (Source::Default, Some((t, line))) = (&g.timeout_from, file.timeout) {
        g.timeout = t;
        g.timeout_from = Source::File(path, line);
    }
    Ok(())
}

/// Writes `addr` and `timeout` to the config file at `path` (creating its
/// folder), keeping its other lines and comments.
pub fn save(path: &Path, addr: &str, timeout: Duration) -> Result<(), Error> {
    let io = |e: std::io::Error| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("cannot write config file {}: {e}", path.display()),
        ))
    };
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let secs = format!("{}", timeout.as_secs_f64());
    let mut values = [("addr", addr.to_string(), false), ("timeout", secs, false)];
    let mut out = String::new();
    if old.trim().is_empty() {
        out.push_str(
            "# Settings of the flamingo command-line tool (see `flamingo config --help`).\n",
        );
    }
    for line in old.lines() {
        let key = line
            .split('#')
            .next()
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim().to_ascii_lowercase());
        match values
            .iter_mut()
            .find(|(k, _, _)| key.as_deref() == Some(*k))
        {
            Some((k, v, done)) => {
                out.push_str(&format!("{k} = {v}\n"));
                *done = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (k, v, done) in &values {
        if !done {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, out).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_config_file_lives_where_the_os_keeps_settings() {
        let p = config_path(&env(&[("FLAMINGO_CONFIG", "/tmp/x.txt"), ("HOME", "/h")]));
        assert_eq!(p, Some(PathBuf::from("/tmp/x.txt")));
        let p = config_path(&env(&[
            ("APPDATA", "C:\\Users\\me\\AppData\\Roaming"),
            ("HOME", "/h"),
            ("XDG_CONFIG_HOME", "/x"),
        ]))
        .unwrap();
        if cfg!(windows) {
            assert!(p.starts_with("C:\\Users\\me\\AppData\\Roaming"));
        } else if cfg!(target_os = "macos") {
            assert_eq!(
                p,
                Path::new("/h/Library/Application Support/flamingo/config.txt")
            );
        } else {
            assert_eq!(p, Path::new("/x/flamingo/config.txt"));
            let p = config_path(&env(&[("HOME", "/h")])).unwrap();
            assert_eq!(p, Path::new("/h/.config/flamingo/config.txt"));
        }
        assert_eq!(config_path(&env(&[])), None);
    }

    #[test]
    fn parse_and_precedence() {
        let path = Path::new("c.txt");
        let f = parse_file(
            "# lab\n\naddr = 10.0.0.2:53717  # the scope\nTIMEOUT=1.5\n",
            path,
        )
        .unwrap();
        assert_eq!(f.addr, Some(("10.0.0.2:53717".into(), 3)));
        assert_eq!(f.timeout, Some((Duration::from_millis(1500), 4)));
        let e = parse_file("addr = nope\n", path).unwrap_err().to_string();
        assert!(
            e.contains("config file c.txt line 1: --addr \"nope\""),
            "{e}"
        );
        let e = parse_file("colour = red\n", path).unwrap_err().to_string();
        assert!(e.contains("unknown setting \"colour\""), "{e}");
        let e = parse_file("just words\n", path).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");

        // FLAMINGO_ADDR fills a default address; the command line wins.
        let mut g = Global::default();
        apply(&mut g, &env(&[("FLAMINGO_ADDR", "10.1.1.1:6000")])).unwrap();
        assert_eq!(g.addr, "10.1.1.1:6000");
        assert_eq!(g.addr_from, Source::Env("FLAMINGO_ADDR"));
        let mut g = Global {
            addr: "10.9.9.9:1".into(),
            addr_from: Source::CommandLine,
            ..Global::default()
        };
        apply(&mut g, &env(&[("FLAMINGO_ADDR", "10.1.1.1:6000")])).unwrap();
        assert_eq!(g.addr, "10.9.9.9:1");
        let e = apply(&mut Global::default(), &env(&[("FLAMINGO_ADDR", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FLAMINGO_ADDR"), "{e}");
    }

    #[test]
    fn save_keeps_other_lines() {
        let dir = std::env::temp_dir().join(format!("flamingo-config-{}", std::process::id()));
        let path = dir.join("sub").join("config.txt");
        save(&path, "10.0.0.2:53717", Duration::from_secs(3)).unwrap();
        let f = read_file(&path).unwrap().unwrap();
        assert_eq!(f.addr.unwrap().0, "10.0.0.2:53717");
        std::fs::write(&path, "# mine\naddr = 1.2.3.4:5\n").unwrap();
        save(&path, "10.0.0.3:53717", Duration::from_millis(500)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "# mine\naddr = 10.0.0.3:53717\ntimeout = 0.5\n");
        assert_eq!(read_file(&dir.join("missing.txt")).unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
