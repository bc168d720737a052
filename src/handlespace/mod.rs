pub const MAX_POOL_HANDLE_LEN: usize = 32;
