//! Reading a recording as a stream of records, with errors that name the
//! byte offset where the file stops making sense.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use byteorder::{ByteOrder, LittleEndian as LE};

use super::format::{
    decode_body, kind, Crc, Record, FILE_HEADER_LEN, MAGIC, MAX_BODY_LEN, RECORD_HEADER_LEN,
    RECORD_TRAILER_LEN, VERSION,
};

/// Why a recording cannot be read any further, and where.
#[derive(Debug)]
pub struct RecordError {
    /// Byte offset in the file: the start of the record (or file header)
    /// that is truncated or corrupt, or where a read failed.
    pub offset: u64,
    /// What is wrong.
    pub kind: RecordErrorKind,
}

/// What is wrong with a recording.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecordErrorKind {
    /// The file does not start with the recording magic.
    NotARecording,
    /// A version of the format this library does not read.
    UnsupportedVersion(u16),
    /// The file ends inside the file header or a record: the recorder was
    /// stopped without finishing it, or the copy is incomplete.
    Truncated {
        /// Bytes of the header or record present.
        got: u64,
        /// Bytes it needs (header, body and checksum; for a header that is
        /// itself cut short, the header's length).
        expected: u64,
    },
    /// A record's checksum or contents are wrong.
    Corrupt(String),
    /// A record claims a body larger than the reader's limit.
    TooLarge {
        /// The claimed length.
        len: u32,
        /// The limit.
        limit: u32,
    },
    /// Reading the file failed.
    Io(io::Error),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.offset;
        match &self.kind {
            RecordErrorKind::NotARecording => write!(
                f,
                "not a flamingo recording (the first bytes are not \"FLAMREC\")"
            ),
            RecordErrorKind::UnsupportedVersion(v) => write!(
                f,
                "recording format version {v} is not supported (this tool reads version {VERSION}; update it)"
            ),
            RecordErrorKind::Truncated { got, expected } => write!(
                f,
                "recording truncated at byte {at}: the record there has {got} of its {expected} bytes (was the recorder stopped without finishing the file?)"
            ),
            RecordErrorKind::Corrupt(what) => {
                write!(f, "recording corrupt at byte {at}: {what}")
            }
            RecordErrorKind::TooLarge { len, limit } => write!(
                f,
                "recording corrupt at byte {at}: a record claims {len} bytes, more than the limit of {limit}"
            ),
            RecordErrorKind::Io(e) => write!(f, "cannot read the recording at byte {at}: {e}"),
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            RecordErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RecordError> for io::Error {
    /// `InvalidData` for a bad file, the read error's own kind otherwise;
    /// the message keeps the offset.
    fn from(e: RecordError) -> io::Error {
        let kind = match &e.kind {
            RecordErrorKind::Io(io) => io.kind(),
            RecordErrorKind::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e.to_string())
    }
}

/// Reads a recording from any [`Read`], one record at a time.
///
/// Memory stays bounded whatever the file holds or claims: one record is
/// decoded at a time, and a record's body is read (and its buffer grown)
/// only as its bytes actually arrive, up to the limit
/// ([`MAX_BODY_LEN`] by default). A file that ends inside a record, a
/// checksum that does not match or a record whose contents make no sense
/// give a [`RecordError`] with the offset of that record; every record
/// before it has been returned intact. A file that ends cleanly between two
/// records but without the final [`Entry::End`](super::Entry::End) (the recorder was killed)
/// reads to its end; [`finished`](RecordingReader::finished) then says
/// false.
///
/// As an [`Iterator`] it yields `Result<Record, RecordError>` and stops
/// after the first error.
///
/// ```no_run
/// use flamingo_client::record::{Entry, RecordingReader};
///
/// let mut messages = 0;
/// for record in RecordingReader::open("session.flrec")? {
///     if let Entry::Message { .. } = record?.entry {
///         messages += 1;
///     }
/// }
/// println!("{messages} messages");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RecordingReader<R> {
    src: R,
    offset: u64,
    limit: u32,
    version: u16,
    /// Offset of the first record (the metadata record).
    first: u64,
    finished: bool,
    failed: bool,
    last_time: Duration,
}

impl RecordingReader<BufReader<File>> {
    /// Opens a recording file and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, RecordError> {
        let f = File::open(path.as_ref()).map_err(|e| RecordError {
            offset: 0,
            kind: RecordErrorKind::Io(io::Error::new(
                e.kind(),
                format!("cannot open {}: {e}", path.as_ref().display()),
            )),
        })?;
        RecordingReader::new(BufReader::with_capacity(256 * 1024, f))
    }
}

