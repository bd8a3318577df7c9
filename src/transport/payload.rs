//! [`Payload`]: the bytes of one received bulk, owned and read in place, whichever transport brought them.

#![forbid(unsafe_code)]

/// A received bulk payload, read in place without copying it into a buffer of yours.
pub struct Payload(Bytes);

/// Where a payload's bytes live: each transport hands over its own buffer, never a copy of it.
enum Bytes {
    /// A frame as ZeroMQ received it.
    ZeroMq(::zmq::Message),
    /// Bytes a transport received into a buffer of its own.
    Owned(Vec<u8>),
}

impl Payload {
    /// A payload holding a frame ZeroMQ received.
    pub(super) fn from_zmq(message: ::zmq::Message) -> Self {
        Self(Bytes::ZeroMq(message))
    }

    /// A payload holding bytes a transport received into a buffer of its own (or that the mesh's
    /// collectives send on as one).
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        Self(Bytes::Owned(bytes))
    }

    /// The payload's own buffer, when a transport received it into one (the same-node transport does);
    /// otherwise the payload back.
    pub(crate) fn into_vec(self) -> Result<Vec<u8>, Self> {
        match self.0 {
            Bytes::Owned(bytes) => Ok(bytes),
            other => Err(Self(other)),
        }
    }

    /// Turns the payload into a ZeroMQ frame without copying its bytes (an owned buffer's allocation
    /// moves into the frame).
    pub(super) fn into_zmq(self) -> ::zmq::Message {
        match self.0 {
            Bytes::ZeroMq(message) => message,
            Bytes::Owned(bytes) => ::zmq::Message::from(bytes),
        }
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Bytes::ZeroMq(message) => message,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_kind_of_bytes_reads_in_place_and_becomes_a_frame_without_a_copy() {
        let owned = vec![7u8; 4096];
        let address = owned.as_ptr();
        let payload = Payload::from_vec(owned);
        assert_eq!(&payload[..], &[7u8; 4096][..]);
        assert_eq!(payload.as_ptr(), address, "read in place");
        let frame = payload.into_zmq();
        assert_eq!(frame.as_ptr(), address, "the allocation moved into the frame");
        let back = Payload::from_vec(vec![1, 2, 3]).into_vec().expect("an owned buffer comes back");
        assert_eq!(back, [1, 2, 3]);
        assert!(Payload::from_zmq(::zmq::Message::from(&b"z"[..])).into_vec().is_err());

        let payload = Payload::from_zmq(::zmq::Message::from(&b"frame"[..]));
        assert_eq!(&payload[..], b"frame");
        assert_eq!(format!("{payload:?}"), "Payload(5 bytes)");
        assert_eq!(&payload.into_zmq()[..], b"frame");
    }
}
