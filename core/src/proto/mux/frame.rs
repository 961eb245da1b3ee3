//! The multiplexer's lane frames: a compact binary layout whose data payloads
//! are never copied through a serializer.
//!
//! Every frame on a lane starts with the same length prefix as
//! [`wire`](crate::proto::wire) frames (checked by [`wire::frame_len`] before a
//! byte of the body is buffered), then a type byte and fixed big-endian fields:
//!
//! ```text
//! u32 L | u8 type | fields                                  | payload
//! ------+---------+-----------------------------------------+---------------
//!       | 0 HELLO | u8 version, u64 session nonce           |
//!       | 1 DATA  | u32 stream, u64 offset, u8 flags        | L - 14 bytes
//!       | 2 WINDOW| u32 stream, u64 max offset              |
//!       | 3 RESET | u32 stream, u32 code                    |
//!       | 4 ACK   | u64 frames received on this lane        |
//!       | 5 PING  | u64 token                               |
//!       | 6 PONG  | u64 token                               |
//!       | 7 CLOSE | u32 code                                |
//! ```
//!
//! DATA flags: bit 0 FIN (the payload ends the stream), bit 1 BULK (the sender
//! opened the stream for bulk transfer, so the receiver grants the larger window).
//! Other bits are refused, as is a body of the wrong length for its type.
//!
//! Decoding splits the frame off the reader's buffer and returns the payload as a
//! [`Bytes`] slice of it: no copy. Small payloads (below [`COPY_BELOW`]) are copied
//! instead, so that a peer sending tiny frames cannot pin many large read buffers
//! in our reassembly queues: the memory a buffered payload holds is at most
//! `read buffer / COPY_BELOW` times its length.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::proto::wire::{self, DecodeError, HEADER_LEN, MAX_FRAME_LEN};

/// A logical stream's number. Stream 0 is the control stream.
pub type StreamId = u32;

/// Payloads shorter than this are copied out of the read buffer (see module docs).
pub const COPY_BELOW: usize = 32 * 1024;

/// Bytes of a DATA frame before its payload, length prefix included.
pub const DATA_HEADER_LEN: usize = HEADER_LEN + 14;

/// Largest payload a DATA frame can carry.
pub const MAX_PAYLOAD: usize = MAX_FRAME_LEN - 14;

const HELLO: u8 = 0;
const DATA: u8 = 1;
const WINDOW: u8 = 2;
const RESET: u8 = 3;
const ACK: u8 = 4;
const PING: u8 = 5;
const PONG: u8 = 6;
const CLOSE: u8 = 7;

const FLAG_FIN: u8 = 1;
const FLAG_BULK: u8 = 2;

/// One frame on a lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// First frame in each direction of every lane: protocol version and the
    /// sender's session nonce (all lanes of one session carry the same nonce).
    Hello {
        version: u8,
        session: u64,
    },
    /// Bytes `offset..offset + payload.len()` of a stream.
    Data {
        stream: StreamId,
        offset: u64,
        fin: bool,
        bulk: bool,
        payload: Bytes,
    },
    /// The receiver of a stream allows the sender to send up to `max_offset`.
    /// Absolute, so a stale or repeated grant is harmless.
    Window {
        stream: StreamId,
        max_offset: u64,
    },
    /// Abort a stream in both directions.
    Reset {
        stream: StreamId,
        code: u32,
    },
    /// Cumulative count of counted frames received on this lane (see
    /// [`Message::is_lane_local`]).
    Ack {
        frames: u64,
    },
    Ping {
        token: u64,
    },
    Pong {
        token: u64,
    },
    /// The session ends; no more frames follow on any lane.
    Close {
        code: u32,
    },
}

impl Message {
    /// Lane-local frames concern only the lane they travel on: they are neither
    /// counted by [`Message::Ack`] nor resent when the lane dies.
    pub fn is_lane_local(&self) -> bool {
        matches!(
            self,
            Self::Hello { .. } | Self::Ack { .. } | Self::Ping { .. } | Self::Pong { .. }
        )
    }

