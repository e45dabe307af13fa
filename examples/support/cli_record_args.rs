//! Options and help texts of `record`, `replay` and `facts` (a child
//! module of `cli_args.rs`, which registers the commands).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use flamingo_client::Error;

use super::{parse_count, parse_path, parse_secs, DEFAULT_SIM_PORT};

/// Where `record` listens unless told: loopback, a free pair of ports.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:0";

/// Options of `record`.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct RecordArgs {
    /// The recording to write (replaced if it exists), for example session.flrec
    #[arg(long, value_name = "FILE", value_parser = |s: &str| parse_path("--out", s))]
    pub out: PathBuf,
    /// Where clients connect instead of the microscope: HOST:PORT, live images on PORT+1
    /// (0.0.0.0 accepts other machines; port 0 picks a free pair)
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_LISTEN, value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Also record live-frame pixels: every Nth pixel of every Nth row (1: all) [default: headers only]
    #[arg(long, value_name = "N", value_parser = |s: &str| parse_count("--pixels", s, 1, 256).map(|n| n as u16))]
    pub pixels: Option<u16>,
    /// Stop after SECS seconds [default: until Ctrl-C]
    #[arg(long = "for", value_name = "SECS", allow_negative_numbers = true, value_parser = |s: &str| parse_secs("--for", s, false))]
    pub duration: Option<Duration>,
}

/// Options of `replay`.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct ReplayArgs {
    /// The recording to serve
    #[arg(value_name = "FILE", value_parser = |s: &str| parse_path("FILE", s))]
    pub file: PathBuf,
    /// Command port; 0 picks a free pair
    #[arg(long, value_name = "P", allow_negative_numbers = true, default_value_t = DEFAULT_SIM_PORT, value_parser = |s: &str| parse_count("--port", s, 0, 65534).map(|p| p as u16))]
    pub port: u16,
    /// Send every recorded message as soon as what it follows has happened, without the recorded delays
    #[arg(long)]
    pub fast: bool,
    /// Stop after SECS seconds [default: until Ctrl-C]
    #[arg(long = "for", value_name = "SECS", allow_negative_numbers = true, value_parser = |s: &str| parse_secs("--for", s, false))]
    pub duration: Option<Duration>,
    /// Stop once the whole recording has been played and every client has disconnected
    #[arg(long)]
    pub until_done: bool,
}

/// Options of `facts`.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct FactsArgs {
    /// The recording to examine
    #[arg(value_name = "FILE", value_parser = |s: &str| parse_path("FILE", s))]
    pub file: PathBuf,
}

/// A listening address: an IP address (not a name) and a port from 0 to
/// 65534 (PORT+1 must exist).
pub fn parse_listen(s: &str) -> Result<SocketAddr, Error> {
    let a: SocketAddr = s.trim().parse().map_err(|_| {
        Error::invalid(format!(
            "--listen {s:?} is not IP:PORT, for example 127.0.0.1:53717 or 0.0.0.0:53717"
        ))
    })?;
    if a.port() == u16::MAX {
        return Err(Error::invalid(format!(
            "--listen {s:?} has port 65535, which leaves no room for the live port (PORT+1)"
        )));
    }
    Ok(a)
}

pub const RECORD_ABOUT: &str = "\
Records what a client (the vendor software, py2flamingo, this tool) and the
microscope say to each other. Clients connect to --listen instead of the
microscope (the one --addr, FLAMINGO_ADDR or the config file names); every
byte is forwarded unchanged, both ways, on the command port and the live port
(PORT+1). The file gets every command message in both directions and every
live frame header, with times and connection numbers (with --pixels, also
subsampled pixels). Ctrl-C (or --for)
closes the connections and finishes the file. Send the file, or what `flamingo
facts FILE` says about it, to the developers; `flamingo replay FILE` serves it
as a simulated microscope.";