impl<R: Read> RecordingReader<R> {
    /// Reads and checks the file header.
    pub fn new(src: R) -> Result<Self, RecordError> {
        let mut r = RecordingReader {
            src,
            offset: 0,
            limit: MAX_BODY_LEN,
            version: 0,
            first: 0,
            finished: false,
            failed: false,
            last_time: Duration::ZERO,
        };
        let mut h = [0u8; FILE_HEADER_LEN];
        let got = r.fill(&mut h)?;
        if got < 8 || h[..8] != MAGIC {
            // A short file that starts like a recording is a truncated one.
            return Err(r.error(
                0,
                if got < 8 && h[..got] == MAGIC[..got] {
                    RecordErrorKind::Truncated {
                        got: got as u64,
                        expected: FILE_HEADER_LEN as u64,
                    }
                } else {
                    RecordErrorKind::NotARecording
                },
            ));
        }
        if got < FILE_HEADER_LEN {
            return Err(r.error(
                0,
                RecordErrorKind::Truncated {
                    got: got as u64,
                    expected: FILE_HEADER_LEN as u64,
                },
            ));
        }
        let version = LE::read_u16(&h[8..]);
        if version == 0 || version > VERSION {
            return Err(r.error(0, RecordErrorKind::UnsupportedVersion(version)));
        }
        if LE::read_u32(&h[12..]) != 0 {
            return Err(r.error(
                0,
                RecordErrorKind::Corrupt("the file header's reserved flags are not zero".into()),
            ));
        }
        let header_len = u64::from(LE::read_u16(&h[10..]));
        if header_len != FILE_HEADER_LEN as u64 {
            return Err(r.error(
                0,
                RecordErrorKind::Corrupt(format!(
                    "the file header claims {header_len} bytes instead of {FILE_HEADER_LEN}"
                )),
            ));
        }
        r.offset = header_len;
        r.first = header_len;
        r.version = version;
        Ok(r)
    }

    /// Sets the largest record body accepted (default [`MAX_BODY_LEN`]).
    #[must_use]
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// The format version of the file.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Bytes read so far: the offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// True once the [`Entry::End`](super::Entry::End) record was read: the recording was
    /// finished cleanly.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The time of the latest record read.
    pub fn last_time(&self) -> Duration {
        self.last_time
    }

    fn error(&mut self, offset: u64, kind: RecordErrorKind) -> RecordError {
        self.failed = true;
        RecordError { offset, kind }
    }

    /// Reads into `buf` until it is full or the stream ends; returns the
    /// bytes read. Interrupted reads are retried.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, RecordError> {
        let mut n = 0;
        while n < buf.len() {
            match self.src.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let at = self.offset + n as u64;
                    return Err(self.error(at, RecordErrorKind::Io(e)));
                }
            }
        }
        Ok(n)
    }

    /// The next record; `Ok(None)` at the end of the file (after the end
    /// record, or between two records of an unfinished recording).
    pub fn next_record(&mut self) -> Result<Option<Record>, RecordError> {
        if self.failed {
            return Ok(None);
        }
        let start = self.offset;
        let mut h = [0u8; RECORD_HEADER_LEN];
        let got = self.fill(&mut h)?;
        if got == 0 {
            return Ok(None);
        }
        if self.finished {
            return Err(self.error(
                start,
                RecordErrorKind::Corrupt("data follows the end record".into()),
            ));
        }
        let len = LE::read_u32(&h);
        let whole = (RECORD_HEADER_LEN + RECORD_TRAILER_LEN) as u64 + u64::from(len);
        if got < RECORD_HEADER_LEN {
            return Err(self.error(
                start,
                RecordErrorKind::Truncated {
                    got: got as u64,
                    expected: if got >= 4 {
                        whole
                    } else {
                        RECORD_HEADER_LEN as u64
                    },
                },
            ));
        }
        if len > self.limit {
            return Err(self.error(
                start,
                RecordErrorKind::TooLarge {
                    len,
                    limit: self.limit,
                },
            ));
        }
        let (k, detail, conn) = (h[4], h[5], LE::read_u32(&h[8..]));
        let time = Duration::from_nanos(LE::read_u64(&h[12..]));
        // Grows with the bytes that arrive, never with what `len` claims.
        let mut body = Vec::new();
        let read = (&mut self.src)
            .take(u64::from(len))
            .read_to_end(&mut body)
            .map_err(|e| RecordError {
                offset: start,
                kind: RecordErrorKind::Io(e),
            });
        let read = match read {
            Ok(n) => n as u64,
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        let mut crc = [0u8; RECORD_TRAILER_LEN];
        let crc_got = if read == u64::from(len) {
            self.fill(&mut crc)?
        } else {
            0
        };
        if read < u64::from(len) || crc_got < RECORD_TRAILER_LEN {
            return Err(self.error(
                start,
                RecordErrorKind::Truncated {
                    got: RECORD_HEADER_LEN as u64 + read + crc_got as u64,
                    expected: whole,
                },
            ));
        }
        let want = Crc::new().update(&h).update(&body).value();
        if LE::read_u32(&crc) != want {
            return Err(self.error(
                start,
                RecordErrorKind::Corrupt(format!(
                    "checksum mismatch in a record of kind {k} ({len} bytes): the file was damaged"
                )),
            ));
        }
        if h[6] != 0 || h[7] != 0 {
            return Err(self.error(
                start,
                RecordErrorKind::Corrupt("reserved header bytes are not zero".into()),
            ));
        }
        let entry = match decode_body(k, detail, body) {
            Ok(e) => e,
            Err(why) => return Err(self.error(start, RecordErrorKind::Corrupt(why.0))),
        };
        if start == self.first && k != kind::META {
            return Err(self.error(
                start,
                RecordErrorKind::Corrupt("the first record is not the metadata record".into()),
            ));
        }
        self.offset = start + whole;
        self.finished = k == kind::END;
        self.last_time = self.last_time.max(time);
        Ok(Some(Record { time, conn, entry }))
    }
}

impl<R: Read> Iterator for RecordingReader<R> {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}