    /// Bytes this frame takes on the lane, length prefix included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    fn body_len(&self) -> usize {
        match self {
            Self::Hello { .. } => 10,
            Self::Data { payload, .. } => 14 + payload.len(),
            Self::Window { .. } => 13,
            Self::Reset { .. } => 9,
            Self::Ack { .. } | Self::Ping { .. } | Self::Pong { .. } => 9,
            Self::Close { .. } => 5,
        }
    }

    /// Appends the frame to `out`. Panics only if a DATA payload exceeds
    /// [`MAX_PAYLOAD`], which the state machine never produces.
    pub fn encode(&self, out: &mut impl BufMut) {
        self.encode_head(out);
        if let Some(p) = self.payload() {
            out.put_slice(p);
        }
    }

    /// The DATA payload, which [`Message::encode_head`] leaves out.
    pub fn payload(&self) -> Option<&Bytes> {
        match self {
            Self::Data { payload, .. } => Some(payload),
            _ => None,
        }
    }

    /// Appends the frame without its DATA payload (for vectored writes that send
    /// the payload from where it lies).
    pub fn encode_head(&self, out: &mut impl BufMut) {
        let len = self.body_len();
        assert!(
            len <= MAX_FRAME_LEN,
            "mux frame of {len} bytes is too large"
        );
        out.put_u32(len as u32);
        match self {
            Self::Hello { version, session } => {
                out.put_u8(HELLO);
                out.put_u8(*version);
                out.put_u64(*session);
            }
            Self::Data {
                stream,
                offset,
                fin,
                bulk,
                ..
            } => {
                out.put_u8(DATA);
                out.put_u32(*stream);
                out.put_u64(*offset);
                out.put_u8((u8::from(*fin) * FLAG_FIN) | (u8::from(*bulk) * FLAG_BULK));
            }
            Self::Window { stream, max_offset } => {
                out.put_u8(WINDOW);
                out.put_u32(*stream);
                out.put_u64(*max_offset);
            }
            Self::Reset { stream, code } => {
                out.put_u8(RESET);
                out.put_u32(*stream);
                out.put_u32(*code);
            }
            Self::Ack { frames } => {
                out.put_u8(ACK);
                out.put_u64(*frames);
            }
            Self::Ping { token } => {
                out.put_u8(PING);
                out.put_u64(*token);
            }
            Self::Pong { token } => {
                out.put_u8(PONG);
                out.put_u64(*token);
            }
            Self::Close { code } => {
                out.put_u8(CLOSE);
                out.put_u32(*code);
            }
        }
    }

    /// Splits the first complete frame off `buf`. `Ok(None)` means more bytes are
    /// needed (and tells nothing was consumed); an error means the lane carries
    /// garbage and must not be read further.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = wire::frame_len(*header)?;
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let kind = buf[HEADER_LEN];
        let fixed = match kind {
            HELLO => 10,
            DATA => 14,
            WINDOW => 13,
            RESET => 9,
            ACK | PING | PONG => 9,
            CLOSE => 5,
            _ => return Err(DecodeError::Invalid("unknown mux frame type")),
        };
        if len < fixed || (kind != DATA && len != fixed) {
            return Err(DecodeError::Invalid("mux frame has the wrong length"));
        }
        if kind == DATA {
            let flags = buf[HEADER_LEN + 13];
            if flags & !(FLAG_FIN | FLAG_BULK) != 0 {
                return Err(DecodeError::Invalid("unknown mux data flags"));
            }
            let payload_len = len - fixed;
            let mut head = buf.split_to(DATA_HEADER_LEN);
            head.advance(HEADER_LEN + 1);
            let stream = head.get_u32();
            let offset = head.get_u64();
            let payload = if payload_len < COPY_BELOW {
                let p = Bytes::copy_from_slice(&buf[..payload_len]);
                buf.advance(payload_len);
                p
            } else {
                buf.split_to(payload_len).freeze()
            };
            return Ok(Some(Self::Data {
                stream,
                offset,
                fin: flags & FLAG_FIN != 0,
                bulk: flags & FLAG_BULK != 0,
                payload,
            }));
        }
        let mut body = &buf[HEADER_LEN + 1..HEADER_LEN + len];
        let msg = match kind {
            HELLO => Self::Hello {
                version: body.get_u8(),
                session: body.get_u64(),
            },
            WINDOW => Self::Window {
                stream: body.get_u32(),
                max_offset: body.get_u64(),
            },
            RESET => Self::Reset {
                stream: body.get_u32(),
                code: body.get_u32(),
            },
            ACK => Self::Ack {
                frames: body.get_u64(),
            },
            PING => Self::Ping {
                token: body.get_u64(),
            },
            PONG => Self::Pong {
                token: body.get_u64(),
            },
            _ => Self::Close {
                code: body.get_u32(),
            },
        };
        buf.advance(HEADER_LEN + len);
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (any::<u8>(), any::<u64>())
                .prop_map(|(version, session)| Message::Hello { version, session }),
            (
                any::<u32>(),
                any::<u64>(),
                any::<bool>(),
                any::<bool>(),
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..64),
                    proptest::collection::vec(any::<u8>(), COPY_BELOW..COPY_BELOW + 8),
                ],
            )
                .prop_map(|(stream, offset, fin, bulk, p)| Message::Data {
                    stream,
                    offset,
                    fin,
                    bulk,
                    payload: p.into(),
                }),
            (any::<u32>(), any::<u64>())
                .prop_map(|(stream, max_offset)| Message::Window { stream, max_offset }),
            (any::<u32>(), any::<u32>()).prop_map(|(stream, code)| Message::Reset { stream, code }),
            any::<u64>().prop_map(|frames| Message::Ack { frames }),
            any::<u64>().prop_map(|token| Message::Ping { token }),
            any::<u64>().prop_map(|token| Message::Pong { token }),
            any::<u32>().prop_map(|code| Message::Close { code }),
        ]
    }

    #[test]
    fn partial_frame_waits_and_consumes_nothing() {
        let mut buf = BytesMut::new();
        Message::Ping { token: 7 }.encode(&mut buf);
        let mut part = BytesMut::from(&buf[..buf.len() - 1]);
        assert_eq!(Message::decode(&mut part), Ok(None));
        assert_eq!(part.len(), buf.len() - 1);
    }

    #[test]
    fn zero_and_oversize_lengths_are_refused_from_the_header() {
        let mut zero = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(Message::decode(&mut zero), Err(DecodeError::Empty));
        let mut huge = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert!(matches!(
            Message::decode(&mut huge),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_type_flags_and_wrong_lengths_are_refused() {
        let mut unknown = BytesMut::from(&[0u8, 0, 0, 1, 99][..]);
        assert!(Message::decode(&mut unknown).is_err());
        let mut flags =
            BytesMut::from(&[0u8, 0, 0, 14, DATA, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 4][..]);
        assert!(Message::decode(&mut flags).is_err());
        let mut short_ack = BytesMut::from(&[0u8, 0, 0, 2, ACK, 1][..]);
        assert!(Message::decode(&mut short_ack).is_err());
        let mut short_data = BytesMut::from(&[0u8, 0, 0, 3, DATA, 0, 0][..]);
        assert!(Message::decode(&mut short_data).is_err());
    }

    #[test]
    fn large_payloads_are_slices_of_the_read_buffer() {
        let mut buf = BytesMut::new();
        let payload = Bytes::from(vec![5u8; COPY_BELOW + 1]);
        let msg = Message::Data {
            stream: 2,
            offset: 9,
            fin: true,
            bulk: false,
            payload: payload.clone(),
        };
        msg.encode(&mut buf);
        let base = buf.as_ptr() as usize;
        let Some(Message::Data { payload: got, .. }) = Message::decode(&mut buf).unwrap() else {
            panic!("not data");
        };
        assert_eq!(got, payload);
        assert_eq!(got.as_ptr() as usize, base + DATA_HEADER_LEN);
    }

    proptest! {
        #[test]
        fn frames_round_trip_back_to_back(msgs in proptest::collection::vec(arb_message(), 1..8)) {
            let mut buf = BytesMut::new();
            for m in &msgs {
                let before = buf.len();
                m.encode(&mut buf);
                prop_assert_eq!(buf.len() - before, m.encoded_len());
            }
            for m in &msgs {
                prop_assert_eq!(Message::decode(&mut buf).unwrap(), Some(m.clone()));
            }
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&bytes[..]);
            for _ in 0..64 {
                match Message::decode(&mut buf) {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }
}