pub const RECORD_AFTER_HELP: &str = "\
Output:   listening on 127.0.0.1:P   (then, at the end, what was recorded)
JSON:     {\"addr\":...,\"live_addr\":...,\"upstream\":...,\"file\":...}, then
          {\"file\":...,\"connections\":N,\"messages\":N,\"frames\":N,\"records\":N,
           \"bytes\":N,\"dropped_records\":N}

Examples: flamingo --addr 192.168.1.2:53717 record --listen 0.0.0.0:53717 --out session.flrec
          flamingo --addr 192.168.1.2:53717 record --out s.flrec --pixels 8 --for 600";

pub const REPLAY_ABOUT: &str = "\
Serves a recording as a simulated microscope on 127.0.0.1 (commands on port
P, live images on P+1). The n-th client connection plays the n-th recorded
one: each request gets the recorded reply to the recorded request with the
same command code and key (and order), after the recorded delay (--fast: at
once); recorded events and live frames follow at their recorded times after
what preceded them. Prints `listening on 127.0.0.1:P`, then, when stopped
(Ctrl-C, --for, --until-done), what was replayed and every request the
recording could not answer.";

pub const REPLAY_AFTER_HELP: &str = "\
JSON:     {\"addr\":...,\"live_addr\":...}, then one {\"unanswerable\":{...}} per request
          the recording could not answer, then {\"requests\":N,\"answered\":N,
          \"unanswerable\":N,\"replies\":N,\"events\":N,\"frames\":N,\"not_sent\":N,
          \"finished\":true|false}

Examples: flamingo replay session.flrec
          flamingo replay session.flrec --port 0 --fast --until-done";

pub const FACTS_ABOUT: &str = "\
Reports what a recording shows about the points protocol.md lists as
unconfirmed on a real instrument: whether replies echo int32Data0, which
codes the instrument sends unsolicited and whether other connections receive
them too, how late replies come (latency per code), whether messages sent
without TRIGGER_CALL_BACK are answered, and codes outside the catalogue. A
truncated recording is reported up to the damage, with a warning.";

pub const FACTS_AFTER_HELP: &str = "\
JSON:     one object: totals, \"meta\", and \"codes\" keyed by code (\"0x6008\"), each
          with \"sent\", \"replies\", \"echo\", \"latency_us\", \"unflagged\",
          \"unsolicited\", \"statuses\"... (see README.md)

Example:  flamingo facts session.flrec --json";

#[cfg(test)]
mod tests {
    use super::super::{parse, Command, Parsed};
    use super::*;

    fn run(args: &[&str]) -> Result<Command, Error> {
        match parse(args.iter().copied())? {
            Parsed::Run(_, c) => Ok(c),
            Parsed::Help(_) => panic!("help for {args:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        match run(args) {
            Err(Error::InvalidArgument { what }) => what,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn record_replay_and_facts_parse() {
        let Command::Record(r) = run(&[
            "record",
            "--out",
            "s.flrec",
            "--listen",
            "0.0.0.0:53717",
            "--pixels",
            "4",
            "--for",
            "2.5",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(r.out, PathBuf::from("s.flrec"));
        assert_eq!(r.listen, "0.0.0.0:53717".parse::<SocketAddr>().unwrap());
        assert_eq!(
            (r.pixels, r.duration),
            (Some(4), Some(Duration::from_millis(2500)))
        );
        let Command::Record(r) = run(&["record", "--out", "s.flrec"]).unwrap() else {
            panic!()
        };
        assert_eq!(r.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!((r.pixels, r.duration), (None, None));
        let Command::Replay(p) = run(&["replay", "s.flrec", "--fast", "--port", "0"]).unwrap()
        else {
            panic!()
        };
        assert!(p.fast && !p.until_done && p.port == 0);
        let Command::Replay(p) = run(&["replay", "s.flrec"]).unwrap() else {
            panic!()
        };
        assert_eq!((p.port, p.fast), (DEFAULT_SIM_PORT, false));
        let Command::Facts(f) = run(&["facts", "s.flrec", "--json"]).unwrap() else {
            panic!()
        };
        assert_eq!(f.file, PathBuf::from("s.flrec"));
    }

    #[test]
    fn record_mistakes_are_usage_errors() {
        assert!(err(&["record"]).contains("--out"));
        assert!(err(&["record", "--out", "x", "--listen", "scope:53717"]).contains("IP:PORT"));
        assert!(err(&["record", "--out", "x", "--listen", "1.2.3.4:65535"]).contains("65535"));
        assert!(err(&["record", "--out", "x", "--pixels", "0"]).contains("--pixels"));
        assert!(err(&["replay"]).contains("replay"));
        assert!(err(&["facts"]).contains("facts"));
    }
}
