//! The NBD wire protocol (newstyle fixed handshake, simple replies), as pure functions from
//! bytes to values and back, so it is tested and fuzzed without sockets. Nothing here
//! panics or allocates more than the bounds below, whatever the bytes.
//!
//! Reference: the NBD protocol document (`doc/proto.md` of the nbd project).

/// `NBDMAGIC`, first 8 bytes the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: newstyle negotiation magic, and the prefix of every client option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of an option reply.
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

/// Handshake flag: fixed newstyle.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1;
/// Handshake flag: no 124 zero bytes after NBD_OPT_EXPORT_NAME.
pub const FLAG_NO_ZEROES: u16 = 2;

/// Option: NBD_OPT_EXPORT_NAME.
pub const OPT_EXPORT_NAME: u32 = 1;
/// Option: NBD_OPT_ABORT.
pub const OPT_ABORT: u32 = 2;
/// Option: NBD_OPT_LIST.
pub const OPT_LIST: u32 = 3;
/// Option: NBD_OPT_INFO.
pub const OPT_INFO: u32 = 6;
/// Option: NBD_OPT_GO.
pub const OPT_GO: u32 = 7;

/// Option reply: NBD_REP_ACK.
pub const REP_ACK: u32 = 1;
/// Option reply: NBD_REP_SERVER (an export name for NBD_OPT_LIST).
pub const REP_SERVER: u32 = 2;
/// Option reply: NBD_REP_INFO.
pub const REP_INFO: u32 = 3;
/// Option reply error: unsupported option.
pub const REP_ERR_UNSUP: u32 = 0x8000_0001;
/// Option reply error: invalid option data.
pub const REP_ERR_INVALID: u32 = 0x8000_0003;
/// Option reply error: unknown export.
pub const REP_ERR_UNKNOWN: u32 = 0x8000_0006;

/// Info type: NBD_INFO_EXPORT.
pub const INFO_EXPORT: u16 = 0;
/// Info type: NBD_INFO_BLOCK_SIZE.
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flag: flags are valid.
pub const TF_HAS_FLAGS: u16 = 1;
/// Transmission flag: read-only export.
pub const TF_READ_ONLY: u16 = 1 << 1;
/// Transmission flag: NBD_CMD_FLUSH supported.
pub const TF_SEND_FLUSH: u16 = 1 << 2;
/// Transmission flag: NBD_CMD_FLAG_FUA supported.
pub const TF_SEND_FUA: u16 = 1 << 3;
/// Transmission flag: NBD_CMD_TRIM supported.
pub const TF_SEND_TRIM: u16 = 1 << 5;
/// Transmission flag: NBD_CMD_WRITE_ZEROES supported.
pub const TF_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// Transmission flag: several connections see one consistent export.
pub const TF_CAN_MULTI_CONN: u16 = 1 << 8;

/// Command flag: force unit access (write durably before replying).
pub const CMD_FLAG_FUA: u16 = 1;

/// Longest option payload accepted (export names and info requests are tiny).
pub const MAX_OPTION_LEN: u32 = 64 * 1024;
/// Longest read or write a client may ask for in one request (32 MiB).
pub const MAX_REQUEST_LEN: u32 = 32 << 20;
/// Longest export name (as the protocol says).
pub const MAX_NAME_LEN: u32 = 4096;

/// NBD error codes used in replies.
pub mod errno {
    /// Operation not permitted (write to a read-only export).
    pub const EPERM: u32 = 1;
    /// I/O error (damaged block, remote failure).
    pub const EIO: u32 = 5;
    /// Invalid argument (out-of-range request, bad flags).
    pub const EINVAL: u32 = 22;
    /// No space (write past the end).
    pub const ENOSPC: u32 = 28;
    /// Unsupported command.
    pub const ENOTSUP: u32 = 95;
}

/// A protocol violation by the client; the connection is closed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtoError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ProtoError> {
    Err(ProtoError(msg.into()))
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}
fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn be64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_be_bytes(a)
}

/// The server's greeting: `NBDMAGIC`, `IHAVEOPT`, handshake flags.
pub fn greeting() -> [u8; 18] {
    let mut b = [0u8; 18];
    b[..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    b
}

/// Client flags sent after the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFlags {
    /// The client speaks fixed newstyle.
    pub fixed_newstyle: bool,
    /// The client does not want the 124 zero bytes.
    pub no_zeroes: bool,
}

