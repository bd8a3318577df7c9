//! The codec of the user's custom metadata: postcard, chosen here alone (swapping it is a change to this
//! file only).

#![forbid(unsafe_code)]

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result, WireError};

/// Appends the postcard encoding of `custom` to `out`. The codec is chosen here alone.
pub fn encode_custom<M: Serialize>(custom: &M, out: &mut Vec<u8>) -> Result<()> {
    let encoded =
        postcard::to_extend(custom, std::mem::take(out)).map_err(|e| Error::Encode(e.to_string()))?;
    *out = encoded;
    Ok(())
}

/// Decodes custom metadata, rejecting bytes left over (a sign the sender used another type).
pub fn decode_custom<M: DeserializeOwned>(bytes: &[u8]) -> Result<M, WireError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| WireError::Metadata(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Metadata(format!("{} bytes left over after decoding", rest.len())));
    }
    Ok(value)
}
