// The same `RSERPOOL_COMMIT` as the registrar's (see that file), so both binaries'
// `--version` name one commit.
include!("../shards/build.rs");
