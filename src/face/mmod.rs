//! CNN face detector (MMOD); work in progress.