/// Parses the 4 client flag bytes; unknown bits are refused (the protocol says to close).
pub fn parse_client_flags(b: &[u8]) -> Result<ClientFlags, ProtoError> {
    if b.len() != 4 {
        return err(format!("client flags are 4 bytes, got {}", b.len()));
    }
    let f = be32(b, 0);
    if f & !3 != 0 {
        return err(format!("unknown client flags {f:#x}"));
    }
    Ok(ClientFlags {
        fixed_newstyle: f & 1 != 0,
        no_zeroes: f & 2 != 0,
    })
}

/// The 16-byte header of a client option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    /// Option code.
    pub option: u32,
    /// Length of the payload that follows.
    pub len: u32,
}

/// Parses an option header: magic, then a payload length of at most [`MAX_OPTION_LEN`].
pub fn parse_option_header(b: &[u8]) -> Result<OptionHeader, ProtoError> {
    if b.len() != 16 {
        return err(format!("option header is 16 bytes, got {}", b.len()));
    }
    let magic = be64(b, 0);
    if magic != IHAVEOPT {
        return err(format!("bad option magic {magic:#018x}"));
    }
    let h = OptionHeader {
        option: be32(b, 8),
        len: be32(b, 12),
    };
    if h.len > MAX_OPTION_LEN {
        return err(format!(
            "option {} payload of {} bytes exceeds {MAX_OPTION_LEN}",
            h.option, h.len
        ));
    }
    Ok(h)
}

/// Payload of NBD_OPT_INFO / NBD_OPT_GO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoRequest {
    /// Export name (empty = the default export).
    pub name: String,
    /// Information types requested.
    pub info: Vec<u16>,
}

/// Parses the payload of NBD_OPT_INFO / NBD_OPT_GO: name length, name, request count,
/// requests; every length must match the payload exactly.
pub fn parse_go(b: &[u8]) -> Result<GoRequest, ProtoError> {
    if b.len() < 6 {
        return err("NBD_OPT_GO payload shorter than 6 bytes");
    }
    let nlen = be32(b, 0);
    if nlen > MAX_NAME_LEN || nlen as usize > b.len() - 6 {
        return err(format!(
            "export name length {nlen} does not fit the payload"
        ));
    }
    let nlen = nlen as usize;
    let name = std::str::from_utf8(&b[4..4 + nlen])
        .map_err(|_| ProtoError("export name is not UTF-8".into()))?
        .to_string();
    let n = be16(b, 4 + nlen) as usize;
    let rest = &b[6 + nlen..];
    if rest.len() != 2 * n {
        return err(format!(
            "{n} info requests need {} bytes, the payload has {}",
            2 * n,
            rest.len()
        ));
    }
    let info = rest.chunks_exact(2).map(|c| be16(c, 0)).collect();
    Ok(GoRequest { name, info })
}

/// Parses the payload of NBD_OPT_EXPORT_NAME (the whole payload is the name).
pub fn parse_export_name(b: &[u8]) -> Result<String, ProtoError> {
    if b.len() > MAX_NAME_LEN as usize {
        return err("export name too long");
    }
    std::str::from_utf8(b)
        .map(str::to_string)
        .map_err(|_| ProtoError("export name is not UTF-8".into()))
}

/// An option reply: magic, option, reply type, payload.
pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&reply.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// Payload of an NBD_INFO_EXPORT reply.
pub fn info_export(size: u64, flags: u16) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..2].copy_from_slice(&INFO_EXPORT.to_be_bytes());
    b[2..10].copy_from_slice(&size.to_be_bytes());
    b[10..].copy_from_slice(&flags.to_be_bytes());
    b
}

/// Payload of an NBD_INFO_BLOCK_SIZE reply.
pub fn info_block_size(min: u32, preferred: u32, max: u32) -> [u8; 14] {
    let mut b = [0u8; 14];
    b[..2].copy_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    b[2..6].copy_from_slice(&min.to_be_bytes());
    b[6..10].copy_from_slice(&preferred.to_be_bytes());
    b[10..].copy_from_slice(&max.to_be_bytes());
    b
}

/// The reply to NBD_OPT_EXPORT_NAME: size, transmission flags, and 124 zero bytes unless
/// the client asked for none.
pub fn export_name_reply(size: u64, flags: u16, no_zeroes: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(134);
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    if !no_zeroes {
        b.extend_from_slice(&[0u8; 124]);
    }
    b
}

/// Transmission commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// NBD_CMD_READ.
    Read,
    /// NBD_CMD_WRITE (payload follows the request).
    Write,
    /// NBD_CMD_DISC: the client disconnects.
    Disconnect,
    /// NBD_CMD_FLUSH.
    Flush,
    /// NBD_CMD_TRIM.
    Trim,
    /// NBD_CMD_WRITE_ZEROES.
    WriteZeroes,
    /// Anything else (answered with ENOTSUP).
    Other(u16),
}

