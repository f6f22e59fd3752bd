//! Inbound feedback: what comes back about the mail we sent. Signed
//! tokens in return paths and unsubscribe links ([`token`]) tie bounces,
//! complaints and unsubscribes to the message and recipient they answer.
//! Exposure: everything here past the token signer takes hostile input.

pub mod marks;
pub mod token;
