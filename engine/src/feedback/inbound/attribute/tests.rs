//! Tests of report attribution.
use super::*;
