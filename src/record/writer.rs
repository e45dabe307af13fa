//! Writing a recording, one record at a time.

use std::io::{self, Write};
use std::time::Duration;

use super::format::{
    encode_body, file_header, record_header, Crc, Entry, Record, FILE_HEADER_LEN, MAX_BODY_LEN,
    RECORD_HEADER_LEN, RECORD_TRAILER_LEN,
};

/// Writes a recording to any [`Write`]: the file header and a
/// [`Entry::Meta`] record at creation, then one record per
/// [`write`](RecordingWriter::write), and an [`Entry::End`] record at
/// [`finish`](RecordingWriter::finish). It keeps no record in memory: each
/// is encoded and written through at once (give it a buffered writer).
///
/// ```
/// use std::time::Duration;
/// use flamingo_client::codec::{CommandCode, Message};
/// use flamingo_client::record::{Direction, Entry, Record, RecordingReader, RecordingWriter};
///
/// let mut w = RecordingWriter::new(Vec::new(), &[("tool", "doc example")])?;
/// w.write(&Record {
///     time: Duration::from_millis(5),
///     conn: 1,
///     entry: Entry::Message {
///         direction: Direction::ToInstrument,
///         message: Message::new(CommandCode::SYSTEM_STATE_GET),
///         data_seen: 0,
///         data: Vec::new(),
///     },
/// })?;
/// let bytes = w.finish(0, 0)?;
///
/// let records: Vec<Record> = RecordingReader::new(&bytes[..])?.collect::<Result<_, _>>()?;
/// assert_eq!(records.len(), 3); // meta, the message, end
/// assert!(matches!(records[1].entry, Entry::Message { .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RecordingWriter<W: Write> {
    out: W,
    fixed: Vec<u8>,
    records: u64,
    bytes: u64,
    last_time: Duration,
}

impl<W: Write> RecordingWriter<W> {
    /// Writes the file header and the metadata record (`key = value`
    /// pairs; a key may not contain `=`, and neither may contain a line
    /// break).
    pub fn new(out: W, meta: &[(&str, &str)]) -> io::Result<RecordingWriter<W>> {
        for (k, v) in meta {
            if k.contains(['=', '\n', '\r']) || v.contains(['\n', '\r']) || k.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("recording metadata {k:?} = {v:?}: keys need a name without '=' and neither may contain a line break"),
                ));
            }
        }
        let mut w = RecordingWriter {
            out,
            fixed: Vec::new(),
            records: 0,
            bytes: 0,
            last_time: Duration::ZERO,
        };
        w.out.write_all(&file_header())?;
        w.bytes = FILE_HEADER_LEN as u64;
        let kv = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        w.write(&Record {
            time: Duration::ZERO,
            conn: 0,
            entry: Entry::Meta(kv),
        })?;
        Ok(w)
    }

    /// Appends one record. A body above [`MAX_BODY_LEN`] is refused
    /// (`InvalidInput`) and nothing is written.
    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        let body = encode_body(&r.entry, &mut self.fixed);
        let len = self.fixed.len() + body.tail.len();
        let len = u32::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_BODY_LEN)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a {} record of {len} bytes exceeds the format's limit of {MAX_BODY_LEN} bytes",
                        r.entry.kind_name()
                    ),
                )
            })?;
        let header = record_header(len, body.kind, body.detail, r.conn, r.time);
        let crc = Crc::new()
            .update(&header)
            .update(&self.fixed)
            .update(body.tail)
            .value();
        self.out.write_all(&header)?;
        self.out.write_all(&self.fixed)?;
        self.out.write_all(body.tail)?;
        self.out.write_all(&crc.to_le_bytes())?;
        self.records += 1;
        self.bytes += (RECORD_HEADER_LEN + RECORD_TRAILER_LEN) as u64 + u64::from(len);
        self.last_time = self.last_time.max(r.time);
        Ok(())
    }

    /// Records written so far (the metadata record included).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes written so far (the file header included).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes the [`Entry::End`] record (stamped with the latest time
    /// written), flushes and returns the writer. `dropped_*`: records the
    /// caller could not write (see [`Entry::End`]).
    pub fn finish(mut self, dropped_records: u64, dropped_bytes: u64) -> io::Result<W> {
        let end = Record {
            time: self.last_time,
            conn: 0,
            entry: Entry::End {
                records: self.records,
                dropped_records,
                dropped_bytes,
            },
        };
        self.write(&end)?;
        self.out.flush()?;
        Ok(self.out)
    }
}
