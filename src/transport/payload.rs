//! [`Payload`]: the bytes of one received bulk, owned and read in place.

#![forbid(unsafe_code)]

/// A received bulk payload, read in place without copying it into a buffer of yours.
pub struct Payload(pub(super) ::zmq::Message);

impl std::ops::Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}
