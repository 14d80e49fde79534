//! The one integration-test binary: drives the real `ferrum-bench` binary with `assert_cmd`.

mod merge;