/// One transmission request (28 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags.
    pub flags: u16,
    /// The command.
    pub command: Command,
    /// Opaque cookie echoed in the reply.
    pub cookie: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub len: u32,
}

/// Size of a transmission request.
pub const REQUEST_LEN: usize = 28;

/// Parses a transmission request: magic, then a length of at most [`MAX_REQUEST_LEN`] for
/// reads and writes (a larger write payload could not be skipped safely, so it closes the
/// connection).
pub fn parse_request(b: &[u8]) -> Result<Request, ProtoError> {
    if b.len() != REQUEST_LEN {
        return err(format!("request is 28 bytes, got {}", b.len()));
    }
    let magic = be32(b, 0);
    if magic != REQUEST_MAGIC {
        return err(format!("bad request magic {magic:#010x}"));
    }
    let command = match be16(b, 6) {
        0 => Command::Read,
        1 => Command::Write,
        2 => Command::Disconnect,
        3 => Command::Flush,
        4 => Command::Trim,
        6 => Command::WriteZeroes,
        c => Command::Other(c),
    };
    let r = Request {
        flags: be16(b, 4),
        command,
        cookie: be64(b, 8),
        offset: be64(b, 16),
        len: be32(b, 24),
    };
    if matches!(r.command, Command::Read | Command::Write) && r.len > MAX_REQUEST_LEN {
        return err(format!(
            "request of {} bytes exceeds the {MAX_REQUEST_LEN}-byte limit",
            r.len
        ));
    }
    Ok(r)
}

/// Checks a request's range against the export size: the NBD error to answer with, if any.
pub fn check_range(r: &Request, size: u64) -> Result<(), u32> {
    match r.offset.checked_add(r.len as u64) {
        Some(end) if end <= size => Ok(()),
        _ if r.command == Command::Write => Err(errno::ENOSPC),
        _ => Err(errno::EINVAL),
    }
}

/// A simple reply header: magic, error, cookie (read data follows when error is 0).
pub fn simple_reply(error: u32, cookie: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..].copy_from_slice(&cookie.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cmd: u16, off: u64, len: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&cmd.to_be_bytes());
        b.extend_from_slice(&7u64.to_be_bytes());
        b.extend_from_slice(&off.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b
    }

    #[test]
    fn requests() {
        let r = parse_request(&req(0, 4096, 512)).unwrap();
        assert_eq!(r.command, Command::Read);
        assert_eq!((r.cookie, r.offset, r.len), (7, 4096, 512));
        assert!(parse_request(&req(1, 0, MAX_REQUEST_LEN + 1)).is_err());
        assert_eq!(
            parse_request(&req(9, 0, u32::MAX)).unwrap().command,
            Command::Other(9)
        );
        let mut bad = req(0, 0, 1);
        bad[0] = 0;
        assert!(parse_request(&bad).unwrap_err().0.contains("magic"));
        assert!(parse_request(&bad[..10]).is_err());
        let r = parse_request(&req(0, u64::MAX, 10)).unwrap();
        assert_eq!(check_range(&r, 1 << 20), Err(errno::EINVAL));
        let w = parse_request(&req(1, 1 << 20, 1)).unwrap();
        assert_eq!(check_range(&w, 1 << 20), Err(errno::ENOSPC));
        let ok = parse_request(&req(0, 0, 1 << 20)).unwrap();
        assert_eq!(check_range(&ok, 1 << 20), Ok(()));
    }

    #[test]
    fn options() {
        let mut h = IHAVEOPT.to_be_bytes().to_vec();
        h.extend_from_slice(&OPT_GO.to_be_bytes());
        h.extend_from_slice(&10u32.to_be_bytes());
        assert_eq!(
            parse_option_header(&h).unwrap(),
            OptionHeader {
                option: OPT_GO,
                len: 10
            }
        );
        h[12..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_option_header(&h).is_err());
        let mut go = 4u32.to_be_bytes().to_vec();
        go.extend_from_slice(b"disk");
        go.extend_from_slice(&1u16.to_be_bytes());
        go.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        let g = parse_go(&go).unwrap();
        assert_eq!(g.name, "disk");
        assert_eq!(g.info, vec![INFO_BLOCK_SIZE]);
        assert!(parse_go(&go[..go.len() - 1]).is_err());
        let mut huge = u32::MAX.to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 4]);
        assert!(parse_go(&huge).is_err());
        assert!(parse_client_flags(&[0, 0, 0, 3]).is_ok());
        assert!(parse_client_flags(&[0, 0, 1, 0]).is_err());
    }
}
